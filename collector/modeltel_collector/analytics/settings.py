"""The detectors' windows, sample-size floors, false-alarm budget and effect-size thresholds, in one place.

Why effect sizes: at 100 requests a second every test is "significant" for a 1 % wobble, so a detector
fires only when the change is also large enough to matter, and its severity comes from that size, never
from the p-value. Why a false-alarm budget: each check is re-tested every ``step_s`` on overlapping
windows, thousands of times a day; the per-test alpha is that daily budget Bonferroni-split over every
test of a day (checks x evaluations), so a healthy model alarms by chance at most ``false_alarms_per_day``
times a day (an upper bound: overlapping windows are positively correlated, which only helps).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from modeltel import taxonomy as tx
from modeltel.taxonomy import Severity

CHECKS = tx.DEGRADATION_CHECKS


@dataclass(frozen=True)
class Grade:
    """Effect-size cut-offs: below ``warning`` the change is too small to report."""

    warning: float
    critical: float

    def severity(self, effect: float) -> Severity:
        if effect >= self.critical:
            return Severity.CRITICAL
        if effect >= self.warning:
            return Severity.WARNING
        return Severity.OK


def _grades() -> dict[str, Grade]:
    return {
        "latency_shift": Grade(0.20, 0.50),  # relative rise of p95
        "error_rate_rise": Grade(0.01, 0.05),  # absolute rise of the error ratio
        "throughput_drop": Grade(0.30, 0.50),  # relative fall of the request rate
        "accuracy_drop": Grade(0.03, 0.10),  # absolute fall of accuracy (0.03 = 3 points)
        "confidence_drift": Grade(0.10, 0.25),  # PSI over the confidence buckets (the usual 0.1 / 0.25 reading)
    }


@dataclass(frozen=True)
class Settings:
    """Shared by the collector, ``modeltel detect replay`` and ``benchmarks/detection.py``."""

    step_s: float = 5.0  # evaluation period and time-bucket width
    current_s: float = 30.0  # the window under test
    reference_s: float = 1800.0  # the rolling reference (learned baseline)
    reference_gap_s: float = 60.0  # data joins the reference this long after it arrives, if no alarm fired
    min_reference_s: float = 300.0  # below this much reference history: not enough data
    reference_samples_per_step: int = 25  # latencies kept per step in the reference
    current_samples_per_step: int = 1000  # latencies kept per step in the window (confidences are counted)
    min_samples: int = 100  # latencies, or confidences, in the current window
    min_labels: int = 50  # labelled predictions (accuracy)
    min_expected_requests: float = 30.0  # throughput: expected count in the current window
    false_alarms_per_day: float = 0.1  # chance alarms a healthy model may raise per day, all checks together
    cusum_shift: float = 0.05  # the accuracy drop Page's CUSUM is tuned to (log-likelihood ratio)
    cusum_h: float = 18.0  # CUSUM decision threshold: average run length under no change >= e**h labels
    clear_after_s: float = 60.0  # an alarm resolves after this long without the condition
    grades: dict[str, Grade] = field(default_factory=_grades)

    def scaled(self, factor: float) -> Settings:
        """Every ``*_s`` window times ``factor``: a demo or test sees in seconds what takes minutes live.

        Sample-size floors are not scaled, so a shortened window still needs as many requests to decide.
        """
        return replace(self, **{f.name: getattr(self, f.name) * factor for f in fields(self) if f.name.endswith("_s")})

    @property
    def alpha(self) -> float:
        """Per-test significance level: the daily false-alarm budget spread over a day's tests."""
        tests_per_day = len(CHECKS) * 86400.0 / self.step_s
        return self.false_alarms_per_day / tests_per_day
