"""Each detector against known answers: calibrated under no change over many seeds, firing on a given shift,
"not enough data" below its floor, severity from the effect size; Page's CUSUM against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("scipy")
from scipy import stats

from modeltel.taxonomy import Severity
from modeltel_collector.analytics import detectors as d
from modeltel_collector.analytics.accuracy import AccuracyState, accuracy_drop, calibration, estimated_accuracy_drop
from modeltel_collector.analytics.settings import CHECKS, Grade, Settings

SEEDS = 400


def at_alpha(alpha: float, *, any_effect: bool = False) -> Settings:
    """Settings whose per-test alpha is ``alpha``; with ``any_effect`` the effect-size floor is removed."""
    base = Settings()
    per_day = alpha * len(CHECKS) * 86400.0 / base.step_s
    grades = {c: Grade(-math.inf, math.inf) for c in CHECKS} if any_effect else base.grades
    return Settings(false_alarms_per_day=per_day, grades=grades)


def alarms(case, settings: Settings) -> int:
    return sum(case(np.random.default_rng(seed), settings).degraded for seed in range(SEEDS))


def latency(shift: float):
    return lambda rng, s: d.latency_shift(rng.lognormal(-3, 0.35, 2000), rng.lognormal(-3, 0.35, 300) * shift, s)


def ttft(shift: float):
    return lambda rng, s: d.ttft_shift(rng.lognormal(-1.5, 0.4, 2000), rng.lognormal(-1.5, 0.4, 300) * shift, s)


def tpot(shift: float):
    return lambda rng, s: d.tpot_shift(rng.lognormal(-4, 0.3, 2000), rng.lognormal(-4, 0.3, 300) * shift, s)


def output_length(scale: float):
    """Output tokens per response (integers, so tied), the current window's scaled by ``scale``."""
    return lambda rng, s: d.output_length_drift(
        np.round(rng.lognormal(5, 0.5, 2000)), np.round(rng.lognormal(5, 0.5, 300) * scale), s
    )


def errors(rate: float):
    return lambda rng, s: d.error_rate_rise(rng.binomial(20000, 0.01), 20000, rng.binomial(3000, rate), 3000, s)


def throughput(factor: float):
    return lambda rng, s: d.throughput_drop(100.0, rng.poisson(3000 * factor), 30.0, s)


def confidence(a: float, b: float):
    def case(rng, s):
        return d.confidence_drift(
            d.confidence_counts(rng.beta(8, 2, 2000)), d.confidence_counts(rng.beta(a, b, 500)), s
        )

    return case


def estimated(a: float, b: float):
    """The confidence-based accuracy estimate of a calibrated model whose confidences move to Beta(a, b)."""

    def case(rng, s):
        ref = rng.beta(8, 2, 5000)
        return estimated_accuracy_drop(
            calibration(ref, rng.random(5000) < ref), d.confidence_counts(ref),
            d.confidence_counts(rng.beta(a, b, 500)), s,
        )  # fmt: skip

    return case


NULL = {"latency": latency(1.0), "errors": errors(0.01), "throughput": throughput(1.0),
        "confidence": confidence(8, 2), "estimated": estimated(8, 2),
        "ttft": ttft(1.0), "tpot": tpot(1.0), "output_length": output_length(1.0)}  # fmt: skip
SHIFTED = {"latency": latency(1.5), "errors": errors(0.05), "throughput": throughput(0.5),
           "confidence": confidence(6, 2.5), "estimated": estimated(5, 2.5),
           "ttft": ttft(1.5), "tpot": tpot(1.5), "output_length": output_length(1.6),
           "shorter_output": output_length(0.6)}  # fmt: skip


@pytest.mark.parametrize("name", NULL)
def test_no_change_alarms_at_most_at_the_configured_rate(name):
    # The test alone (no effect floor), at alpha 5 %: at most what 5 % of 400 allows (99.9 % binomial bound).
    found = alarms(NULL[name], at_alpha(0.05, any_effect=True))
    assert found <= stats.binom.ppf(0.999, SEEDS, 0.05)
    # The continuous test is calibrated, not merely conservative (KS on bucket counts is conservative by design).
    if name in ("latency", "ttft", "tpot"):
        assert found >= stats.binom.ppf(0.001, SEEDS, 0.05)
    # With the defaults (daily budget, effect floor), no seed alarms.
    assert alarms(NULL[name], Settings()) == 0


@pytest.mark.parametrize("name", SHIFTED)
def test_a_shift_of_the_given_size_alarms_in_every_seed(name):
    assert alarms(SHIFTED[name], Settings()) == SEEDS


def test_alpha_is_each_checks_share_of_the_daily_budget_spread_over_the_tests_run():
    s = Settings(step_s=5.0, false_alarms_per_day=0.1)
    checks = len(CHECKS)
    assert s.alpha == pytest.approx(0.1 / (checks * 17280))  # tested every step: 17,280 tests a day
    assert s.alpha_for(3600.0) == pytest.approx(0.1 / (checks * 24))  # tested once an hour: 24 a day
    assert s.alpha_for(86400.0) == s.alpha_for(3600.0)  # a long silence buys no more than an hour's share
    gaps = np.random.default_rng(0).exponential(600.0, 10_000)  # tests at irregular instants
    spent_per_day = sum(s.alpha_for(g) for g in gaps) / (gaps.sum() / 86400.0)
    assert spent_per_day <= s.false_alarms_per_day / checks


def test_below_the_minimum_sample_size_says_not_enough_data():
    s, rng = Settings(), np.random.default_rng(0)
    few = rng.lognormal(size=s.min_samples - 1)
    many = rng.lognormal(size=1000) * 10  # a huge shift, which must not be guessed from too few samples
    assert d.latency_shift(many, few * 10, s).status is d.Status.NOT_ENOUGH_DATA
    assert d.latency_shift(few, many, s).status is d.Status.NOT_ENOUGH_DATA
    conf_few, conf_many = d.confidence_counts(rng.random(s.min_samples - 1)), d.confidence_counts(rng.random(1000))
    assert d.confidence_drift(conf_many, conf_few, s).status is d.Status.NOT_ENOUGH_DATA
    assert d.confidence_drift(conf_few, conf_many, s).status is d.Status.NOT_ENOUGH_DATA
    for check in (d.ttft_shift, d.tpot_shift, d.output_length_drift):
        assert check(many, few * 10, s).status is d.Status.NOT_ENOUGH_DATA
    assert d.error_rate_rise(0, 1000, 50, 50, s).status is d.Status.NOT_ENOUGH_DATA
    assert d.throughput_drop(0.5, 0, 30.0, s).status is d.Status.NOT_ENOUGH_DATA  # 15 expected < 30
    result, _ = accuracy_drop((9, 10), np.zeros(5), AccuracyState(), s)
    assert result.status is d.Status.NOT_ENOUGH_DATA


@pytest.mark.parametrize(("shift", "severity"), [(1.05, None), (1.3, Severity.WARNING), (2.0, Severity.CRITICAL)])
def test_severity_comes_from_the_effect_size_not_the_p_value(shift, severity):
    rng = np.random.default_rng(3)
    ref = rng.lognormal(-3, 0.35, 5000)
    result = d.latency_shift(ref, rng.lognormal(-3, 0.35, 5000) * shift, Settings())
    assert result.p_value < 1e-6  # even the 5 % shift is "significant" with 5000 samples...
    assert (result.severity if result.degraded else None) == severity  # ...but too small to report


def test_latency_only_alarms_when_the_current_window_is_slower():
    rng = np.random.default_rng(4)
    faster = d.latency_shift(rng.lognormal(-3, 0.35, 2000), rng.lognormal(-3, 0.35, 500) / 2, Settings())
    assert faster.status is d.Status.OK and faster.p_value > 0.5


def test_page_cusum_matches_a_hand_computed_sequence():
    path, first = d.page_cusum(np.array([1.0, -2.0, 3.0, 1.0, -1.0, 4.0]), h=5.0)
    assert path.tolist() == [1.0, 0.0, 3.0, 4.0, 3.0, 7.0]  # S_t = max(0, S_{t-1} + x_t)
    assert first == 5
    path, first = d.page_cusum(np.array([-1.0, 2.0]), h=5.0, start=4.0)
    assert path.tolist() == [3.0, 5.0] and first is None  # > h, not >= h


def test_psi_is_zero_for_identical_and_grows_with_drift():
    rng = np.random.default_rng(5)
    ref = d.confidence_counts(rng.beta(8, 2, 5000))
    assert d.psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert d.psi(ref, 3 * ref) == pytest.approx(0.0, abs=1e-12)  # proportions, not totals
    far, near = (d.confidence_counts(rng.beta(a, b, 5000)) for a, b in ((6, 2.5), (7.5, 2)))
    assert d.psi(ref, far) > d.psi(ref, near)


def test_confidences_are_counted_as_the_sdk_histogram_counts_them():
    # OTel explicit buckets: (previous bound, bound], the last one open; NaN is no confidence at all.
    counts = d.confidence_counts(np.array([0.0, 0.1, 0.1000001, 0.99, 0.995, 1.0, np.nan]))
    assert counts.tolist() == [2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]


def test_confidence_ks_is_the_largest_gap_between_the_bucketed_distribution_functions():
    ref, cur = np.zeros(d.CONFIDENCE_BINS, int), np.zeros(d.CONFIDENCE_BINS, int)
    ref[[7, 9]], cur[[7, 9]] = (500, 500), (200, 800)  # cumulative at bound 0.8: 0.5 vs 0.2
    result = d.confidence_drift(ref, cur, Settings())
    assert result.statistic == pytest.approx(0.3) and result.details["ks_d"] == pytest.approx(0.3)
    # Kolmogorov's limit at sqrt(n) D, n = n_ref * n_cur / (n_ref + n_cur): at or above the exact tail
    assert result.p_value == pytest.approx(stats.kstwobign.sf(0.3 * np.sqrt(500)))
    assert result.p_value >= stats.kstwo.sf(0.3, 500)
