"""When to alert: the one table of thresholds that page, with their severity and ``for:`` durations,
and the burn-rate windows. The rule generator and the dashboards both read it.

Each number here pages, at the severity beside it; panels draw exactly these (warning orange, critical
red), plus the SLO thresholds of :mod:`.quality` (yellow: an objective missed, which spends budget but does
not page by itself). The seed's nine alerts keep the seed's names, thresholds, severities and ``for:``
durations, so its users' alerts carry over. Where the seed's metric table disagrees with its alert rules
(p95 latency 100 / 200 ms there, 200 / 500 ms here; CPU critical at 85 % there, a warning here; memory
warning at 75 % there, no alert here), the alert rules win: they are what the seed pages on. The stage,
confidence and GPU alerts the seed lacks take the seed's metric-table bands where it has one. Generative
models page on p95 time to first token and p95 time per output token (:mod:`.genai`), not on a mean: TTFT
is how long a user waits before anything appears, TPOT whether the stream keeps up with reading speed.
``docs/alerts.md`` has the table, metric by metric.
"""

from __future__ import annotations

from dataclasses import dataclass

from .names import STAGE_INFERENCE, STAGE_POSTPROCESS, STAGE_PREPROCESS
from .quality import Direction, Severity

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
    """One alert: its name, severity, threshold (in Prometheus units: s, ratio, percent) and ``for:``.

    ``direction`` says which side of the threshold fires (and which side a panel colours).
    """

    alert: str
    family: str
    severity: Severity
    threshold: float
    for_: str
    stage: str = ""  # per-stage latency alerts: which stage
    direction: Direction = Direction.HIGHER_IS_WORSE

    @property
    def severity_label(self) -> str:
        return self.severity.label

    @property
    def op(self) -> str:
        """The PromQL comparison that fires: ``>`` or ``<``."""
        return "<" if self.direction is Direction.LOWER_IS_WORSE else ">"


_W, _C, _LOW = Severity.WARNING, Severity.CRITICAL, Direction.LOWER_IS_WORSE
# p95 seconds (warning, critical) per stage: the seed's metric-table bands (it has no stage alerts)
_STAGE_THRESHOLDS = {
    STAGE_PREPROCESS: (0.030, 0.050),
    STAGE_INFERENCE: (0.050, 0.100),
    STAGE_POSTPROCESS: (0.030, 0.050),
}
_STAGE_ALERTS = tuple(
    spec
    for stage, (warning, critical) in _STAGE_THRESHOLDS.items()
    for spec in (
        AlertSpec("HighStageLatency", "stage_latency", _W, warning, "5m", stage),
        AlertSpec("CriticalStageLatency", "stage_latency", _C, critical, "2m", stage),
    )
)

ALERTS: tuple[AlertSpec, ...] = (
    # the seed's nine: its alert rules' thresholds, severities and for: durations
    AlertSpec("HighPredictionLatency", "prediction_latency", _W, 0.200, "5m"),
    AlertSpec("CriticalPredictionLatency", "prediction_latency", _C, 0.500, "2m"),
    AlertSpec("LowThroughput", "throughput", _W, 50.0, "10m", direction=_LOW),
    AlertSpec("HighErrorRate", "error_rate", _W, 0.05, "5m"),
    AlertSpec("CriticalErrorRate", "error_rate", _C, 0.10, "2m"),
    AlertSpec("AccuracyDegradation", "accuracy", _W, 0.85, "15m", direction=_LOW),
    AlertSpec("HighCPUUsage", "cpu", _W, 85.0, "10m"),
    AlertSpec("HighMemoryUsage", "memory", _C, 90.0, "5m"),
    AlertSpec("ModelServerDown", "availability", _C, 0.0, "1m"),
    # beyond the seed
    *_STAGE_ALERTS,
    AlertSpec("LowPredictionConfidence", "confidence", _W, 0.70, "15m", direction=_LOW),  # the seed's warning band
    # generative models, p95 in seconds (docs/alerts.md: why these numbers)
    AlertSpec("HighTimeToFirstToken", "ttft", _W, 2.0, "5m"),  # twice the TTFT SLO's 1 s: users notice the wait
    AlertSpec("CriticalTimeToFirstToken", "ttft", _C, 5.0, "2m"),  # a stream that looks dead; users retry
    AlertSpec("HighTimePerOutputToken", "tpot", _W, 0.100, "5m"),  # 10 tokens/s: down to reading speed
    AlertSpec("CriticalTimePerOutputToken", "tpot", _C, 0.250, "2m"),  # 4 tokens/s: slower than people read
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
