"""Accuracy from labels and from confidence: the CUSUM's threshold gives the run length it promises (an
exact Markov chain, checked against simulation), follows the label rate, finds a 3-point drop within 2,000
labels, and a drop that lasts gives one episode at any traffic level; the confidence-based estimate
tracks realized accuracy within its band under covariate shift and ignores drift that leaves it unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("scipy")
from scipy import stats

from modeltel_collector.analytics import cusum
from modeltel_collector.analytics.accuracy import (
    AccuracyState,
    accuracy_drop,
    calibration,
    calibration_curve,
    estimate,
    estimated_accuracy_drop,
)
from modeltel_collector.analytics.detectors import confidence_counts
from modeltel_collector.analytics.engine import Engine
from modeltel_collector.analytics.reference import Reference
from modeltel_collector.analytics.settings import CHECKS, Settings


def run_lengths(p: float, inc: cusum.Increments, h: float, paths: int, limit: int, rng) -> np.ndarray:
    """Labels to the first S > h of ``paths`` CUSUMs (vectorised over paths), accuracy ``p``; -1: none by limit."""
    s, out = np.zeros(paths), np.full(paths, -1)
    for t in range(1, limit + 1):
        s = np.maximum(0.0, s + np.where(rng.random(paths) < p, -inc.right, inc.wrong) * inc.unit)
        hit = (s > h) & (out < 0)
        out[hit] = t
        if (out > 0).all():
            break
    return out


def test_the_exact_chain_matches_hand_computed_run_lengths():
    # +1 or -1 with equal chance, floored at 0: h = 0 needs L0 = 1 + L0/2, so 2; h = 1 gives L0 = 6.
    assert cusum.arl(0.5, 1, 1, 0) == pytest.approx(2.0)
    assert cusum.arl(0.5, 1, 1, 1) == pytest.approx(6.0)


def test_the_threshold_gives_the_promised_run_length_and_ln_arl_does_not():
    p0, target = 0.9, 500.0
    inc, h = cusum.increments(p0, 0.03), cusum.threshold(p0, 0.03, target)
    lengths = run_lengths(p0, inc, h, 2000, 20_000, np.random.default_rng(0))
    assert (lengths > 0).all()
    exact = cusum.arl(p0, inc.wrong, inc.right, round(h / inc.unit))
    assert target <= exact <= 1.5 * target  # rounded up to the next step of 1.5x
    assert lengths.mean() == pytest.approx(exact, rel=0.08)  # 2,000 paths: the mean within ~5 % (1 sigma 2.2 %)
    # Wald's h = ln(ARL) is only a bound, loose by a factor of hundreds here: far too few alarms for the budget
    assert cusum.arl(p0, inc.wrong, inc.right, round(math.log(target) / inc.unit)) > 20 * target


def test_the_run_length_follows_the_label_rate_with_a_floor():
    s = Settings(false_alarms_per_day=0.1)
    assert s.cusum_arl(160.0) == pytest.approx(160 / (0.1 / len(CHECKS)))  # the accuracy check's share
    assert s.cusum_arl(1.0) == s.cusum_min_arl  # a trickle of labels cannot lower it below the floor
    assert cusum.threshold(0.93, 0.03, s.cusum_arl(10_000)) > cusum.threshold(0.93, 0.03, s.cusum_arl(160))


def feed(labels: np.ndarray, state: AccuracyState, s: Settings, per_day: float, chunk: int = 50):
    """Labels in chunks; the index of the first degraded verdict (None) and the final state."""
    for i in range(0, len(labels), chunk):
        result, state = accuracy_drop((9300, 10000), labels[i : i + chunk], state, s, labels_per_day=per_day)
        if result.degraded:
            return i + chunk, state
    return None, state


def test_a_3_point_drop_is_found_within_2000_labels_at_160_labels_a_day():
    s, delays, healthy_alarms = Settings(), [], 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        found, _ = feed((rng.random(1600) < 0.93).astype(float), AccuracyState(), s, 160.0)  # 10 healthy days
        healthy_alarms += found is not None
        found, _ = feed((rng.random(4000) < 0.90).astype(float), AccuracyState(), s, 160.0)
        delays.append(found if found is not None else math.inf)
    # ARL >= 9,600 labels: 1,600 healthy labels alarm in at most ~16 % of seeds (99.9 % bound over 30)
    assert healthy_alarms <= stats.binom.ppf(0.999, 30, 0.16)
    assert np.median(delays) < 2000 and np.mean(np.array(delays) < 2000) >= 0.7


def test_by_default_a_healthy_model_with_160_labels_a_day_goes_months_without_a_chance_alarm():
    # the default budget (0.01 a day, all checks): the accuracy check's share gives ARL 144,000 labels, so
    # 30 healthy months (30 seeds of 4,800 labels) alarm about once; at the old 0.1 a day (ARL 14,400,
    # rounded up) 18 of these 30 months alarmed
    s, alarms = Settings(), 0
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        found, _ = feed((rng.random(4800) < 0.93).astype(float), AccuracyState(), s, 160.0)
        alarms += found is not None
    assert alarms <= stats.binom.ppf(0.999, 30, 4800 / s.cusum_arl(160.0))  # 5; the old default gave 18


@pytest.mark.parametrize("seconds_per_label", [3600.0, 60.0, 0.1])
def test_a_drop_that_lasts_10000_labels_is_one_episode_and_recovery_resolves_it(seconds_per_label):
    ref = Reference(np.linspace(0.01, 0.1, 1000), np.zeros(13, np.int64), 1 / seconds_per_label, 0, 10_000,
                    9300, 10_000, 86400.0 * 30)  # fmt: skip
    engine, rng = Engine(baselines={("m", "1"): ref}), np.random.default_rng(int(seconds_per_label * 10))
    accuracy = np.r_[np.full(300, 0.93), np.full(10_000, 0.90), np.full(4000, 0.93)]
    events = []
    for i, p in enumerate(accuracy):
        events += engine.label(i * seconds_per_label, "m", "1", correct=bool(rng.random() < p))
    acc = [(e.state, round(e.time / seconds_per_label)) for e in events if e.check == "accuracy_drop"]
    during = [(state, t) for state, t in acc if 300 <= t < 10_300]
    # found (more labels a day buy a longer run length: 1,440 a day needs more labels than 160 a day)
    assert during and during[0][0] == "firing" and during[0][1] < 300 + 4000
    assert all(state == "firing" for state, _ in during)  # never resolved while the drop lasts: one episode
    after = [t for state, t in acc if state == "resolved" and t >= 10_300]
    assert after and after[0] < 10_300 + 4000  # and resolved once accuracy is really back


def model(rng, n: int, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """A calibrated model: confidences ~ Beta(a, b), each prediction right with probability its confidence."""
    conf = rng.beta(a, b, n)
    return conf, rng.random(n) < conf


def test_the_estimate_tracks_realized_accuracy_within_its_band_under_covariate_shift():
    rng = np.random.default_rng(1)
    ref_conf, ref_right = model(rng, 20_000, 8, 2)
    curve = calibration_curve(calibration(ref_conf, ref_right))
    inside = []
    for a, b in ((8, 2), (6, 2.5), (4, 3), (3, 3)):  # inputs move: confidence falls, calibration holds
        for _ in range(50):
            conf, right = model(rng, 500, a, b)
            est, sd = estimate(confidence_counts(conf), curve)
            inside.append(abs(right.mean() - est) <= 1.96 * sd)
    assert np.mean(inside) >= 0.9  # a 95 % band: at least 90 % of 200 windows inside it


def test_confidence_drift_that_keeps_the_estimate_is_no_estimated_drop_but_a_fall_is():
    rng, s = np.random.default_rng(2), Settings()
    ref_conf, ref_right = model(rng, 20_000, 8, 2)
    cal, ref = calibration(ref_conf, ref_right), confidence_counts(ref_conf)
    # half the mass moves to more confident, half to less: the distribution drifts, the mean stays
    spread = np.clip(np.r_[ref_conf[:2000] - 0.08, ref_conf[2000:4000] + 0.08], 0.0, 0.999)
    drift = estimated_accuracy_drop(cal, ref, confidence_counts(spread), s)
    assert abs(drift.effect_size) < 0.01 and not drift.degraded
    low, _ = model(rng, 300, 3, 3)  # a 30-point fall of confidence
    fall = estimated_accuracy_drop(cal, ref, confidence_counts(low), s)
    assert fall.degraded and fall.details["low"] <= 0.5 + 0.05  # the band reaches the true accuracy (0.5)


def test_without_labelled_calibration_there_is_no_estimate():
    s, rng = Settings(), np.random.default_rng(3)
    counts = confidence_counts(rng.beta(8, 2, 1000))
    assert estimated_accuracy_drop(None, counts, counts, s).details == {"calibration_labels": 0, "needed": 50}


@pytest.mark.parametrize(("seconds_between", "days"), [(60.0, 6.0), (0.1, 0.03)])
def test_a_healthy_model_stays_within_an_inflated_false_alarm_budget(seconds_between, days):
    # 20 chance alarms a day and no effect-size floor: enough alarms to count, at 1 a minute and 10 a second
    from modeltel_collector.analytics.settings import CHECKS, Grade
    from modeltel_collector.analytics.simulate import Case, generate

    settings = Settings(false_alarms_per_day=20.0, cusum_min_arl=10.0,
                        grades={c: Grade(-math.inf, math.inf) for c in CHECKS})  # fmt: skip
    case = Case("healthy", days, seconds_between, label_delay_days=(0.0, 0.0), label_fraction=0.5)
    found = 0
    for seed in range(2):
        span = days * 4 * 86400
        ref, s = generate(case.scaled(days=days * 4, start=case.start - span), seed + 10), generate(case, seed)
        baseline = Reference(np.sort(ref.latency), confidence_counts(ref.confidence), len(ref.time) / span,
                             int(np.sum(~ref.ok)), len(ref.time), int(ref.correct.sum()), len(ref.time),
                             span, calibration(ref.confidence, ref.correct))  # fmt: skip
        engine = Engine(settings, {("m", "1"): baseline})
        engine.traffic_ended(float(s.time[-1]))
        rows = {"time": s.time, "latency": s.latency, "ok": s.ok, "confidence": s.confidence,
                "correct": np.where(np.isfinite(s.label_time), s.correct, np.nan)}  # fmt: skip
        open_checks: set[str] = set()
        for e in engine.observe_batch("m", "1", rows):  # episodes: an escalation is the same one
            found += e.state == "firing" and e.check not in open_checks
            (open_checks.add if e.state == "firing" else open_checks.discard)(e.check)
    assert found <= stats.poisson.ppf(0.999, 20.0 * days * 2), found
