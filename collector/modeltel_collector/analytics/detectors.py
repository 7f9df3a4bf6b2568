"""The detectors: each a pure function from a reference and a current window to a ``Result``.

No state, no clock: the engine (``engine.py``) decides which data are in each window, so a detector can
be replayed on a log and tested against known answers. Every detector follows the same three rules:
below its minimum sample size it answers ``NOT_ENOUGH_DATA``; it is degraded only when its one-sided test
is significant at ``settings.alpha`` *and* the effect is at least the warning grade; and the severity
comes from the effect size. The accuracy detector also carries Page's CUSUM, whose state the caller
passes in and gets back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from modeltel import taxonomy as tx
from modeltel.taxonomy import Severity

from .settings import Settings

CONFIDENCE_BOUNDS = tx.CONFIDENCE_BUCKETS  # the SDK histogram's bucket upper bounds
CONFIDENCE_BINS = len(CONFIDENCE_BOUNDS) + 1


class Status(str, Enum):
    OK = "ok"
    DEGRADED = "degraded"
    NOT_ENOUGH_DATA = "not_enough_data"


@dataclass(frozen=True)
class Result:
    check: str
    status: Status
    severity: Severity = Severity.OK
    p_value: float | None = None
    statistic: float | None = None
    effect_size: float | None = None
    details: dict = field(default_factory=dict)

    @property
    def degraded(self) -> bool:
        return self.status is Status.DEGRADED

    def as_dict(self) -> dict:
        return {
            "check": self.check,
            "status": self.status.value,
            "severity": self.severity.label,
            "p_value": self.p_value,
            "statistic": self.statistic,
            "effect_size": self.effect_size,
            "details": self.details,
        }


def _stats():
    from scipy import stats  # the `analytics` extra: only detectors need it

    return stats


def _verdict(check: str, settings: Settings, p_value: float, effect: float, **kw) -> Result:
    severity = settings.grades[check].severity(effect)
    degraded = p_value < settings.alpha and severity > Severity.OK
    return Result(
        check,
        Status.DEGRADED if degraded else Status.OK,
        severity if degraded else Severity.OK,
        float(p_value),
        effect_size=float(effect),
        **kw,
    )


def _short(check: str, **details) -> Result:
    return Result(check, Status.NOT_ENOUGH_DATA, details=details)


def latency_shift(reference: np.ndarray, current: np.ndarray, settings: Settings) -> Result:
    """Is the current window slower? One-sided Mann-Whitney U (current stochastically greater), effect on p95.

    The effect is the relative rise of p95, ``p95(current) / p95(reference) - 1``.
    """
    check = "latency_shift"
    if len(current) < settings.min_samples or len(reference) < settings.min_samples:
        return _short(check, current=len(current), reference=len(reference), needed=settings.min_samples)
    test = _stats().mannwhitneyu(current, reference, alternative="greater", method="asymptotic")
    ref_p95, cur_p95 = float(np.percentile(reference, 95)), float(np.percentile(current, 95))
    effect = cur_p95 / ref_p95 - 1.0 if ref_p95 > 0 else math.inf
    details = {"reference_p95": ref_p95, "current_p95": cur_p95, "current": len(current)}
    return _verdict(check, settings, test.pvalue, effect, statistic=float(test.statistic), details=details)


def error_rate_rise(ref_errors: int, ref_total: int, errors: int, total: int, settings: Settings) -> Result:
    """More errors than the reference's rate explains? Exact one-sided binomial test, effect in absolute ratio.

    The reference rate is Laplace-smoothed, so a reference with no errors at all is not "rate 0", under
    which a single error would be infinitely unlikely.
    """
    check = "error_rate_rise"
    if total < settings.min_samples or ref_total < settings.min_samples:
        return _short(check, current=total, reference=ref_total, needed=settings.min_samples)
    p_ref = (ref_errors + 1) / (ref_total + 2)
    p_value = float(_stats().binom.sf(errors - 1, total, p_ref))
    effect = errors / total - ref_errors / ref_total
    details = {"reference_rate": ref_errors / ref_total, "current_rate": errors / total, "current": total}
    return _verdict(check, settings, p_value, effect, statistic=float(errors), details=details)


def throughput_drop(ref_rate: float, count: int, duration_s: float, settings: Settings) -> Result:
    """Fewer requests than the reference rate? Poisson lower tail, effect is the relative fall of the rate.

    Real traffic is over-dispersed, so the p-value alone would fire on every lull; the effect-size floor is
    what keeps a daily traffic curve from alarming (the reference rolls with it).
    """
    check = "throughput_drop"
    expected = ref_rate * duration_s
    if expected < settings.min_expected_requests:
        return _short(check, expected=expected, needed=settings.min_expected_requests)
    p_value = float(_stats().poisson.cdf(count, expected))
    effect = 1.0 - count / expected
    details = {"reference_rate": ref_rate, "current_rate": count / duration_s}
    return _verdict(check, settings, p_value, effect, statistic=float(count), details=details)


def confidence_counts(values: np.ndarray) -> np.ndarray:
    """Confidences counted into the taxonomy's buckets, as the SDK's histogram counts them (upper bound
    inclusive, the last bucket open), so raw samples and histogram increases are tested alike. NaN: none."""
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    return np.bincount(np.searchsorted(CONFIDENCE_BOUNDS, values, side="left"), minlength=CONFIDENCE_BINS)


def confidence_drift(reference: np.ndarray, current: np.ndarray, settings: Settings) -> Result:
    """Has the confidence distribution moved? Two-sample KS on the bucket counts, PSI over the buckets.

    Both arguments are counts per bucket of ``CONFIDENCE_BOUNDS``. The live collector only has the
    histogram, so replay counts raw confidences into the same buckets and both decide alike. KS on grouped
    data compares the two distribution functions at the bucket bounds only; its p-value from the continuous
    null distribution is then conservative, so the false-alarm budget holds.
    """
    check = "confidence_drift"
    n_cur, n_ref = int(np.sum(current)), int(np.sum(reference))
    if n_cur < settings.min_samples or n_ref < settings.min_samples:
        return _short(check, current=n_cur, reference=n_ref, needed=settings.min_samples)
    gap = np.abs(np.cumsum(current)[:-1] / n_cur - np.cumsum(reference)[:-1] / n_ref)
    ks_d = float(np.max(gap, initial=0.0))
    p_value = float(_stats().kstwo.sf(ks_d, round(n_ref * n_cur / (n_ref + n_cur))))
    effect = psi(reference, current)
    details = {"ks_d": ks_d, "psi": effect, "current": n_cur}
    return _verdict(check, settings, p_value, effect, statistic=ks_d, details=details)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two count vectors over the same buckets (empty ones floored at 1e-4)."""
    ref = np.maximum(np.asarray(reference, float) / np.sum(reference), 1e-4)
    cur = np.maximum(np.asarray(current, float) / np.sum(current), 1e-4)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def page_cusum(increments: np.ndarray, h: float, start: float = 0.0) -> tuple[np.ndarray, int | None]:
    """Page's one-sided CUSUM ``S_t = max(0, S_{t-1} + x_t)``: the path, and the first index where ``S_t > h``.

    ``increments`` are already centred (``x - k``, or a log-likelihood ratio), so this is the whole recursion.
    """
    path = np.empty(len(increments))
    s, first = start, None
    for i, x in enumerate(increments):
        s = max(0.0, s + float(x))
        path[i] = s
        if first is None and s > h:
            first = i
    return path, first


def bernoulli_llr(p0: float, shift: float) -> tuple[float, float]:
    """Log-likelihood-ratio increments (for a wrong, for a right answer) of accuracy ``p0 - shift`` vs ``p0``."""
    p0 = min(max(p0, 1e-3), 1 - 1e-3)
    p1 = min(max(p0 - shift, 1e-4), p0 - 1e-4)
    return math.log((1 - p1) / (1 - p0)), math.log(p1 / p0)


@dataclass(frozen=True)
class CusumState:
    """Page's CUSUM and the labels since it last touched zero (the change point's maximum-likelihood estimate)."""

    s: float = 0.0
    since_n: int = 0
    since_correct: int = 0


def accuracy_drop(
    reference: tuple[int, int], new: np.ndarray, window: np.ndarray, state: CusumState, settings: Settings
) -> tuple[Result, CusumState]:
    """Accuracy fell? Page's CUSUM over the labels (fast) plus an exact binomial test on the window.

    ``reference`` is (right, total) labels of the baseline; ``new`` the labels that arrived since the last
    call (1 right, 0 wrong, in arrival order), which advance the CUSUM; ``window`` the labels of the current
    window, for the binomial test. Degraded when either fires and the drop, measured since the CUSUM's
    estimated change point (or over the window), is at least the warning grade.
    """
    check = "accuracy_drop"
    ref_correct, ref_total = reference
    if ref_total < settings.min_labels:
        return _short(check, reference=ref_total, needed=settings.min_labels), state
    p0 = ref_correct / ref_total
    new = np.asarray(new, dtype=float) > 0.5
    wrong, right = bernoulli_llr(p0, settings.cusum_shift)
    path, _ = page_cusum(np.where(new, right, wrong), settings.cusum_h, state.s)
    zeros = np.flatnonzero(path == 0.0)
    if len(zeros):  # the statistic touched zero: the change, if any, started after the last touch
        since_n, since_correct = len(new) - zeros[-1] - 1, int(np.sum(new[zeros[-1] + 1 :]))
    else:
        since_n, since_correct = state.since_n + len(new), state.since_correct + int(np.sum(new))
    after = CusumState(float(path[-1]) if len(path) else state.s, since_n, since_correct)
    details = {"reference_accuracy": p0, "window_labels": len(window), "cusum_h": settings.cusum_h}
    if after.s > settings.cusum_h and since_n:
        drop = p0 - since_correct / since_n
        severity = settings.grades[check].severity(drop)
        if severity > Severity.OK:
            details["labels_since_change"] = since_n
            return Result(check, Status.DEGRADED, severity, None, after.s, drop, details), after
    if len(window) < settings.min_labels:
        return _short(check, **details, needed=settings.min_labels), after
    k, n = int(np.sum(np.asarray(window) > 0.5)), len(window)
    p_value = _stats().binomtest(k, n, p0, alternative="less").pvalue
    result = _verdict(check, settings, p_value, p0 - k / n, statistic=after.s, details=details)
    return result, after
