"""Settings from explicit arguments, then environment variables, then defaults.

Monitoring configuration must never take the model server down: every value is validated here, and a
bad one logs a single warning naming the variable, the rejected value and the value used instead.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from . import taxonomy

_log = logging.getLogger("modeltel")
T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
PROTOCOLS = ("grpc", "http/protobuf")
TRACES_EXPORTERS = ("otlp", "console", "none")
METRICS_EXPORTERS = ("otlp", "console", "prometheus", "none")
HISTOGRAMS = ("explicit", "exponential")
EXEMPLAR_FILTERS = ("trace_based", "always_on", "always_off")
TEMPORALITIES = ("cumulative", "delta", "lowmemory")
OTLP_ENCODERS = ("modeltel", "upstream")  # modeltel's wire encoder (default), or the OTLP exporters' own


class _Reader:
    """Reads one environment mapping, warning once per bad variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self._warned: set[str] = set()

    def _warn(self, name: str, raw: str, why: str, used: object) -> None:
        if name not in self._warned:
            self._warned.add(name)
            _log.warning("modeltel: ignoring %s=%r (%s); using %r instead", name, raw, why, used)

    def str(self, name: str, default: str | None) -> str | None:
        raw = self.env.get(name, "").strip()
        return raw or default

    def bool(self, name: str, default: bool) -> bool:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        self._warn(name, raw, "expected true/false", default)
        return default

    def choice(self, name: str, default: str, choices: Sequence[str]) -> str:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        if raw.lower() in choices:
            return raw.lower()
        self._warn(name, raw, "expected one of " + ", ".join(choices), default)
        return default

    def number(self, name: str, default: T, convert: Callable[[str], T], valid: Callable[[T], bool], why: str) -> T:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = convert(raw)
        except ValueError:
            value = None
        if value is None or not valid(value):
            self._warn(name, raw, why, default)
            return default
        return value

    def otlp_endpoint(self, signal: str, protocol: str) -> str | None:
        """An OTLP/HTTP endpoint given without a scheme, completed with ``http://``; None (the usual case)
        leaves the exporter to read its ``OTEL_EXPORTER_OTLP_*`` variables itself."""
        if protocol != "http/protobuf":
            return None  # a gRPC endpoint may be a bare HOST:PORT
        for name, path in (
            (f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", ""),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", f"/v1/{signal.lower()}"),
        ):
            raw = self.env.get(name, "").strip()
            if raw:
                if "://" in raw:
                    return None
                self._warn(name, raw, "no scheme", "http://" + raw)
                return "http://" + raw.rstrip("/") + path
        return None

    def buckets(self, name: str, default: tuple[float, ...]) -> tuple[float, ...]:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            values = tuple(float(v) for v in raw.split(","))
        except ValueError:
            values = ()
        ok = values and all(math.isfinite(v) for v in values) and all(a < b for a, b in itertools.pairwise(values))
        if not ok:
            self._warn(name, raw, "expected comma-separated, strictly increasing numbers", ",".join(map(str, default)))
            return default
        return values


def _ratio(value: float) -> bool:
    return 0.0 <= value <= 1.0


@dataclass(frozen=True)
class Settings:
    """Everything modeltel's pipeline needs. Build with :func:`load`; fields are also ``init()`` kwargs."""

    service_name: str = "modeltel-app"
    model_name: str = taxonomy.UNKNOWN_VALUE
    model_version: str = taxonomy.UNKNOWN_VALUE
    disabled: bool = False
    gpu_metrics: bool = True
    host_metrics: bool = True
    prometheus_port: int | None = None
    prometheus_host: str = "127.0.0.1"
    traces_exporter: str = "otlp"
    metrics_exporter: str = "otlp"
    traces_protocol: str = "http/protobuf"
    metrics_protocol: str = "http/protobuf"
    traces_endpoint: str | None = None  # None: the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
    metrics_endpoint: str | None = None
    otlp_encoder: str = "modeltel"
    sampler: str = "parentbased_always_on"
    sampler_arg: float = 1.0
    exemplar_filter: str = "trace_based"
    metric_export_interval_ms: int = 10_000
    metrics_temporality: str = "cumulative"
    histogram: str = "explicit"
    latency_buckets: tuple[float, ...] = taxonomy.LATENCY_BUCKETS_SECONDS
    confidence_buckets: tuple[float, ...] = taxonomy.CONFIDENCE_BUCKETS
    batch_size_buckets: tuple[float, ...] = taxonomy.BATCH_SIZE_BUCKETS
    record_confidence: bool = True
    max_stages: int = taxonomy.DEFAULT_MAX_STAGES
    max_error_types: int = taxonomy.DEFAULT_MAX_ERROR_TYPES
    exit_timeout_s: float = 2.0

    @property
    def fast_path(self) -> bool:
        """Whether modeltel's own aggregation can serve the instruments (cumulative, explicit buckets)."""
        return self.histogram == "explicit" and self.metrics_temporality == "cumulative"

    @property
    def bucket_overrides(self) -> dict[str, tuple[float, ...]]:
        return {
            taxonomy.PREDICTION_LATENCY.otel_name: self.latency_buckets,
            taxonomy.STAGE_LATENCY.otel_name: self.latency_buckets,
            taxonomy.PREDICTION_CONFIDENCE.otel_name: self.confidence_buckets,
            taxonomy.BATCH_SIZE.otel_name: self.batch_size_buckets,
        }


def _parse_resource_attributes(raw: str) -> dict[str, str]:
    out = {}
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def load(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings`: explicit ``overrides`` beat ``env`` (default ``os.environ``), which beats defaults."""
    r = _Reader(os.environ if env is None else env)
    d = Settings()
    resource_attrs = _parse_resource_attributes(r.env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    model_env = r.str("MODELTEL_MODEL_NAME", resource_attrs.get(taxonomy.RESOURCE_MODEL_NAME))
    model_name = model_env or d.model_name
    protocol = r.choice("OTEL_EXPORTER_OTLP_PROTOCOL", d.traces_protocol, PROTOCOLS)
    traces_protocol = r.choice("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", protocol, PROTOCOLS)
    metrics_protocol = r.choice("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", protocol, PROTOCOLS)
    sampler = r.choice("OTEL_TRACES_SAMPLER", d.sampler, SAMPLERS)
    sampler_arg = d.sampler_arg
    if sampler.endswith("traceidratio"):
        sampler_arg = r.number("OTEL_TRACES_SAMPLER_ARG", 1.0, float, _ratio, "expected a ratio in [0, 1]")
    settings = Settings(
        service_name=r.str("OTEL_SERVICE_NAME", resource_attrs.get("service.name", model_env or d.service_name)),
        model_name=model_name,
        model_version=r.str(
            "MODELTEL_MODEL_VERSION", resource_attrs.get(taxonomy.RESOURCE_MODEL_VERSION, d.model_version)
        ),
        disabled=r.bool("MODELTEL_DISABLED", d.disabled) or r.bool("OTEL_SDK_DISABLED", False),
        gpu_metrics=r.bool("MODELTEL_GPU_METRICS", d.gpu_metrics),
        host_metrics=r.bool("MODELTEL_HOST_METRICS", d.host_metrics),
        prometheus_port=r.number(
            "MODELTEL_PROMETHEUS_PORT", None, int, lambda p: 0 < p < 65536, "expected a port number 1-65535"
        ),
        prometheus_host=r.str("MODELTEL_PROMETHEUS_HOST", d.prometheus_host),
        traces_exporter=r.choice("OTEL_TRACES_EXPORTER", d.traces_exporter, TRACES_EXPORTERS),
        metrics_exporter=r.choice("OTEL_METRICS_EXPORTER", d.metrics_exporter, METRICS_EXPORTERS),
        traces_protocol=traces_protocol,
        metrics_protocol=metrics_protocol,
        traces_endpoint=r.otlp_endpoint("TRACES", traces_protocol),
        metrics_endpoint=r.otlp_endpoint("METRICS", metrics_protocol),
        otlp_encoder=r.choice("MODELTEL_OTLP_ENCODER", d.otlp_encoder, OTLP_ENCODERS),
        sampler=sampler,
        sampler_arg=sampler_arg,
        exemplar_filter=r.choice("OTEL_METRICS_EXEMPLAR_FILTER", d.exemplar_filter, EXEMPLAR_FILTERS),
        metric_export_interval_ms=r.number(
            "OTEL_METRIC_EXPORT_INTERVAL",
            d.metric_export_interval_ms,
            int,
            lambda v: v > 0,
            "expected milliseconds > 0",
        ),
        metrics_temporality=r.choice(
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", d.metrics_temporality, TEMPORALITIES
        ),
        histogram=r.choice("MODELTEL_HISTOGRAM", d.histogram, HISTOGRAMS),
        latency_buckets=r.buckets("MODELTEL_LATENCY_BUCKETS", d.latency_buckets),
        record_confidence=r.bool("MODELTEL_RECORD_CONFIDENCE", d.record_confidence),
        max_stages=r.number("MODELTEL_MAX_STAGES", d.max_stages, int, lambda v: v > 0, "expected an integer > 0"),
        max_error_types=r.number(
            "MODELTEL_MAX_ERROR_TYPES", d.max_error_types, int, lambda v: v > 0, "expected an integer > 0"
        ),
        exit_timeout_s=r.number(
            "MODELTEL_EXIT_TIMEOUT", d.exit_timeout_s, float, lambda v: 0 <= v < math.inf, "expected seconds >= 0"
        ),
    )
    unknown = set(overrides) - {f.name for f in fields(Settings)}
    if unknown:
        raise TypeError(f"unknown modeltel setting(s): {', '.join(sorted(unknown))}")
    explicit = {k: v for k, v in overrides.items() if v is not None}
    if "model_name" in explicit and "service_name" not in explicit and "OTEL_SERVICE_NAME" not in r.env:
        explicit["service_name"] = explicit["model_name"]
    return replace(settings, **explicit)
