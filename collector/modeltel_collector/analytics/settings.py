"""The detectors' windows, sample-size floors, false-alarm budget and effect-size thresholds, in one place.

Why effect sizes: at 100 requests a second every test is "significant" for a 1 % wobble, so a detector
fires only when the change is also large enough to matter, and its severity comes from that size, never
from the p-value. Why a false-alarm budget, and how it is spent: a healthy model version may raise at
most ``false_alarms_per_day`` chance alarms a day, all checks together, whatever its traffic. Each check
gets an equal share. A window test spends its share in proportion to the time since that check's last
test (``alpha_for``), so the alphas of the tests actually run add up to the share over a day: a model
tested every 5 s pays 17,280 tests a day, one tested once an hour pays 24, and a test that does not run
(its window short of the minimum sample) costs nothing. The accuracy CUSUM spends its share as an
in-control average run length in labels (``cusum_arl``), from the label rate the model really gets.
Why a warm-up (``warmup_s``): a fresh model version's first answers are slow (lazy loading, cold
caches, compilation), and a reference that learned them would hide a later slowdown of the same size.
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
        "estimated_accuracy_drop": Grade(0.03, 0.10),  # absolute fall of the confidence-based estimate
        "ttft_shift": Grade(0.20, 0.50),  # relative rise of p95 time to first token, as latency
        "tpot_shift": Grade(0.20, 0.50),  # relative rise of p95 time per output token
        "output_length_drift": Grade(0.15, 0.30),  # KS distance between output-token distributions
    }


@dataclass(frozen=True)
class Settings:
    """Shared by the collector, ``modeltel detect replay`` and ``benchmarks/detection.py``."""

    step_s: float = 5.0  # time-bucket width: a model is evaluated at most once a step, and only with new data
    current_s: float = 30.0  # the window under test, widened back to the last min_samples samples when sparse
    max_window_s: float = 14 * 86400.0  # a widened window never reaches further back than this
    reference_s: float = 1800.0  # the rolling reference (learned baseline)...
    reference_min_samples: int = 2000  # ...widened back to this many requests for a sparse model
    reference_gap_s: float = 60.0  # data joins the reference this long after it arrives, if no alarm fired
    min_reference_s: float = 300.0  # below this much reference history: not enough data
    warmup_s: float = 60.0  # a model version's first this long (from its first request) is never learned
    reference_samples_per_step: int = 25  # latencies kept per step in the reference
    current_samples_per_step: int = 1000  # latencies kept per step in the window (confidences are counted)
    min_samples: int = 100  # latencies, or confidences, in the current window
    min_labels: int = 50  # labelled predictions (accuracy)
    min_expected_requests: float = 30.0  # throughput: expected count in the current window
    retest_fraction: float = 0.1  # a window is tested again once this fraction of its samples is new
    # chance alarms a healthy model may raise per day, all checks together: one in 100 days. At 0.1 a year of
    # a healthy credit model (160 labels a day) showed 3 or 4; 0.01 costs its 3-point drop about twice the
    # labels, still under 2,000 (docs/analytics.md, "The false-alarm budget's default")
    false_alarms_per_day: float = 0.01
    max_test_gap_s: float = 3600.0  # one test spends the budget of at most this long a gap since the last
    cusum_shift: float = 0.03  # the accuracy drop Page's CUSUM is tuned to (the warning grade)
    cusum_min_arl: float = 1000.0  # floor of the CUSUM's in-control run length, in labels
    recover_arl: float = 1e6  # labels a still-degraded model takes, on average, to be resolved by chance
    recover_alpha: float = 0.05  # a window check resolves when its test on post-alarm data is not even this...
    recover_fraction: float = 0.5  # ...significant, or its effect is below this fraction of the warning grade
    grades: dict[str, Grade] = field(default_factory=_grades)

    def scaled(self, factor: float) -> Settings:
        """Every ``*_s`` window times ``factor``: a demo or test sees in seconds what takes minutes live.

        Sample-size floors are not scaled, so a shortened window still needs as many requests to decide.
        """
        return replace(self, **{f.name: getattr(self, f.name) * factor for f in fields(self) if f.name.endswith("_s")})

    @property
    def share(self) -> float:
        """Each check's share of the daily false-alarm budget."""
        return self.false_alarms_per_day / len(CHECKS)

    def alpha_for(self, gap_s: float) -> float:
        """Significance level of one test run ``gap_s`` after the check's previous one (at least a step,
        at most ``max_test_gap_s``): over a day, the alphas of the tests run add up to the check's share."""
        return self.share * min(max(gap_s, self.step_s), self.max_test_gap_s) / 86400.0

    @property
    def alpha(self) -> float:
        """The per-test level of a model tested every step (the busiest case: the smallest alpha)."""
        return self.alpha_for(self.step_s)

    def cusum_arl(self, labels_per_day: float) -> float:
        """The accuracy CUSUM's in-control run length: the labels of 1 / share days, floored."""
        return max(labels_per_day / self.share, self.cusum_min_arl)
