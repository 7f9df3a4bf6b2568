"""Settings from explicit arguments, then environment variables, then defaults.

Monitoring configuration must never take the model server down: every value is validated here, and a
bad one logs a single warning naming the variable, the rejected value and the value used instead.
"""

from __future__ import annotations

import difflib
import itertools
import logging
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, TypeVar

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


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError
    return value.strip()


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = value.strip().lower() if isinstance(value, str) else None
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ValueError


def _number(kind: type, valid: Callable[[Any], bool]) -> Callable[[Any], Any]:
    """``kind`` (int or float) from a string or a number (never a bool), if ``valid``."""

    def convert(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | numbers.Real):
            raise ValueError
        number = kind(value.strip() if isinstance(value, str) else value)
        if kind is int and not isinstance(value, str) and number != value:
            raise ValueError  # 2.5 is not a port
        if not valid(number):
            raise ValueError
        return number

    return convert


def _choice(choices: Sequence[str]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        word = value.strip().lower() if isinstance(value, str) else None
        if word not in choices:
            raise ValueError
        return word

    return convert


def _buckets(value: Any) -> tuple[float, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)  # TypeError if not a sequence
    values = tuple(_number(float, math.isfinite)(v) for v in items)
    if not values or not all(a < b for a, b in itertools.pairwise(values)):
        raise ValueError
    return values


class _Rule(NamedTuple):
    convert: Callable[[Any], Any]  # an environment string or a keyword argument -> the value; ValueError if bad
    why: str  # what a good value looks like, for the warning


def _choice_rule(choices: Sequence[str]) -> _Rule:
    return _Rule(_choice(choices), "expected one of " + ", ".join(choices))


_TEXT = _Rule(_text, "expected a non-empty string")
_FLAG = _Rule(_flag, "expected true/false")
_COUNT = _Rule(_number(int, lambda v: v > 0), "expected an integer > 0")
_BUCKETS = _Rule(_buckets, "expected comma-separated, strictly increasing numbers")
# One table for both sources: a setting's environment variable and its init() keyword are validated alike.
RULES: dict[str, _Rule] = {
    "service_name": _TEXT,
    "model_name": _TEXT,
    "model_version": _TEXT,
    "disabled": _FLAG,
    "gpu_metrics": _FLAG,
    "host_metrics": _FLAG,
    "prometheus_port": _Rule(_number(int, lambda p: 0 < p < 65536), "expected a port number 1-65535"),
    "prometheus_host": _TEXT,
    "traces_exporter": _choice_rule(TRACES_EXPORTERS),
    "metrics_exporter": _choice_rule(METRICS_EXPORTERS),
    "traces_protocol": _choice_rule(PROTOCOLS),
    "metrics_protocol": _choice_rule(PROTOCOLS),
    "sampler": _choice_rule(SAMPLERS),
    "sampler_arg": _Rule(_number(float, lambda v: 0.0 <= v <= 1.0), "expected a ratio in [0, 1]"),
    "exemplar_filter": _choice_rule(EXEMPLAR_FILTERS),
    "metric_export_interval_ms": _Rule(_number(int, lambda v: v > 0), "expected milliseconds > 0"),
    "metrics_temporality": _choice_rule(TEMPORALITIES),
    "histogram": _choice_rule(HISTOGRAMS),
    "latency_buckets": _BUCKETS,
    "confidence_buckets": _BUCKETS,
    "batch_size_buckets": _BUCKETS,
    "record_confidence": _FLAG,
    "max_stages": _COUNT,
    "max_error_types": _COUNT,
    "traces_endpoint": _TEXT,
    "metrics_endpoint": _TEXT,
    "otlp_encoder": _choice_rule(OTLP_ENCODERS),
    "exit_timeout_s": _Rule(_number(float, lambda v: 0 <= v < math.inf), "expected seconds >= 0"),
    "keep_slow_and_failed": _FLAG,
    "keep_slow_threshold_s": _Rule(_number(float, lambda v: 0 <= v < math.inf), "expected seconds >= 0"),
}


def _shown(value: Any) -> Any:
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def _warn(source: str, raw: Any, why: str, used: Any) -> None:
    _log.warning("modeltel: ignoring %s=%r (%s); using %r instead", source, raw, why, _shown(used))


class _Reader:
    """Reads one environment mapping through :data:`RULES`, warning once per bad variable; ``read`` keeps
    every name asked for, so what is left under ``MODELTEL_`` is a typo (:func:`_warn_unknown`)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self._warned: set[str] = set()
        self.read: set[str] = set()

    def get(self, name: str) -> str:
        self.read.add(name)
        return self.env.get(name, "").strip()

    def _warn(self, name: str, raw: str, why: str, used: object) -> None:
        if name not in self._warned:
            self._warned.add(name)
            _warn(name, raw, why, used)

    def __call__(self, name: str, field: str, default: T) -> T:
        """Variable ``name`` as setting ``field``: ``default`` when unset or bad (with a warning)."""
        raw = self.get(name)
        if not raw:
            return default
        rule = RULES[field]
        try:
            return rule.convert(raw)
        except (ValueError, TypeError, OverflowError):
            self._warn(name, raw, rule.why, default)
            return default

    def otlp_endpoint(self, signal: str, protocol: str) -> str | None:
        """An OTLP/HTTP endpoint given without a scheme, completed with ``http://``; None (the usual case)
        leaves the exporter to read its ``OTEL_EXPORTER_OTLP_*`` variables itself."""
        if protocol != "http/protobuf":
            return None  # a gRPC endpoint may be a bare HOST:PORT
        for name, path in (
            (f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", ""),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", f"/v1/{signal.lower()}"),
        ):
            raw = self.get(name)
            if raw:
                if "://" in raw:
                    return None
                self._warn(name, raw, "no scheme", "http://" + raw)
                return "http://" + raw.rstrip("/") + path
        return None


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
    # Keep the spans of every failed or slow prediction whose trace the sampler dropped (docs/performance.md)
    keep_slow_and_failed: bool = False
    keep_slow_threshold_s: float = taxonomy.SLO_LATENCY_THRESHOLD_SECONDS  # slow: outside the latency SLO

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
    """Build :class:`Settings`: explicit ``overrides`` beat ``env`` (default ``os.environ``), which beats defaults.

    A bad value from either source logs one warning and falls back (an override to what the environment
    or the defaults give); an unknown override, or an unknown ``MODELTEL_*`` variable, is ignored with a
    warning naming the closest valid name. It never raises.
    """
    r = _Reader(os.environ if env is None else env)
    settings = _from_env(r)
    _warn_unknown(r)
    explicit = _explicit(settings, overrides)
    if "model_name" in explicit and "service_name" not in explicit and "OTEL_SERVICE_NAME" not in r.env:
        explicit["service_name"] = explicit["model_name"]
    return replace(settings, **explicit)


def variables_read() -> frozenset[str]:
    """The environment variables :func:`load` reads (with none set): what the README's table must list."""
    r = _Reader({})
    _from_env(r)
    return frozenset(r.read)


# MODELTEL_ names that are not the SDK's: the collector's options (it validates them itself), and variables
# that the deployment files (Grafana's datasource, docker compose) and the test suite read.
_OTHER_READERS = ("MODELTEL_COLLECTOR_", "MODELTEL_AUTH_TOKEN", "MODELTEL_ALERTMANAGER_SECRETS", "MODELTEL_TEST_")
_unknown_warned: set[str] = set()  # once per process: load() runs again for each init()


def _warn_unknown(r: _Reader) -> None:
    """One warning per ``MODELTEL_*`` variable that nothing reads: a typo such as ``MODELTEL_MODEL`` would
    otherwise show only as ``model_name="unknown"`` series."""
    prefix = "MODELTEL_"
    valid = sorted(n.removeprefix(prefix) for n in r.read if n.startswith(prefix))  # the prefix would match all
    for name in sorted(r.env):
        if not name.startswith(prefix) or name in r.read or name.startswith(_OTHER_READERS):
            continue
        if name in _unknown_warned:
            continue
        _unknown_warned.add(name)
        close = difflib.get_close_matches(name.removeprefix(prefix), valid, n=1)
        hint = f"did you mean {prefix}{close[0]}?" if close else "the README's Configuration table lists the valid ones"
        _log.warning("modeltel: ignoring unknown variable %s (%s)", name, hint)


def _from_env(r: _Reader) -> Settings:
    """:class:`Settings` from the environment ``r`` reads (bad values warned about and defaulted)."""
    d = Settings()
    resource_attrs = _parse_resource_attributes(r.get("OTEL_RESOURCE_ATTRIBUTES"))
    model_env = r("MODELTEL_MODEL_NAME", "model_name", resource_attrs.get(taxonomy.RESOURCE_MODEL_NAME))
    protocol = r("OTEL_EXPORTER_OTLP_PROTOCOL", "traces_protocol", d.traces_protocol)
    traces_protocol = r("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "traces_protocol", protocol)
    metrics_protocol = r("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "metrics_protocol", protocol)
    sampler = r("OTEL_TRACES_SAMPLER", "sampler", d.sampler)
    sampler_arg = d.sampler_arg
    if sampler.endswith("traceidratio"):
        sampler_arg = r("OTEL_TRACES_SAMPLER_ARG", "sampler_arg", 1.0)
    return Settings(
        service_name=r(
            "OTEL_SERVICE_NAME", "service_name", resource_attrs.get("service.name", model_env or d.service_name)
        ),
        model_name=model_env or d.model_name,
        model_version=r(
            "MODELTEL_MODEL_VERSION",
            "model_version",
            resource_attrs.get(taxonomy.RESOURCE_MODEL_VERSION, d.model_version),
        ),
        disabled=r("MODELTEL_DISABLED", "disabled", d.disabled) or r("OTEL_SDK_DISABLED", "disabled", False),
        gpu_metrics=r("MODELTEL_GPU_METRICS", "gpu_metrics", d.gpu_metrics),
        host_metrics=r("MODELTEL_HOST_METRICS", "host_metrics", d.host_metrics),
        prometheus_port=r("MODELTEL_PROMETHEUS_PORT", "prometheus_port", None),
        prometheus_host=r("MODELTEL_PROMETHEUS_HOST", "prometheus_host", d.prometheus_host),
        traces_exporter=r("OTEL_TRACES_EXPORTER", "traces_exporter", d.traces_exporter),
        metrics_exporter=r("OTEL_METRICS_EXPORTER", "metrics_exporter", d.metrics_exporter),
        traces_protocol=traces_protocol,
        metrics_protocol=metrics_protocol,
        traces_endpoint=r.otlp_endpoint("TRACES", traces_protocol),
        metrics_endpoint=r.otlp_endpoint("METRICS", metrics_protocol),
        otlp_encoder=r("MODELTEL_OTLP_ENCODER", "otlp_encoder", d.otlp_encoder),
        sampler=sampler,
        sampler_arg=sampler_arg,
        exemplar_filter=r("OTEL_METRICS_EXEMPLAR_FILTER", "exemplar_filter", d.exemplar_filter),
        metric_export_interval_ms=r(
            "OTEL_METRIC_EXPORT_INTERVAL", "metric_export_interval_ms", d.metric_export_interval_ms
        ),
        metrics_temporality=r(
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "metrics_temporality", d.metrics_temporality
        ),
        histogram=r("MODELTEL_HISTOGRAM", "histogram", d.histogram),
        latency_buckets=r("MODELTEL_LATENCY_BUCKETS", "latency_buckets", d.latency_buckets),
        record_confidence=r("MODELTEL_RECORD_CONFIDENCE", "record_confidence", d.record_confidence),
        max_stages=r("MODELTEL_MAX_STAGES", "max_stages", d.max_stages),
        max_error_types=r("MODELTEL_MAX_ERROR_TYPES", "max_error_types", d.max_error_types),
        exit_timeout_s=r("MODELTEL_EXIT_TIMEOUT", "exit_timeout_s", d.exit_timeout_s),
        keep_slow_and_failed=r("MODELTEL_KEEP_SLOW_AND_FAILED", "keep_slow_and_failed", d.keep_slow_and_failed),
        keep_slow_threshold_s=r("MODELTEL_KEEP_SLOW_THRESHOLD", "keep_slow_threshold_s", d.keep_slow_threshold_s),
    )


def _explicit(settings: Settings, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The valid, known, non-None ``overrides``, converted by :data:`RULES`; one warning for each other one."""
    out = {}
    for name, value in overrides.items():
        if value is None:
            continue
        rule = RULES.get(name)
        if rule is None:
            close = difflib.get_close_matches(name, RULES, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "not a modeltel setting"
            _log.warning("modeltel: ignoring unknown setting %s=%r (%s)", name, value, hint)
            continue
        try:
            out[name] = rule.convert(value)
        except (ValueError, TypeError, OverflowError):
            _warn(f"init({name})", value, rule.why, getattr(settings, name))
    return out
