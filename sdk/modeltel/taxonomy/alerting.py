"""When to alert: the thresholds, ``for:`` durations and burn-rate windows the rule generator reads.

The seed's nine alerts keep the seed's thresholds and ``for:`` durations (its alert rules page at a p95
of 200 / 500 ms, above the 100 / 200 ms warning / critical bands of ``CORE_METRICS``, which dashboards
colour by). Alerts the seed lacks take their thresholds from ``CORE_METRICS`` where one exists. Dashboards
read the same table, so a threshold drawn on a panel is the one that pages.
"""

from __future__ import annotations

from dataclasses import dataclass

from .names import STAGE_INFERENCE, STAGE_POSTPROCESS, STAGE_PREPROCESS
from .quality import CORE_METRICS, Severity

__all__ = [
    "ALERTS",
    "ALERTS_BY_NAME",
    "BURN_RATE_PERIOD",
    "BURN_RATE_WINDOWS",
    "COLLECTOR_JOB",
    "LABEL_FAMILY",
    "MODEL_SERVER_JOB",
    "RATE_WINDOW",
    "SILENT_LOOKBACK",
    "AlertSpec",
    "BurnRateWindow",
]

RATE_WINDOW = "5m"  # every rate() and p95 in the alert rules, as in the seed
COLLECTOR_JOB = "modeltel-collector"  # the Prometheus scrape job of the modeltel collectors
MODEL_SERVER_JOB = "model-serving"  # the seed's job for servers scraped directly (the SDK's /metrics)
# ModelServerDown (push): a server whose series the collector forgot (after its staleness_s) while they
# existed within this lookback. Longer than any deploy gap you want reported, shorter than a retention.
SILENT_LOOKBACK = "1h"
# A critical alert inhibits the warning of the same family and model (alertmanager.yml's inhibit_rules).
LABEL_FAMILY = "family"


@dataclass(frozen=True)
class AlertSpec:
    """One alert: its name, severity, threshold (in Prometheus units: s, ratio, percent) and ``for:``."""

    alert: str
    family: str
    severity: Severity
    threshold: float
    for_: str
    stage: str = ""  # per-stage latency alerts: which stage

    @property
    def severity_label(self) -> str:
        return self.severity.label


_W, _C = Severity.WARNING, Severity.CRITICAL
_CONFIDENCE = CORE_METRICS["prediction_confidence"]
_STAGE_METRIC = {
    STAGE_PREPROCESS: CORE_METRICS["preprocessing_latency"],
    STAGE_INFERENCE: CORE_METRICS["inference_latency"],
    STAGE_POSTPROCESS: CORE_METRICS["postprocessing_latency"],
}
_STAGE_ALERTS = tuple(
    spec
    for stage, m in _STAGE_METRIC.items()
    for spec in (
        AlertSpec("HighStageLatency", "stage_latency", _W, m.threshold_warning, "5m", stage),
        AlertSpec("CriticalStageLatency", "stage_latency", _C, m.threshold_critical, "2m", stage),
    )
)

ALERTS: tuple[AlertSpec, ...] = (
    # the seed's nine
    AlertSpec("HighPredictionLatency", "prediction_latency", _W, 0.200, "5m"),
    AlertSpec("CriticalPredictionLatency", "prediction_latency", _C, 0.500, "2m"),
    AlertSpec("LowThroughput", "throughput", _W, 50.0, "10m"),
    AlertSpec("HighErrorRate", "error_rate", _W, 0.05, "5m"),
    AlertSpec("CriticalErrorRate", "error_rate", _C, 0.10, "2m"),
    AlertSpec("AccuracyDegradation", "accuracy", _W, CORE_METRICS["online_accuracy"].threshold_warning, "15m"),
    AlertSpec("HighCPUUsage", "cpu", _W, CORE_METRICS["cpu_utilization"].threshold_critical, "10m"),
    AlertSpec("HighMemoryUsage", "memory", _C, CORE_METRICS["memory_utilization"].threshold_critical, "5m"),
    AlertSpec("ModelServerDown", "availability", _C, 0.0, "1m"),
    # beyond the seed
    *_STAGE_ALERTS,
    AlertSpec("LowPredictionConfidence", "confidence", _W, _CONFIDENCE.threshold_warning, "15m"),
    AlertSpec("GPUMemoryNearlyFull", "gpu_memory", _W, 0.95, "5m"),
    AlertSpec("GPUHighTemperature", "gpu_temperature", _W, 85.0, "5m"),
    AlertSpec("GPUCriticalTemperature", "gpu_temperature", _C, 90.0, "2m"),
    AlertSpec("GPUUncorrectableECCErrors", "gpu_ecc", _C, 0.0, "0s"),
    AlertSpec("GPUMissing", "gpu_missing", _C, 0.0, "2m"),
    AlertSpec("CollectorRefusingData", "collector", _W, 0.0, "5m"),
    AlertSpec("CollectorDroppingData", "collector", _W, 0.0, "5m"),
)
ALERTS_BY_NAME: dict[str, list[AlertSpec]] = {}
for _spec in ALERTS:
    ALERTS_BY_NAME.setdefault(_spec.alert, []).append(_spec)


@dataclass(frozen=True)
class BurnRateWindow:
    """One row of the multiwindow, multi-burn-rate table (Google SRE workbook, chapter 5).

    ``long`` and ``short`` are for an SLO period of ``BURN_RATE_PERIOD``; other periods scale them.
    """

    severity: Severity
    factor: float
    long: str
    short: str


BURN_RATE_PERIOD = "30d"
BURN_RATE_WINDOWS: tuple[BurnRateWindow, ...] = (
    BurnRateWindow(_C, 14.4, "1h", "5m"),  # 2 % of a 30-day budget in one hour: page
    BurnRateWindow(_C, 6.0, "6h", "30m"),  # 5 % in six hours: page
    BurnRateWindow(_W, 3.0, "1d", "2h"),  # 10 % in a day: ticket
    BurnRateWindow(_W, 1.0, "3d", "6h"),  # 10 % in three days: ticket
)
