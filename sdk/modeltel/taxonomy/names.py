"""Attribute keys, bucket boundaries and the per-request instruments: what every signal is called.

Naming follows the OpenTelemetry -> Prometheus compatibility rules: dots become underscores, the unit
becomes a suffix (``s`` -> ``_seconds``), monotonic sums get ``_total``, and unit annotations in braces
(``{prediction}``) are dropped. Units are chosen so that translation lands exactly on the seed
protocol's Prometheus names, which keeps its users' PromQL working.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ATTR_ERROR_TYPE",
    "ATTR_MODEL_NAME",
    "ATTR_MODEL_VERSION",
    "ATTR_RESOURCE_TYPE",
    "ATTR_SHED_REASON",
    "ATTR_STAGE",
    "ATTR_STATUS",
    "BATCH_SIZE",
    "BATCH_SIZE_BUCKETS",
    "CANONICAL_STAGES",
    "CONFIDENCE_BUCKETS",
    "DEFAULT_MAX_ERROR_TYPES",
    "DEFAULT_MAX_STAGES",
    "DISTRO_NAME",
    "ERRORS",
    "INSTRUMENTS",
    "INSTRUMENTS_BY_OTEL_NAME",
    "LATENCY_BUCKETS_SECONDS",
    "METER_NAME",
    "ONLINE_ACCURACY",
    "OVERFLOW_VALUE",
    "PREDICTIONS",
    "PREDICTION_CONFIDENCE",
    "PREDICTION_LATENCY",
    "RESOURCE_MODEL_NAME",
    "RESOURCE_MODEL_VERSION",
    "RESOURCE_USAGE",
    "SHED_REASONS",
    "SPAN_ATTR_BATCH_SIZE",
    "SPAN_ATTR_FRAMEWORK",
    "SPAN_ATTR_FRAMEWORK_STAGE",
    "SPAN_ATTR_KIND",
    "SPAN_ATTR_STAGE",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PREDICTION",
    "SPAN_KIND_REQUEST",
    "SPAN_KIND_STAGE",
    "STAGE_INFERENCE",
    "STAGE_LATENCY",
    "STAGE_POSTPROCESS",
    "STAGE_PREPROCESS",
    "STATUS_ERROR",
    "STATUS_SUCCESS",
    "TRACER_NAME",
    "TRACES_SHED",
    "UNKNOWN_VALUE",
    "Instrument",
    "InstrumentKind",
]

# --------------------------------------------------------------------------------------------------
# Attribute keys. OTel side on the left; the Prometheus label they translate to in the comment.
# --------------------------------------------------------------------------------------------------
ATTR_MODEL_NAME = "model.name"  # model_name
ATTR_MODEL_VERSION = "model.version"  # model_version
ATTR_STATUS = "status"  # "success" | "error" | "cancelled" (a client left or the process stopped: genai.py)
ATTR_ERROR_TYPE = "error.type"  # error_type
ATTR_STAGE = "stage"  # stage: preprocess | inference | postprocess | <custom>
ATTR_RESOURCE_TYPE = "resource_type"  # resource_type: cpu | memory | gpu
ATTR_SHED_REASON = "reason"  # reason: one of SHED_REASONS

# Span-only attributes: they let any consumer (our collector's span-derived metrics included) tell
# modeltel's spans apart without parsing span names.
SPAN_ATTR_KIND = "modeltel.kind"  # "prediction" | "stage" | "request" | "client" (see SPAN_KIND_REQUEST, _CLIENT)
SPAN_ATTR_STAGE = "modeltel.stage"  # canonical stage name, as in the ATTR_STAGE metric label
SPAN_ATTR_FRAMEWORK_STAGE = "modeltel.framework.stage"  # the framework's own name, e.g. "decode_request"
SPAN_ATTR_FRAMEWORK = "modeltel.framework"  # e.g. "kserve", "sklearn"
SPAN_ATTR_BATCH_SIZE = "modeltel.batch.size"
SPAN_KIND_PREDICTION = "prediction"
SPAN_KIND_STAGE = "stage"
# an HTTP server span adopted as the request's prediction whose application then opened its own inside:
# the request is counted once, under the application's, so the server span is no prediction either
SPAN_KIND_REQUEST = "request"
# a client-side generation (an LLM call, modeltel.generation(client=True)) inside a prediction: the
# prediction's child, with its client GenAI series; the request is that prediction's, counted once there
SPAN_KIND_CLIENT = "client"

# Resource attributes describing the served model (in addition to service.name / service.instance.id).
RESOURCE_MODEL_NAME = "model.name"
RESOURCE_MODEL_VERSION = "model.version"

STATUS_SUCCESS = "success"
STATUS_ERROR = "error"

# Canonical stage names. Frameworks' own names map onto these; anything else is a custom stage.
STAGE_PREPROCESS = "preprocess"
STAGE_INFERENCE = "inference"
STAGE_POSTPROCESS = "postprocess"
CANONICAL_STAGES = (STAGE_PREPROCESS, STAGE_INFERENCE, STAGE_POSTPROCESS)

# Values that replace label values beyond the cardinality caps.
OVERFLOW_VALUE = "_other"
UNKNOWN_VALUE = "unknown"

# Default caps on distinct custom label values (stage names, error types) per process.
DEFAULT_MAX_STAGES = 32
DEFAULT_MAX_ERROR_TYPES = 64

# --------------------------------------------------------------------------------------------------
# Bucket boundaries.
# --------------------------------------------------------------------------------------------------
# Latency (seconds). Every threshold and SLO target below (20/30/50/100/200/500 ms) is a boundary, so
# "fraction of requests under 50 ms" is an exact bucket read, and p95 at 20, 30, 50, 100 and 200 ms
# fall in distinct buckets. The seed's [0.01, 0.05, 0.1, 0.5, ...] put 10-50 ms in one bucket.
LATENCY_BUCKETS_SECONDS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
    0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
CONFIDENCE_BUCKETS: tuple[float, ...] = (
    0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99,
)  # fmt: skip
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class InstrumentKind(str, Enum):
    HISTOGRAM = "histogram"
    COUNTER = "counter"
    GAUGE = "gauge"  # observable or synchronous gauge


@dataclass(frozen=True)
class Instrument:
    """One OpenTelemetry instrument and the Prometheus series it becomes."""

    otel_name: str
    prometheus_name: str  # the family name after OTel->Prometheus translation (no _bucket/_total)
    kind: InstrumentKind
    unit: str
    description: str
    attributes: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    @property
    def prometheus_labels(self) -> tuple[str, ...]:
        return tuple(a.replace(".", "_") for a in self.attributes)

    @property
    def prometheus_series(self) -> str:
        """The sample name users query: ``_total`` for counters, ``_bucket``-able base for histograms."""
        return self.prometheus_name + "_total" if self.kind is InstrumentKind.COUNTER else self.prometheus_name


_MODEL = (ATTR_MODEL_NAME, ATTR_MODEL_VERSION)

PREDICTION_LATENCY = Instrument(
    otel_name="model.prediction.latency",
    prometheus_name="model_prediction_latency_seconds",
    kind=InstrumentKind.HISTOGRAM,
    unit="s",
    description="End-to-end time to serve one prediction request.",
    attributes=_MODEL,
    buckets=LATENCY_BUCKETS_SECONDS,
)
STAGE_LATENCY = Instrument(
    otel_name="model.stage.latency",
    prometheus_name="model_stage_latency_seconds",
    kind=InstrumentKind.HISTOGRAM,
    unit="s",
    description="Time spent in one serving stage (preprocess, inference, postprocess or custom).",
    attributes=(*_MODEL, ATTR_STAGE),
    buckets=LATENCY_BUCKETS_SECONDS,
)
PREDICTIONS = Instrument(
    otel_name="model.predictions",
    prometheus_name="model_predictions",
    kind=InstrumentKind.COUNTER,
    unit="{prediction}",
    description="Prediction requests served, by outcome.",
    attributes=(*_MODEL, ATTR_STATUS),
)
ERRORS = Instrument(
    otel_name="model.errors",
    prometheus_name="model_errors",
    kind=InstrumentKind.COUNTER,
    unit="{error}",
    description="Errors raised while serving, by exception type.",
    attributes=(*_MODEL, ATTR_ERROR_TYPE),
)
PREDICTION_CONFIDENCE = Instrument(
    otel_name="model.prediction.confidence",
    prometheus_name="model_prediction_confidence",
    kind=InstrumentKind.HISTOGRAM,
    unit="{score}",
    description="Confidence (top-class probability) of each prediction.",
    attributes=_MODEL,
    buckets=CONFIDENCE_BUCKETS,
)
BATCH_SIZE = Instrument(
    otel_name="model.batch.size",
    prometheus_name="model_batch_size",
    kind=InstrumentKind.HISTOGRAM,
    unit="{item}",
    description="Items per inference batch.",
    attributes=_MODEL,
    buckets=BATCH_SIZE_BUCKETS,
)
ONLINE_ACCURACY = Instrument(
    otel_name="model.online_accuracy",
    prometheus_name="model_online_accuracy",
    kind=InstrumentKind.GAUGE,
    unit="{fraction}",
    description="Accuracy measured online against delayed ground truth (0..1).",
    attributes=_MODEL,
)
RESOURCE_USAGE = Instrument(
    otel_name="model.resource_usage",
    prometheus_name="model_resource_usage",
    kind=InstrumentKind.GAUGE,
    unit="{percent}",
    description="Resource utilisation in percent (0..100) by resource_type: cpu, memory, gpu.",
    attributes=(ATTR_MODEL_NAME, ATTR_RESOURCE_TYPE),
)

INSTRUMENTS: tuple[Instrument, ...] = (
    PREDICTION_LATENCY,
    STAGE_LATENCY,
    PREDICTIONS,
    ERRORS,
    PREDICTION_CONFIDENCE,
    BATCH_SIZE,
    ONLINE_ACCURACY,
    RESOURCE_USAGE,
)
INSTRUMENTS_BY_OTEL_NAME = {i.otel_name: i for i in INSTRUMENTS}

# The SDK's own account of what its span buffer left out under overload (modeltel.export.shedding):
# "overload", a trace not started because the buffer was past its high-water mark (whole, never
# partial); "buffer_full", a span of a trace under way refused at the buffer's hard bound (that trace is
# partial: the high-water mark leaves room so that this stays rare).
SHED_REASONS: tuple[str, ...] = ("overload", "buffer_full")
TRACES_SHED = Instrument(
    otel_name="modeltel.traces.shed",
    prometheus_name="modeltel_traces_shed",
    kind=InstrumentKind.COUNTER,
    unit="{trace}",
    description=(
        "Traces this process did not export because its span buffer was overloaded, by reason: whole traces"
        " not started (overload), or spans of traces under way refused at the hard bound (buffer_full)."
    ),
    attributes=(ATTR_SHED_REASON,),
)

METER_NAME = "modeltel"
TRACER_NAME = "modeltel"
# the resource's telemetry.distro.name: its app records the instruments above with meter METER_NAME at
# version telemetry.distro.version (the collector labels span-derived series with that scope)
DISTRO_NAME = "modeltel"
