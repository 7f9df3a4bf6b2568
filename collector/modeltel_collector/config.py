"""Collector settings from defaults < config file (TOML) < environment (MODELTEL_COLLECTOR_*) < command line."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, fields
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from modeltel_collector.labelcap import MIN_MAX_BYTES as MIN_LABEL_BYTES

ENV_PREFIX = "MODELTEL_COLLECTOR_"


@dataclass
class Config:
    """Every option of ``modeltel collector``; an empty address disables that server."""

    otlp_http: str = "127.0.0.1:4318"
    otlp_grpc: str = "127.0.0.1:4317"
    listen: str = "127.0.0.1:9464"
    trace_db: str = ""  # empty: a temporary file removed at exit
    trace_max_age_s: float = 3600.0
    trace_max_spans: int = 1_000_000
    trace_fetch_max_spans: int = 10_000  # spans one trace fetch returns at most ("truncated": true beyond)
    staleness_s: float = 300.0
    max_series: int = 100_000
    derived_max_series: int = 1000  # span-derived series per resource; new ones beyond: span labels "_other"
    label_value_max_bytes: int = 256  # longer label values (and alert labels/annotations) are cut, counted
    max_request_bytes: int = 8 << 20
    max_queue_bytes: int = 64 << 20  # accepted requests waiting for the ingest worker (wire bytes)
    max_inflight_bytes: int = 32 << 20  # requests being read/decoded; beyond it 429 / RESOURCE_EXHAUSTED
    trace_queue_bytes: int = 32 << 20  # trace rows waiting for the SQLite writer
    trace_wal_max_bytes: int = 64 << 20  # the trace store's WAL: checkpointed and truncated past this
    trace_search_max_rows: int = 100_000  # stored rows one trace search examines at most (then 'truncated')
    trace_max_services: int = 1000  # services listed, and read by a search without one (least recent out)
    max_unwritten_s: float = 5.0  # refuse new data while older accepted data is still unwritten (SIGKILL window)
    max_connections: int = 128  # per server (HTTP connections, concurrent gRPC calls): ~100 exporters
    read_timeout_s: float = 30.0  # a request's body must arrive within this; also the idle keep-alive timeout
    retry_after_s: float = 1.0
    derive_span_metrics: bool = True
    forward_endpoint: str = ""  # OTLP/HTTP base URL, e.g. http://otelcol:4318
    forward_headers: dict[str, str] = field(default_factory=dict)
    alertmanager_url: str = ""  # the degradation detectors post their alerts here (API v2); empty: not at all
    baseline_path: str = ""  # baseline-metrics.json the detectors keep (captured once stable); empty: none
    baseline_stable_s: float = 3600.0  # a new model version is baselined after this long without an alarm
    runbook_base_url: str = "https://github.com/modeltel/modeltel/blob/main/alerts/runbooks"  # detectors' alerts
    grafana_url: str = ""  # the detectors' alerts link the modeltel-models dashboard there; empty: no link
    analytics: bool = True  # the degradation detectors, where the analytics extra is installed
    analytics_time_scale: float = 1.0  # multiplies every detector window and poll period (demos and tests)
    analytics_max_models: int = 200  # model versions analysed at once; their gauges are outside max_series
    forward_queue_bytes: int = 64 << 20
    auth_token: str = ""  # bearer token required on receivers and the trace API when set
    metrics_auth: bool = True  # with auth_token set, /metrics requires it too (it names services, models, traces)
    tls_cert: str = ""  # with tls_key: TLS on every listener (the token must never cross in plaintext)
    tls_key: str = ""
    shutdown_timeout_s: float = 10.0
    console: bool = True  # the web console at / of listen, and the metric history behind it
    console_history_s: float = 3600.0  # how far back the console's charts reach
    console_step_s: float = 5.0  # their resolution
    console_max_tracks: int = 128  # history series (model x stage, status, ...) kept; docs/console.md

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def update(self, values: dict[str, Any], source: str) -> None:
        """Apply ``values`` (strings from env/CLI or typed from TOML), converting to each field's type."""
        types = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            name = key.replace("-", "_").lower()
            if name not in types:
                raise ValueError(f"{source}: unknown option {key!r}")
            setattr(self, name, _convert(name, types[name], value, source))


def _convert(name: str, type_: str, value: Any, source: str) -> Any:
    try:
        if type_ == "bool":
            if isinstance(value, str):
                if value.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                    raise ValueError(value)
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if type_ == "int":
            return int(value)
        if type_ == "float":
            return float(value)
        if type_.startswith("dict"):
            if isinstance(value, dict):
                return {str(k): str(v) for k, v in value.items()}
            return dict(kv.split("=", 1) for kv in str(value).split(",") if kv.strip())
        return str(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: invalid value for {name}: {value!r}") from e


def load(
    config_file: str | None = None, env: dict[str, str] | None = None, overrides: dict[str, Any] | None = None
) -> Config:
    """Build a Config: defaults, then the TOML file (``[collector]`` table or top level), env, overrides."""
    cfg = Config()
    env = os.environ if env is None else env
    config_file = config_file or env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        with open(config_file, "rb") as f:
            doc = tomllib.load(f)
        cfg.update(doc.get("collector", doc), config_file)
    names = set(Config.option_names())
    cfg.update(
        {
            k[len(ENV_PREFIX) :].lower(): v
            for k, v in env.items()
            if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX) :].lower() in names
        },
        "environment",
    )
    cfg.update({k: v for k, v in (overrides or {}).items() if v is not None}, "command line")
    if not (math.isfinite(cfg.analytics_time_scale) and cfg.analytics_time_scale > 0):
        raise ValueError(f"analytics_time_scale must be a number > 0, got {cfg.analytics_time_scale!r}")
    if cfg.label_value_max_bytes < MIN_LABEL_BYTES:
        raise ValueError(f"label_value_max_bytes must be at least {MIN_LABEL_BYTES}, got {cfg.label_value_max_bytes}")
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ValueError("tls_cert and tls_key must be given together")
    for name in ("otlp_http", "otlp_grpc", "listen"):
        address = getattr(cfg, name)
        if address:
            try:
                split_address(address)
            except ValueError as e:
                raise ValueError(f"--{name.replace('_', '-')}: {e}") from None
    return cfg


def split_address(address: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[v6]:PORT') -> (host, port); port 0 picks a free port."""
    scheme, sep, rest = address.partition("://")
    if sep:  # an endpoint URL, as the SDK's OTEL_EXPORTER_OTLP_ENDPOINT takes: "http" would resolve as a host
        raise ValueError(f"expected HOST:PORT without a scheme, got {address!r}: drop {scheme + sep!r}, e.g. {rest!r}")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT with a port 0-65535, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)
