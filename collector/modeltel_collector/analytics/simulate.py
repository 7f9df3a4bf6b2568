"""Prediction traffic as real models produce it, for the tests and ``benchmarks/detection.py``.

Why: detectors tuned on a steady 100 req/s stream break on what most monitored models look like (a
credit or triage model: one prediction every few minutes, quiet nights and weekends, labels days late
and out of order). ``generate`` draws such a stream from a ``Case``, vectorised, with the truth of what
changed and when, so a test can count the rows to detect, the episodes and the chance alarms.

The model is a calibrated classifier: each prediction's top-class confidence ``c`` is drawn first and
the prediction is right with probability ``c`` (so expected accuracy is the mean confidence). A drop is
either a *covariate shift* (confidences fall; calibration holds, so the confidence-based estimate sees
it) or a *concept shift* (confidences unchanged, right answers rarer; only labels tell).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

DAY = 86400.0


@dataclass(frozen=True)
class Case:
    name: str
    days: float
    interval_s: float  # mean seconds between predictions (over a whole week, quiet hours included)
    accuracy: float = 0.93  # healthy accuracy = mean confidence (calibrated)
    classes: int = 2
    drop: float = 0.0  # accuracy lost from ``drop_at`` on (0.03 = 3 points)
    drop_at: float = 0.5  # fraction of the span
    covariate: bool = False  # the drop shows in the confidences (True) or only in the labels (False)
    label_fraction: float = 1.0
    label_delay_days: tuple[float, float] = (1.0, 7.0)  # uniform; labels arrive out of order
    weekend: float = 1.0  # weekend traffic relative to weekdays
    night: float = 1.0  # traffic from 22:00 to 06:00 relative to the day's (0.02: quiet at night)
    start: float = 1767225600.0  # 2026-01-01T00:00:00Z, a Thursday

    def scaled(self, **changes) -> Case:
        return replace(self, **changes)


@dataclass
class Stream:
    """Predictions (time-ordered columns) and their delayed labels (arrival-ordered), with the truth."""

    case: Case
    time: np.ndarray
    latency: np.ndarray
    ok: np.ndarray
    confidence: np.ndarray
    correct: np.ndarray  # the truth for every prediction (bool)
    label_time: np.ndarray  # when its label arrives; inf: never
    drop_time: float | None

    @property
    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """(arrival times, prediction indices) of the labels that arrive, in arrival order."""
        idx = np.flatnonzero(np.isfinite(self.label_time))
        order = np.argsort(self.label_time[idx], kind="stable")
        return self.label_time[idx][order], idx[order]

    def events(self):
        """("prediction", i) and ("label", i) in the order a collector sees them (time, predictions first)."""
        when, which = self.labels
        kinds = np.concatenate([np.zeros(len(self.time), np.int8), np.ones(len(when), np.int8)])
        times = np.concatenate([self.time, when])
        index = np.concatenate([np.arange(len(self.time)), which])
        for k in np.lexsort((kinds, times)):
            yield ("label" if kinds[k] else "prediction"), int(index[k]), float(times[k])


def _rate_shape(t: np.ndarray, case: Case) -> np.ndarray:
    """Relative traffic at Unix time ``t`` (weekly and nightly pattern), at most 1."""
    day, hour = np.floor(t / DAY), (t % DAY) / 3600.0
    weekend = ((day + 3) % 7) >= 5  # 1970-01-01 was a Thursday: +3 makes Monday 0
    shape = np.where(weekend, case.weekend, 1.0) * np.where((hour >= 22) | (hour < 6), case.night, 1.0)
    return shape / max(1.0, case.weekend, case.night)


def _beta_for(mean: float, classes: int, concentration: float = 6.0) -> tuple[float, float]:
    """Beta parameters whose draw ``u`` maps to a confidence ``1/k + (1 - 1/k) u`` of the given mean."""
    floor = 1.0 / classes
    m = min(max((mean - floor) / (1.0 - floor), 0.02), 0.98)
    return m * concentration, (1 - m) * concentration


def generate(case: Case, seed: int = 0) -> Stream:
    rng = np.random.default_rng(seed)
    span = case.days * DAY
    mean_shape = float(np.mean(_rate_shape(case.start + np.arange(0, 7 * DAY, 600.0), case)))
    peak_rate = 1.0 / (case.interval_s * mean_shape)  # thinning: draw at the peak rate, keep by shape
    n = rng.poisson(peak_rate * span)
    t = case.start + np.sort(rng.random(n)) * span
    t = t[rng.random(n) < _rate_shape(t, case)]
    n = len(t)
    drop_time = case.start + case.drop_at * span if case.drop else None
    after = t >= drop_time if drop_time is not None else np.zeros(n, bool)
    floor = 1.0 / case.classes
    healthy, shifted = _beta_for(case.accuracy, case.classes), _beta_for(case.accuracy - case.drop, case.classes)
    u = rng.beta(healthy[0], healthy[1], n)
    if case.covariate:
        u[after] = rng.beta(shifted[0], shifted[1], int(after.sum()))
    confidence = floor + (1.0 - floor) * u
    p_right = confidence - (0.0 if case.covariate else case.drop * after)
    correct = rng.random(n) < p_right
    lo, hi = case.label_delay_days
    label_time = t + rng.uniform(lo, hi, n) * DAY
    label_time[rng.random(n) >= case.label_fraction] = math.inf
    latency = rng.lognormal(math.log(0.05), 0.3, n)
    ok = rng.random(n) >= 0.005
    return Stream(case, t, latency, ok, np.round(confidence, 4), correct, label_time, drop_time)


CASES = {
    "credit, 3-point drop": Case("credit", 300, 540, drop=0.03, weekend=0.4),
    "credit, healthy": Case("credit", 300, 540, weekend=0.4),
    "triage multiclass, 20-point drop": Case("triage", 60, 60, accuracy=0.85, classes=5, drop=0.20, covariate=True),
    "quiet at night, healthy": Case("night", 60, 120, night=0.02, label_delay_days=(0.5, 2.0)),
}
