"""Thresholds, severities and service level objectives: what "good" means for each signal.

The seed protocol's metric taxonomy, typed, with thresholds in SI units and a direction, so that
severity is computed rather than compared as strings; and the SLO targets that alert rules, burn-rate
rules and dashboards are derived from (:mod:`modeltel.generators`; alert thresholds and ``for:``
durations are in :mod:`.alerting`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .names import (
    ATTR_RESOURCE_TYPE,
    ATTR_STAGE,
    ERRORS,
    ONLINE_ACCURACY,
    PREDICTION_CONFIDENCE,
    PREDICTION_LATENCY,
    PREDICTIONS,
    RESOURCE_USAGE,
    STAGE_INFERENCE,
    STAGE_LATENCY,
    STAGE_POSTPROCESS,
    STAGE_PREPROCESS,
    STATUS_ERROR,
    STATUS_SUCCESS,
    Instrument,
)

__all__ = [
    "CORE_METRICS",
    "SLO",
    "SLOS",
    "SLO_LATENCY_THRESHOLD_SECONDS",
    "Direction",
    "MetricDefinition",
    "MetricType",
    "Severity",
]


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


def _stage_latency(name: str, stage: str, warning: float, critical: float, slo: float) -> MetricDefinition:
    """A stage's p95 latency definition (thresholds and SLO target in seconds)."""
    return MetricDefinition(
        name=name,
        type=MetricType.LATENCY,
        unit="seconds",
        aggregation="p95",
        threshold_warning=warning,
        threshold_critical=critical,
        slo_target=slo,
        direction=Direction.HIGHER_IS_WORSE,
        promql=_p95(STAGE_LATENCY, "model_name", selector=f'{{stage="{stage}"}}'),
        instrument=STAGE_LATENCY,
        description=f"p95 {name.removesuffix('_latency')} stage latency",
        labels={ATTR_STAGE: stage},
    )


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
    "preprocessing_latency": _stage_latency("preprocessing_latency", STAGE_PREPROCESS, 0.030, 0.050, 0.020),
    "inference_latency": _stage_latency("inference_latency", STAGE_INFERENCE, 0.050, 0.100, 0.030),
    "postprocessing_latency": _stage_latency("postprocessing_latency", STAGE_POSTPROCESS, 0.030, 0.050, 0.020),
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
# Service level objectives: what ``alerts/slo-config.yaml`` declares and the burn-rate rules compile.
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SLO:
    """An objective over good events, evaluated per model over ``window``.

    ``objective`` is the fraction that must be good (0.999 = 99.9 %), so the error budget is
    ``1 - objective``. A *ratio* SLO counts events: ``good`` (or ``bad``) and ``total`` are PromQL
    selectors of counters or histogram buckets. A *threshold* SLO counts time: ``metric`` is a gauge, and
    a moment is good while ``metric <op> threshold`` holds (OpenSLO's ``thresholdMetric``).
    """

    name: str
    description: str
    objective: float
    window: str
    good: str = ""
    bad: str = ""
    total: str = ""
    metric: str = ""
    op: str = ""  # gte | gt | lte | lt: how a good reading compares with ``threshold``
    threshold: float = 0.0

    @property
    def error_budget(self) -> float:
        return 1.0 - self.objective

    @property
    def kind(self) -> str:
        return "threshold" if self.metric else "ratio"


def _bucket_le(seconds: float) -> str:
    return f"{seconds:g}"


SLO_LATENCY_THRESHOLD_SECONDS = 0.100
# The seed's four SLOs. Availability and error rate are request-based (servers push; there is no
# per-server ``up`` to count), so availability_slo is the strict one (99.9 % succeed) and
# error_rate_slo the seed's "at most 1 % errors". Accuracy is a gauge: the share of time it holds >= 90 %.
SLOS: tuple[SLO, ...] = (
    SLO(
        name="prediction_latency_slo",
        description="95% of predictions complete within 100 ms",
        objective=0.95,
        window="30d",
        good=f'{PREDICTION_LATENCY.prometheus_name}_bucket{{le="{_bucket_le(SLO_LATENCY_THRESHOLD_SECONDS)}"}}',
        total=f"{PREDICTION_LATENCY.prometheus_name}_count",
    ),
    SLO(
        name="availability_slo",
        description="99.9% of predictions succeed",
        objective=0.999,
        window="30d",
        good=f'{_PRED_TOTAL}{{status="{STATUS_SUCCESS}"}}',
        total=_PRED_TOTAL,
    ),
    SLO(
        name="accuracy_slo",
        description="Online accuracy stays at or above 90% for 90% of the time",
        objective=0.90,
        window="7d",
        metric=ONLINE_ACCURACY.prometheus_name,
        op="gte",
        threshold=0.90,
    ),
    SLO(
        name="error_rate_slo",
        description="At most 1% of predictions fail",
        objective=0.99,
        window="30d",
        bad=f'{_PRED_TOTAL}{{status="{STATUS_ERROR}"}}',
        total=_PRED_TOTAL,
    ),
)
