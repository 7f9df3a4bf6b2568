"""What is monitored and what "good" means: the seed's core metrics, and the service level objectives.

``CORE_METRICS`` is the seed protocol's metric taxonomy, typed (name, kind, unit, which way is worse, the
instrument behind it). It holds no thresholds: the numbers that page, with their severity, are the alert
table (:mod:`.alerting`), and the numbers an objective is measured against are ``SLOS`` here. Both the rule
generator and the dashboards read those two, so a line drawn on a panel is one that pages or one that spends
an error budget. The seed's metric table gave every metric a warning / critical band and a target of its own
that its alert rules and SLOs contradict; ``docs/alerts.md`` ("Thresholds: one table") lists where each went.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .genai import GEN_AI_SERVER_TIME_TO_FIRST_TOKEN
from .names import (
    ATTR_RESOURCE_TYPE,
    ATTR_STAGE,
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
    Instrument,
)

__all__ = [
    "CORE_METRICS",
    "SLO",
    "SLOS",
    "SLO_LATENCY_THRESHOLD_SECONDS",
    "SLO_TTFT_THRESHOLD_SECONDS",
    "Direction",
    "MetricDefinition",
    "MetricType",
    "Severity",
]


# --------------------------------------------------------------------------------------------------
# The seed protocol's metric taxonomy, typed (its thresholds are the alert table's, in SI units).
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
    """A monitored quantity of the seed's taxonomy: its kind, unit, which way is worse, its instrument."""

    name: str
    type: MetricType
    unit: str
    direction: Direction
    instrument: Instrument | None = None
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)


class Severity(int, Enum):
    """Ordered severities: ``max()`` over these is meaningful (the seed compared strings)."""

    OK = 0
    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()


def _stage_latency(name: str, stage: str) -> MetricDefinition:
    return MetricDefinition(
        name, MetricType.LATENCY, "seconds", Direction.HIGHER_IS_WORSE, STAGE_LATENCY,
        f"p95 {name.removesuffix('_latency')} stage latency", {ATTR_STAGE: stage},
    )  # fmt: skip


def _resource(name: str, resource: str, description: str) -> MetricDefinition:
    return MetricDefinition(
        name, MetricType.RESOURCE, "percent", Direction.HIGHER_IS_WORSE, RESOURCE_USAGE, description,
        {ATTR_RESOURCE_TYPE: resource},
    )  # fmt: skip


_HIGHER, _LOWER = Direction.HIGHER_IS_WORSE, Direction.LOWER_IS_WORSE
_PRED_TOTAL = PREDICTIONS.prometheus_series

CORE_METRICS: dict[str, MetricDefinition] = {
    m.name: m
    for m in (
        MetricDefinition("prediction_latency", MetricType.LATENCY, "seconds", _HIGHER, PREDICTION_LATENCY,
                         "p95 end-to-end prediction latency"),
        _stage_latency("preprocessing_latency", STAGE_PREPROCESS),
        _stage_latency("inference_latency", STAGE_INFERENCE),
        _stage_latency("postprocessing_latency", STAGE_POSTPROCESS),
        MetricDefinition("requests_per_second", MetricType.THROUGHPUT, "requests/second", _LOWER, PREDICTIONS,
                         "prediction requests per second"),
        MetricDefinition("predictions_per_minute", MetricType.THROUGHPUT, "predictions/minute", _LOWER, PREDICTIONS,
                         "predictions per minute"),
        MetricDefinition("online_accuracy", MetricType.ACCURACY, "ratio", _LOWER, ONLINE_ACCURACY, "online accuracy"),
        MetricDefinition("prediction_confidence", MetricType.ACCURACY, "score", _LOWER, PREDICTION_CONFIDENCE,
                         "mean prediction confidence"),
        _resource("cpu_utilization", "cpu", "CPU utilisation"),
        _resource("memory_utilization", "memory", "memory utilisation"),
        _resource("gpu_utilization", "gpu", "GPU utilisation"),
        MetricDefinition("error_rate", MetricType.BUSINESS, "ratio", _HIGHER, PREDICTIONS,
                         "failed predictions (status=error) per prediction"),
        MetricDefinition("availability", MetricType.BUSINESS, "ratio", _LOWER, PREDICTIONS,
                         "fraction of predictions served successfully"),
    )
}  # fmt: skip


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
# Generative models: 95 % of requests get their first token within this (a TTFT bucket boundary). Half the
# HighTimeToFirstToken threshold, as the latency SLO is half HighPredictionLatency's: the objective is missed
# (budget spent) well before anyone is paged.
SLO_TTFT_THRESHOLD_SECONDS = 1.0
_TTFT = GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.prometheus_name
# The seed's four SLOs, then the generative models' TTFT SLO. Availability and error rate are request-based
# (servers push; there is no per-server ``up`` to count), so availability_slo is the strict one (99.9 %
# do not fail) and error_rate_slo the seed's "at most 1 % errors". Both count status="error" over all
# predictions: a cancelled one (the client left, genai.py) is no failure of the model, so it is in the total
# and burns no budget; counting "good = success" would page on disconnects. Accuracy is a gauge: the share of
# time it holds >= 90 %.
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
        description="99.9% of predictions do not fail",
        objective=0.999,
        window="30d",
        bad=f'{_PRED_TOTAL}{{status="{STATUS_ERROR}"}}',  # not "good = success": a client that left is no failure
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
    SLO(
        name="ttft_slo",
        description="95% of generative requests get their first token within 1 s",
        objective=0.95,
        window="30d",
        good=f'{_TTFT}_bucket{{le="{_bucket_le(SLO_TTFT_THRESHOLD_SECONDS)}"}}',
        total=f"{_TTFT}_count",
    ),
)
