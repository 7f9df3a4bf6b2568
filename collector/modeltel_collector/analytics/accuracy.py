"""Accuracy, from labels when they come and estimated from confidence before they do.

``accuracy_drop``: Page's CUSUM over the labels, in arrival order (days late and out of order is fine:
each label is one Bernoulli outcome). Its threshold is not fixed: the in-control run length is the
labels the model gets in 1 / share days (``Settings.cusum_arl``), turned into ``h`` exactly for the
increments it adds (``cusum.threshold``). While its alarm is open a reverse CUSUM gathers evidence that
accuracy is back (``p0`` against ``p0 - shift``); the alarm resolves only when that evidence reaches its
own threshold (run length ``recover_arl`` labels while still degraded) over at least ``min_labels``
labels, so a drop that lasts gives one episode.

``estimated_accuracy_drop``: confidence-based performance estimation (CBPE). A calibrated classifier is
right with probability its top-class confidence; the calibration is fitted on the reference, per
confidence bucket (labels joined to the bucket of their prediction, shrunk towards the bucket's middle
with the weight of ``PRIOR`` labels), and applied to the current window's confidence counts: the mean
expected correctness, with a band for the realized accuracy of the same predictions. It holds under
covariate shift (inputs move, P(right | confidence) does not); under concept shift only labels tell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from modeltel.taxonomy import Severity

from . import cusum
from .detectors import CONFIDENCE_BOUNDS, Result, Status, _short, _verdict
from .settings import Settings

PRIOR = 5.0  # labels' weight of the "confidence is calibrated" prior in each bucket
_EDGES = np.array([0.0, *CONFIDENCE_BOUNDS, 1.0])
MIDPOINTS = (_EDGES[:-1] + _EDGES[1:]) / 2


@dataclass(frozen=True)
class AccuracyState:
    """The CUSUM, the labels since it last touched zero (the change point's estimate), the reverse CUSUM."""

    s: float = 0.0
    since_n: int = 0
    since_correct: int = 0
    reverse: float = 0.0
    since_alarm: int = 0
    h: float = math.inf


def accuracy_drop(
    reference: tuple[int, int],
    new: np.ndarray,
    state: AccuracyState,
    settings: Settings,
    *,
    labels_per_day: float = 0.0,
    alarm_open: bool = False,
) -> tuple[Result, AccuracyState]:
    """Accuracy fell? ``reference`` is (right, total) labels of the baseline; ``new`` the labels since the
    last call (1 right, 0 wrong) in arrival order. Degraded when the CUSUM is over its threshold and the
    drop since its change point is at least the warning grade; ``details["recovered"]`` when an open
    alarm's reverse CUSUM has shown the accuracy is back."""
    check = "accuracy_drop"
    ref_correct, ref_total = reference
    if ref_total < settings.min_labels:
        return _short(check, reference=ref_total, needed=settings.min_labels), state
    target = cusum.rounded_target(settings.cusum_arl(labels_per_day))
    inc, h, h_back = _setup(ref_correct, ref_total, settings.cusum_shift, target, settings.recover_arl)
    s, n, k, rev, since_alarm = state.s, state.since_n, state.since_correct, state.reverse, state.since_alarm
    for right in np.asarray(new, float) > 0.5:
        x = inc.llr(bool(right))
        s = max(0.0, s + x)
        n, k = (n + 1, k + bool(right)) if s > 0.0 else (0, 0)
        if alarm_open:
            rev, since_alarm = max(0.0, rev - x), since_alarm + 1
    if not alarm_open:
        rev, since_alarm = 0.0, 0
    after = AccuracyState(s, n, k, rev, since_alarm, h)
    details = {"reference_accuracy": ref_correct / ref_total, "cusum_h": h, "labels_per_day": labels_per_day}
    if alarm_open and rev > h_back and since_alarm >= settings.min_labels:
        details["recovered"] = True
        return Result(check, Status.OK, Severity.OK, None, 0.0, None, details), AccuracyState(h=h)
    if s > h and n:
        drop = ref_correct / ref_total - k / n
        details["labels_since_change"] = n
        severity = settings.grades[check].severity(drop)
        if severity > Severity.OK:
            return Result(check, Status.DEGRADED, severity, None, s, drop, details), after
        return Result(check, Status.OK, Severity.OK, None, s, drop, details), after
    return Result(check, Status.OK, Severity.OK, None, s, None, details), after


@lru_cache(maxsize=256)
def _setup(correct: int, total: int, shift: float, target: float, recover: float) -> tuple:
    """(increments, threshold, reverse threshold) for a reference of ``correct`` / ``total`` labels."""
    p0 = cusum.quantized(_lower(correct, total))
    return cusum.increments(p0, shift), cusum.threshold(p0, shift, target), cusum.reverse_threshold(p0, shift, recover)


def _lower(correct: int, total: int) -> float:
    """The reference accuracy less one standard error: a baseline that over-estimates accuracy by chance
    would make a calibrated CUSUM drift upwards on a healthy model and alarm long before its run length."""
    p = correct / total
    return p - math.sqrt(p * (1 - p) / total)


def calibration(confidence: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Labels joined to the confidence bucket of their prediction: (labelled, right) counts per bucket."""
    where = np.searchsorted(CONFIDENCE_BOUNDS, np.asarray(confidence, float), side="left")
    right = np.asarray(correct, float) > 0.5
    return np.array([np.bincount(where, minlength=len(MIDPOINTS)), np.bincount(where, right, len(MIDPOINTS))], np.int64)


def calibration_curve(calibration: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Per confidence bucket: P(right) and its variance, from (labelled, correct) counts per bucket."""
    if calibration is None:
        return None
    labelled, correct = np.asarray(calibration, float)
    a, b = correct + PRIOR * MIDPOINTS, labelled - correct + PRIOR * (1 - MIDPOINTS)
    return a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))


def estimate(counts: np.ndarray, curve: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """(expected accuracy, standard deviation of the realized accuracy around it) of predictions counted
    per confidence bucket: the predictions' own Bernoulli spread plus the calibration's uncertainty."""
    p, var = curve
    n = float(np.sum(counts))
    w = np.asarray(counts, float) / n
    est = float(w @ p)
    return est, math.sqrt(float(w @ (p * (1 - p))) / n + float((w * w) @ var))


def estimated_accuracy_drop(
    calibration: np.ndarray | None,
    reference: np.ndarray,
    current: np.ndarray,
    settings: Settings,
    *,
    alpha: float | None = None,
) -> Result:
    """Has the confidence-based accuracy estimate fallen? The window's estimate against the reference's (the
    same calibration applied to both: a drift of confidence that leaves the estimate where it was is no
    drop), p-value from Bernstein's inequality. Details carry the estimate and its 95 % band for the
    realized accuracy of the window's predictions."""
    check = "estimated_accuracy_drop"
    labelled = 0 if calibration is None else int(np.sum(np.asarray(calibration)[0]))
    if labelled < settings.min_labels:
        return _short(check, calibration_labels=labelled, needed=settings.min_labels)
    n_cur, n_ref = float(np.sum(current)), float(np.sum(reference))
    if n_cur < settings.min_samples or n_ref < settings.min_samples:
        return _short(check, current=int(n_cur), reference=int(n_ref), needed=settings.min_samples)
    curve = calibration_curve(calibration)
    p = curve[0]
    est, sd = estimate(current, curve)
    ref_est, _ = estimate(reference, curve)
    seen = (np.asarray(reference) > 0) | (np.asarray(current) > 0)
    w_ref = np.asarray(reference, float) / n_ref
    spread = float(w_ref @ (p - ref_est) ** 2) * (1 + n_cur / n_ref)  # variance, the reference's own included
    drop = ref_est - est
    p_value = _bernstein(drop, n_cur, spread, ref_est - float(np.min(p[seen])))
    details = {"estimate": est, "low": est - 1.96 * sd, "high": est + 1.96 * sd, "reference_estimate": ref_est}
    return _verdict(check, settings, p_value, drop, alpha, statistic=drop, details={**details, "current": int(n_cur)})


def _bernstein(drop: float, n: float, variance: float, reach: float) -> float:
    """Bernstein's bound on P(mean of n draws falls ``drop`` below its expectation), for draws that fall at
    most ``reach`` below it. Why not a z-test: a calibrated model's confidences are skewed (a long tail of
    unsure predictions), and the normal tail under-states a 4-sigma fall of a 100-prediction mean."""
    if drop <= 0:
        return 1.0
    return float(min(1.0, math.exp(-n * drop * drop / (2 * variance + 2 * max(reach, 0.0) * drop / 3))))
