"""The one source of truth for modeltel's telemetry contract.

Metric names, units, bucket boundaries, attribute keys, thresholds and SLO targets live here and only
here. Instruments, alert rules, dashboards and the collector's span-derived metrics are all generated
from this module, so a rename is a one-line change that every consumer (and the drift tests) sees.

Naming follows the OpenTelemetry -> Prometheus compatibility rules: dots become underscores, the unit
becomes a suffix (``s`` -> ``_seconds``), monotonic sums get ``_total``, and unit annotations in braces
(``{prediction}``) are dropped. Units are chosen so that translation lands exactly on the seed
protocol's Prometheus names, which keeps its users' PromQL working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

# --------------------------------------------------------------------------------------------------
# Attribute keys. OTel side on the left; the Prometheus label they translate to in the comment.
# --------------------------------------------------------------------------------------------------
ATTR_MODEL_NAME = "model.name"  # model_name
ATTR_MODEL_VERSION = "model.version"  # model_version
ATTR_STATUS = "status"  # status: "success" | "error"
ATTR_ERROR_TYPE = "error.type"  # error_type
ATTR_STAGE = "stage"  # stage: preprocess | inference | postprocess | <custom>
ATTR_RESOURCE_TYPE = "resource_type"  # resource_type: cpu | memory | gpu

# Span-only attributes: they let any consumer (our collector's span-derived metrics included) tell
# modeltel's spans apart without parsing span names.
SPAN_ATTR_KIND = "modeltel.kind"  # "prediction" | "stage"
SPAN_ATTR_STAGE = "modeltel.stage"  # canonical stage name, as in the ATTR_STAGE metric label
SPAN_ATTR_FRAMEWORK_STAGE = "modeltel.framework.stage"  # the framework's own name, e.g. "decode_request"
SPAN_ATTR_FRAMEWORK = "modeltel.framework"  # e.g. "kserve", "sklearn"
SPAN_ATTR_BATCH_SIZE = "modeltel.batch.size"
SPAN_KIND_PREDICTION = "prediction"
SPAN_KIND_STAGE = "stage"

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

METER_NAME = "modeltel"
TRACER_NAME = "modeltel"


# --------------------------------------------------------------------------------------------------
# The seed protocol's metric taxonomy, typed, with thresholds in SI units.
# --------------------------------------------------------------------------------------------------
class MetricType(str, Enum):
    LATENCY = "latency"
    THROUGHPUT = "throughput"
    ACCURACY = "accuracy"
    RESOURCE = "resource"
    BUSINESS = "business"


class Direction(str, Enum):
    """Which way is bad: latency breaches going up, throughput and accuracy going down."""

    HIGHER_IS_WORSE = "higher_is_worse"
    LOWER_IS_WORSE = "lower_is_worse"


@dataclass(frozen=True)
class MetricDefinition:
    """A monitored quantity: how it is aggregated, where it warns, where it is critical, its target.

    Thresholds are in the unit of ``unit`` (seconds, not the seed's milliseconds), so they can be
    compared with Prometheus values directly. ``promql`` is the expression that yields the quantity.
    """

    name: str
    type: MetricType
    unit: str
    aggregation: str  # sum | avg | p50 | p95 | p99
    threshold_warning: float
    threshold_critical: float
    slo_target: float
    direction: Direction
    promql: str
    instrument: Instrument | None = None
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def severity(self, value: float) -> Severity:
        """Classify a reading against this definition's thresholds."""
        worse = (lambda a, b: a >= b) if self.direction is Direction.HIGHER_IS_WORSE else (lambda a, b: a <= b)
        if worse(value, self.threshold_critical):
            return Severity.CRITICAL
        if worse(value, self.threshold_warning):
            return Severity.WARNING
        return Severity.OK


class Severity(int, Enum):
    """Ordered severities: ``max()`` over these is meaningful (the seed compared strings)."""

    OK = 0
    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()


def _p95(instrument: Instrument, by: str = "", window: str = "5m", selector: str = "") -> str:
    group = ", ".join(["le", *filter(None, [by])])
    return f"histogram_quantile(0.95, sum by ({group}) (rate({instrument.prometheus_name}_bucket{selector}[{window}])))"


_PRED_TOTAL = PREDICTIONS.prometheus_series
_ERR_TOTAL = ERRORS.prometheus_series

CORE_METRICS: dict[str, MetricDefinition] = {
    "prediction_latency": MetricDefinition(
        name="prediction_latency",
        type=MetricType.LATENCY,
        unit="seconds",
        aggregation="p95",
        threshold_warning=0.100,
        threshold_critical=0.200,
        slo_target=0.050,
        direction=Direction.HIGHER_IS_WORSE,
        promql=_p95(PREDICTION_LATENCY, "model_name"),
        instrument=PREDICTION_LATENCY,
        description="p95 end-to-end prediction latency",
    ),
    "preprocessing_latency": MetricDefinition(
        name="preprocessing_latency",
        type=MetricType.LATENCY,
        unit="seconds",
        aggregation="p95",
        threshold_warning=0.030,
        threshold_critical=0.050,
        slo_target=0.020,
        direction=Direction.HIGHER_IS_WORSE,
        promql=_p95(STAGE_LATENCY, "model_name", selector=f'{{stage="{STAGE_PREPROCESS}"}}'),
        instrument=STAGE_LATENCY,
        description="p95 preprocessing stage latency",
        labels={ATTR_STAGE: STAGE_PREPROCESS},
    ),
    "inference_latency": MetricDefinition(
        name="inference_latency",
        type=MetricType.LATENCY,
        unit="seconds",
        aggregation="p95",
        threshold_warning=0.050,
        threshold_critical=0.100,
        slo_target=0.030,
        direction=Direction.HIGHER_IS_WORSE,
        promql=_p95(STAGE_LATENCY, "model_name", selector=f'{{stage="{STAGE_INFERENCE}"}}'),
        instrument=STAGE_LATENCY,
        description="p95 inference stage latency",
        labels={ATTR_STAGE: STAGE_INFERENCE},
    ),
    "requests_per_second": MetricDefinition(
        name="requests_per_second",
        type=MetricType.THROUGHPUT,
        unit="requests/second",
        aggregation="avg",
        threshold_warning=50,
        threshold_critical=20,
        slo_target=100,
        direction=Direction.LOWER_IS_WORSE,
        promql=f"sum by (model_name) (rate({_PRED_TOTAL}[5m]))",
        instrument=PREDICTIONS,
        description="prediction requests per second",
    ),
    "predictions_per_minute": MetricDefinition(
        name="predictions_per_minute",
        type=MetricType.THROUGHPUT,
        unit="predictions/minute",
        aggregation="sum",
        threshold_warning=1000,
        threshold_critical=500,
        slo_target=5000,
        direction=Direction.LOWER_IS_WORSE,
        promql=f"sum by (model_name) (increase({_PRED_TOTAL}[1m]))",
        instrument=PREDICTIONS,
        description="predictions per minute",
    ),
    "online_accuracy": MetricDefinition(
        name="online_accuracy",
        type=MetricType.ACCURACY,
        unit="ratio",
        aggregation="avg",
        threshold_warning=0.85,
        threshold_critical=0.80,
        slo_target=0.90,
        direction=Direction.LOWER_IS_WORSE,
        promql=f"avg by (model_name) ({ONLINE_ACCURACY.prometheus_name})",
        instrument=ONLINE_ACCURACY,
        description="online accuracy",
    ),
    "prediction_confidence": MetricDefinition(
        name="prediction_confidence",
        type=MetricType.ACCURACY,
        unit="score",
        aggregation="avg",
        threshold_warning=0.70,
        threshold_critical=0.60,
        slo_target=0.80,
        direction=Direction.LOWER_IS_WORSE,
        promql=(
            f"sum by (model_name) (rate({PREDICTION_CONFIDENCE.prometheus_name}_sum[5m]))"
            f" / sum by (model_name) (rate({PREDICTION_CONFIDENCE.prometheus_name}_count[5m]))"
        ),
        instrument=PREDICTION_CONFIDENCE,
        description="mean prediction confidence",
    ),
    "cpu_utilization": MetricDefinition(
        name="cpu_utilization",
        type=MetricType.RESOURCE,
        unit="percent",
        aggregation="avg",
        threshold_warning=70,
        threshold_critical=85,
        slo_target=50,
        direction=Direction.HIGHER_IS_WORSE,
        promql=f'{RESOURCE_USAGE.prometheus_name}{{resource_type="cpu"}}',
        instrument=RESOURCE_USAGE,
        description="CPU utilisation",
        labels={ATTR_RESOURCE_TYPE: "cpu"},
    ),
    "memory_utilization": MetricDefinition(
        name="memory_utilization",
        type=MetricType.RESOURCE,
        unit="percent",
        aggregation="avg",
        threshold_warning=75,
        threshold_critical=90,
        slo_target=60,
        direction=Direction.HIGHER_IS_WORSE,
        promql=f'{RESOURCE_USAGE.prometheus_name}{{resource_type="memory"}}',
        instrument=RESOURCE_USAGE,
        description="memory utilisation",
        labels={ATTR_RESOURCE_TYPE: "memory"},
    ),
    "gpu_utilization": MetricDefinition(
        name="gpu_utilization",
        type=MetricType.RESOURCE,
        unit="percent",
        aggregation="avg",
        threshold_warning=80,
        threshold_critical=95,
        slo_target=70,
        direction=Direction.HIGHER_IS_WORSE,
        promql=f'{RESOURCE_USAGE.prometheus_name}{{resource_type="gpu"}}',
        instrument=RESOURCE_USAGE,
        description="GPU utilisation",
        labels={ATTR_RESOURCE_TYPE: "gpu"},
    ),
    "error_rate": MetricDefinition(
        name="error_rate",
        type=MetricType.BUSINESS,
        unit="ratio",
        aggregation="avg",
        threshold_warning=0.05,
        threshold_critical=0.10,
        slo_target=0.01,
        direction=Direction.HIGHER_IS_WORSE,
        promql=(f"sum by (model_name) (rate({_ERR_TOTAL}[5m])) / sum by (model_name) (rate({_PRED_TOTAL}[5m]))"),
        instrument=ERRORS,
        description="errors per prediction",
    ),
    "availability": MetricDefinition(
        name="availability",
        type=MetricType.BUSINESS,
        unit="ratio",
        aggregation="avg",
        threshold_warning=0.995,
        threshold_critical=0.99,
        slo_target=0.999,
        direction=Direction.LOWER_IS_WORSE,
        promql=(
            f'sum by (model_name) (rate({_PRED_TOTAL}{{status="{STATUS_SUCCESS}"}}[5m]))'
            f" / sum by (model_name) (rate({_PRED_TOTAL}[5m]))"
        ),
        instrument=PREDICTIONS,
        description="fraction of predictions served successfully",
    ),
}


# --------------------------------------------------------------------------------------------------
# Service level objectives (consumed by the rule and dashboard generators).
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SLO:
    """An objective over a good/total event ratio, evaluated over ``window``.

    ``objective`` is the fraction of events that must be good (0.999 = 99.9 %), so the error budget is
    ``1 - objective``. ``good`` and ``total`` are PromQL selectors of counters (or histogram buckets).
    """

    name: str
    description: str
    objective: float
    window: str
    good: str
    total: str

    @property
    def error_budget(self) -> float:
        return 1.0 - self.objective


def _bucket_le(seconds: float) -> str:
    return f"{seconds:g}"


SLO_LATENCY_THRESHOLD_SECONDS = 0.100
SLOS: tuple[SLO, ...] = (
    SLO(
        name="prediction_latency",
        description="95% of predictions complete within 100 ms",
        objective=0.95,
        window="30d",
        good=f'{PREDICTION_LATENCY.prometheus_name}_bucket{{le="{_bucket_le(SLO_LATENCY_THRESHOLD_SECONDS)}"}}',
        total=f"{PREDICTION_LATENCY.prometheus_name}_count",
    ),
    SLO(
        name="availability",
        description="99.9% of predictions succeed",
        objective=0.999,
        window="30d",
        good=f'{_PRED_TOTAL}{{status="{STATUS_SUCCESS}"}}',
        total=_PRED_TOTAL,
    ),
)


# --------------------------------------------------------------------------------------------------
# GPU and host meters (modeltel.meters). OpenTelemetry hardware semantic conventions where a name
# exists (hw.gpu.*, hw.power, hw.errors); modeltel.gpu.* for the rest. Prometheus names are what the
# Python Prometheus exporter yields (it maps unit "1" to no suffix; the Collector adds "_ratio").
# --------------------------------------------------------------------------------------------------
METER_NAME_GPU = "modeltel.gpu"
METER_NAME_HOST = "modeltel.host"
# model.resource_usage (cpu, memory and gpu points) comes from ONE instrument in this scope: the Python
# Prometheus exporter merges same-named metrics of different scopes under the first one's label keys.
METER_NAME_RESOURCES = "modeltel.meters"

ATTR_HW_ID = "hw.id"  # hw_id: device UUID ("GPU-..." or "MIG-...")
ATTR_HW_NAME = "hw.name"  # hw_name: product name, e.g. "NVIDIA H100 80GB HBM3"
ATTR_HW_TYPE = "hw.type"  # hw_type: always "gpu"
ATTR_HW_DRIVER_VERSION = "hw.driver_version"  # hw_driver_version
ATTR_HW_PARENT = "hw.parent"  # hw_parent: UUID of the physical GPU of a MIG instance
ATTR_HW_GPU_TASK = "hw.gpu.task"  # hw_gpu_task: "general"
ATTR_GPU_INDEX = "modeltel.gpu.index"  # modeltel_gpu_index: NVML index of the (parent) GPU
ATTR_GPU_MIG_INDEX = "modeltel.gpu.mig.index"  # modeltel_gpu_mig_index: MIG instance index (MIG only)
ATTR_GPU_THROTTLE_REASON = "modeltel.gpu.throttle.reason"  # modeltel_gpu_throttle_reason
ATTR_GPU_FIELD = "field"  # field: which reading failed (collection errors)
HW_TYPE_GPU = "gpu"
RESOURCE_TYPE_CPU = "cpu"
RESOURCE_TYPE_MEMORY = "memory"
RESOURCE_TYPE_GPU = "gpu"
ECC_CORRECTED = "corrected"
ECC_UNCORRECTED = "uncorrected"

_GPU_DEVICE = (ATTR_HW_ID, ATTR_HW_NAME, ATTR_HW_TYPE, ATTR_HW_DRIVER_VERSION, ATTR_GPU_INDEX)


def _gpu(otel_name: str, prometheus_name: str, kind: InstrumentKind, unit: str, description: str, *extra: str):
    return Instrument(otel_name, prometheus_name, kind, unit, description, (*_GPU_DEVICE, *extra))


GPU_UTILIZATION = _gpu(
    "hw.gpu.utilization", "hw_gpu_utilization", InstrumentKind.GAUGE, "1",
    "Fraction of time the GPU was busy running kernels (0..1).", ATTR_HW_GPU_TASK,
)  # fmt: skip
GPU_MEMORY_USAGE = _gpu(
    "hw.gpu.memory.usage", "hw_gpu_memory_usage_bytes", InstrumentKind.GAUGE, "By", "GPU memory used."
)
GPU_MEMORY_LIMIT = _gpu(
    "hw.gpu.memory.limit", "hw_gpu_memory_limit_bytes", InstrumentKind.GAUGE, "By", "Size of the GPU memory."
)
GPU_MEMORY_UTILIZATION = _gpu(
    "hw.gpu.memory.utilization", "hw_gpu_memory_utilization", InstrumentKind.GAUGE, "1",
    "Fraction of GPU memory used (usage / limit, 0..1).",
)  # fmt: skip
GPU_MEMORY_FREE = _gpu(
    "modeltel.gpu.memory.free", "modeltel_gpu_memory_free_bytes", InstrumentKind.GAUGE, "By", "GPU memory free."
)
GPU_MEMORY_CONTROLLER_UTILIZATION = _gpu(
    "modeltel.gpu.memory_controller.utilization", "modeltel_gpu_memory_controller_utilization",
    InstrumentKind.GAUGE, "1", "Fraction of time GPU memory was being read or written (bandwidth busy, 0..1).",
)  # fmt: skip
GPU_TEMPERATURE = _gpu(
    "modeltel.gpu.temperature", "modeltel_gpu_temperature_celsius", InstrumentKind.GAUGE, "Cel",
    "GPU die temperature.",
)  # fmt: skip
GPU_POWER = _gpu("hw.power", "hw_power_watts", InstrumentKind.GAUGE, "W", "GPU instantaneous power draw.")
GPU_POWER_LIMIT = _gpu(
    "modeltel.gpu.power.limit", "modeltel_gpu_power_limit_watts", InstrumentKind.GAUGE, "W",
    "Power limit the GPU enforces.",
)  # fmt: skip
GPU_CLOCK_SM = _gpu(
    "modeltel.gpu.clock.sm", "modeltel_gpu_clock_sm_hertz", InstrumentKind.GAUGE, "Hz", "Current SM clock."
)
GPU_CLOCK_MEMORY = _gpu(
    "modeltel.gpu.clock.memory", "modeltel_gpu_clock_memory_hertz", InstrumentKind.GAUGE, "Hz",
    "Current memory clock.",
)  # fmt: skip
GPU_THROTTLE = _gpu(
    "modeltel.gpu.throttle", "modeltel_gpu_throttle", InstrumentKind.GAUGE, "{state}",
    "1 while the clocks are held down for this reason, else 0.", ATTR_GPU_THROTTLE_REASON,
)  # fmt: skip
GPU_ERRORS = _gpu(
    "hw.errors", "hw_errors", InstrumentKind.COUNTER, "{error}",
    "ECC memory errors since the driver loaded (volatile), by error.type corrected | uncorrected.", ATTR_ERROR_TYPE,
)  # fmt: skip
GPU_PROCESS_MEMORY = _gpu(
    "modeltel.gpu.process.memory.usage", "modeltel_gpu_process_memory_usage_bytes", InstrumentKind.GAUGE, "By",
    "GPU memory used by this process and its descendant (worker) processes.",
)  # fmt: skip
GPU_COLLECTION_ERRORS = Instrument(
    otel_name="modeltel.gpu.collection.errors",
    prometheus_name="modeltel_gpu_collection_errors",
    kind=InstrumentKind.COUNTER,
    unit="{error}",
    description="GPU readings that failed, by device, field and NVML error.",
    attributes=(ATTR_HW_ID, ATTR_GPU_FIELD, ATTR_ERROR_TYPE),
)

GPU_INSTRUMENTS: tuple[Instrument, ...] = (
    GPU_UTILIZATION,
    GPU_MEMORY_USAGE,
    GPU_MEMORY_LIMIT,
    GPU_MEMORY_UTILIZATION,
    GPU_MEMORY_FREE,
    GPU_MEMORY_CONTROLLER_UTILIZATION,
    GPU_TEMPERATURE,
    GPU_POWER,
    GPU_POWER_LIMIT,
    GPU_CLOCK_SM,
    GPU_CLOCK_MEMORY,
    GPU_THROTTLE,
    GPU_ERRORS,
    GPU_PROCESS_MEMORY,
    GPU_COLLECTION_ERRORS,
)
