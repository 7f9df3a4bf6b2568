"""The detectors: each a pure function from a reference and a current window to a ``Result``.

No state, no clock: the engine (``engine.py``) decides which data are in each window, so a detector can
be replayed on a log and tested against known answers. Every detector follows the same three rules:
below its minimum sample size it answers ``NOT_ENOUGH_DATA``; it is degraded only when its one-sided test
is significant at ``alpha`` (the engine's share of the false-alarm budget for this test, by default
``settings.alpha``) *and* the effect is at least the warning grade; and the severity comes from the
effect size. The tests use scipy's special functions, not ``scipy.stats``' wrappers: a sparse model is
tested once per few rows, and the wrappers' overhead was most of the replay's time. The accuracy
detector carries Page's CUSUM (``AccuracyState``), whose state the caller passes in and gets back.
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


def _special():
    from scipy import special  # the `analytics` extra: only detectors need it

    return special


def _verdict(check: str, settings: Settings, p_value: float, effect: float, alpha: float | None, **kw) -> Result:
    severity = settings.grades[check].severity(effect)
    degraded = p_value < (settings.alpha if alpha is None else alpha) and severity > Severity.OK
    return Result(
        check,
        Status.DEGRADED if degraded else Status.OK,
        severity if degraded else Severity.OK,
        float(p_value),
        effect_size=float(effect),
        **kw,
    )


def recovered(result: Result, settings: Settings) -> bool:
    """Whether a verdict on post-alarm data is evidence of recovery: its test not even significant at
    ``recover_alpha``, or its effect below ``recover_fraction`` of the warning grade."""
    if result.status is Status.NOT_ENOUGH_DATA:
        return False
    small = settings.grades[result.check].warning * settings.recover_fraction
    return (result.p_value is not None and result.p_value >= settings.recover_alpha) or (
        result.effect_size is not None and result.effect_size < small
    )


def _short(check: str, **details) -> Result:
    return Result(check, Status.NOT_ENOUGH_DATA, details=details)


def latency_shift(
    reference: np.ndarray, current: np.ndarray, settings: Settings, *, alpha: float | None = None
) -> Result:
    """Is the current window slower? One-sided Mann-Whitney U (current stochastically greater), effect on p95.

    U from ranks against the sorted reference (``searchsorted``: ties count a half), p-value from the
    normal approximation with continuity correction and without the tie correction (which only shrinks
    the variance: without it the test is slightly conservative on tied data such as a baseline's sketch
    quantiles). The effect is the relative rise of p95, ``p95(current) / p95(reference) - 1``.
    """
    return _shift("latency_shift", reference, current, settings, alpha)


def ttft_shift(reference: np.ndarray, current: np.ndarray, settings: Settings, *, alpha: float | None = None) -> Result:
    """Is a generative model's time to first token slower? ``latency_shift``'s test on TTFT samples."""
    return _shift("ttft_shift", reference, current, settings, alpha)


def tpot_shift(reference: np.ndarray, current: np.ndarray, settings: Settings, *, alpha: float | None = None) -> Result:
    """Is a generative model's time per output token slower? ``latency_shift``'s test on TPOT samples."""
    return _shift("tpot_shift", reference, current, settings, alpha)


def _shift(check: str, reference: np.ndarray, current: np.ndarray, settings: Settings, alpha: float | None) -> Result:
    n, m = len(current), len(reference)
    if n < settings.min_samples or m < settings.min_samples:
        return _short(check, current=n, reference=m, needed=settings.min_samples)
    ref = reference if _is_sorted(reference) else np.sort(reference)
    below, upto = np.searchsorted(ref, current, "left"), np.searchsorted(ref, current, "right")
    u = float(np.sum(below) + 0.5 * np.sum(upto - below))
    z = (u - n * m / 2.0 - 0.5) / math.sqrt(n * m * (n + m + 1) / 12.0)
    p_value = float(0.5 * math.erfc(z / math.sqrt(2.0)))
    ref_p95, cur_p95 = float(np.percentile(ref, 95)), float(np.percentile(current, 95))
    effect = cur_p95 / ref_p95 - 1.0 if ref_p95 > 0 else math.inf
    details = {"reference_p95": ref_p95, "current_p95": cur_p95, "current": n}
    return _verdict(check, settings, p_value, effect, alpha, statistic=u, details=details)


def output_length_drift(
    reference: np.ndarray, current: np.ndarray, settings: Settings, *, alpha: float | None = None
) -> Result:
    """Has the distribution of output tokens per response moved, either way? Two-sample KS on the counts.

    Answers that grew longer and answers cut short both matter, so the test is two-sided, and the effect is
    the KS distance itself (the largest gap between the two distribution functions). Token counts are
    integers: KS with ties, and Kolmogorov's limiting p-value, are both conservative, so the budget holds.
    """
    check = "output_length_drift"
    n, m = len(current), len(reference)
    if n < settings.min_samples or m < settings.min_samples:
        return _short(check, current=n, reference=m, needed=settings.min_samples)
    ref, cur = (v if _is_sorted(v) else np.sort(v) for v in (np.asarray(reference, float), np.asarray(current, float)))
    points = np.concatenate([ref, cur])
    gap = np.abs(np.searchsorted(ref, points, "right") / m - np.searchsorted(cur, points, "right") / n)
    ks_d = float(np.max(gap))
    p_value = _kstwo_sf(ks_d, round(n * m / (n + m)))
    details = {"reference_median": float(np.median(ref)), "current_median": float(np.median(cur)), "current": n}
    return _verdict(check, settings, p_value, ks_d, alpha, statistic=ks_d, details=details)


def _is_sorted(values: np.ndarray) -> bool:
    return len(values) < 2 or bool(np.all(values[1:] >= values[:-1]))


def error_rate_rise(
    ref_errors: int, ref_total: int, errors: int, total: int, settings: Settings, *, alpha: float | None = None
) -> Result:
    """More errors than the reference's rate explains? Exact one-sided binomial test, effect in absolute ratio.

    The reference rate is Laplace-smoothed, so a reference with no errors at all is not "rate 0", under
    which a single error would be infinitely unlikely.
    """
    check = "error_rate_rise"
    if total < settings.min_samples or ref_total < settings.min_samples:
        return _short(check, current=total, reference=ref_total, needed=settings.min_samples)
    p_ref = (ref_errors + 1) / (ref_total + 2)
    p_value = 1.0 if errors <= 0 else float(_special().bdtrc(errors - 1, total, p_ref))  # P(X >= errors)
    effect = errors / total - ref_errors / ref_total
    details = {"reference_rate": ref_errors / ref_total, "current_rate": errors / total, "current": total}
    return _verdict(check, settings, p_value, effect, alpha, statistic=float(errors), details=details)


def throughput_drop(
    ref_rate: float,
    count: int,
    duration_s: float,
    settings: Settings,
    *,
    alpha: float | None = None,
    expected: float | None = None,
) -> Result:
    """Fewer requests than the reference expects? Poisson lower tail, effect is the relative fall of the rate.

    ``expected`` is the reference's count for the window (by its hourly profile, when it has one);
    without it, ``ref_rate * duration_s``. Real traffic is over-dispersed, so the p-value alone would fire
    on every lull; the effect-size floor, and the profile, keep a daily traffic curve from alarming.
    """
    check = "throughput_drop"
    expected = ref_rate * duration_s if expected is None else expected
    if expected < settings.min_expected_requests:
        return _short(check, expected=expected, needed=settings.min_expected_requests)
    p_value = float(_special().pdtr(count, expected))
    effect = 1.0 - count / expected
    details = {"expected": expected, "current_rate": count / duration_s, "window_s": duration_s}
    return _verdict(check, settings, p_value, effect, alpha, statistic=float(count), details=details)


def confidence_counts(values: np.ndarray) -> np.ndarray:
    """Confidences counted into the taxonomy's buckets, as the SDK's histogram counts them (upper bound
    inclusive, the last bucket open), so raw samples and histogram increases are tested alike. NaN: none."""
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    return np.bincount(np.searchsorted(CONFIDENCE_BOUNDS, values, side="left"), minlength=CONFIDENCE_BINS)


def confidence_drift(
    reference: np.ndarray, current: np.ndarray, settings: Settings, *, alpha: float | None = None
) -> Result:
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
    p_value = float(_kstwo_sf(ks_d, round(n_ref * n_cur / (n_ref + n_cur))))
    effect = psi(reference, current)
    details = {"ks_d": ks_d, "psi": effect, "current": n_cur}
    return _verdict(check, settings, p_value, effect, alpha, statistic=ks_d, details=details)


def _kstwo_sf(d: float, n: int) -> float:
    """Kolmogorov's limiting distribution at ``sqrt(n) d``: at or above the exact ``kstwo.sf(d, n)`` for every
    n (so conservative), and a special function where ``scipy.stats.kstwo`` took milliseconds a call."""
    return float(_special().kolmogorov(math.sqrt(n) * d))


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
