"""What the current window is compared with: a fixed baseline, or the rolling reference a model learns.

The reference holds latency samples, confidence bucket counts, request and error counts, labels, the
calibration of confidence (labels joined to the confidence bucket of their prediction, for the estimated
accuracy) and the request rate, as a rate profile by hour of the day or of the week when the reference
spans enough days. Why a profile: a model that is quiet at night, or at weekends, would otherwise
raise a throughput alarm every night against its average rate.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .detectors import CONFIDENCE_BINS
from .settings import Settings

HOUR, DAY, WEEK = 3600.0, 86400.0, 604800.0


@dataclass(frozen=True)
class Reference:
    """Latency samples, confidence bucket counts, rates; the calibration and profile when known."""

    latencies: np.ndarray
    confidence: np.ndarray  # counts per bucket of detectors.CONFIDENCE_BOUNDS
    rate: float  # requests per second, on average
    errors: int
    total: int
    correct: int
    labelled: int
    seconds: float
    calibration: np.ndarray | None = None  # (2, CONFIDENCE_BINS): labelled, correct per confidence bucket
    profile: np.ndarray | None = None  # requests per second by hour of the day (24) or of the week (168)
    genai: dict[str, np.ndarray] | None = None  # genai.FIELDS' values -> sorted samples (generative models)

    def sorted_latencies(self) -> np.ndarray:
        cached = self.__dict__.get("_sorted")
        if cached is None:
            cached = np.sort(np.asarray(self.latencies, float))
            object.__setattr__(self, "_sorted", cached)
        return cached

    def throughput_window(self, now: float, need: float, shortest: float, longest: float) -> tuple[float, float]:
        """(seconds back from ``now``, expected requests in them): the shortest window, at least ``shortest``,
        in which the reference expects ``need`` requests (by its profile when it has one)."""
        if self.profile is None:
            seconds = min(max(shortest, need / self.rate if self.rate > 0 else longest), longest)
            return seconds, self.rate * seconds
        total = self._cumulative()[-1]
        if total <= 0:
            return longest, 0.0
        back = now - self._time_of(self._expected_by(now) - need)
        back = min(max(back, shortest), longest)
        return back, self._expected_by(now) - self._expected_by(now - back)

    def _cumulative(self) -> np.ndarray:
        """Expected requests from the start of the profile's period to the start of each of its hours."""
        cached = self.__dict__.get("_cum")
        if cached is None:
            cached = np.concatenate([[0.0], np.cumsum(self.profile * HOUR)])
            object.__setattr__(self, "_cum", cached)
        return cached

    def _expected_by(self, t: float) -> float:
        """Expected requests from Unix time 0 to ``t`` under the (periodic) profile."""
        cum, bins = self._cumulative(), len(self.profile)
        hour = math.floor(t / HOUR)
        periods, i = divmod(hour, bins)
        return periods * cum[-1] + cum[i] + self.profile[i] * (t - hour * HOUR)

    def _time_of(self, expected: float) -> float:
        """The inverse of ``_expected_by``: when the expected count reaches ``expected``."""
        cum, bins = self._cumulative(), len(self.profile)
        periods, rest = divmod(expected, cum[-1])
        i = min(int(np.searchsorted(cum, rest, side="right")) - 1, bins - 1)
        into = (rest - cum[i]) / self.profile[i] if self.profile[i] > 0 else 0.0
        return (periods * bins + i) * HOUR + into


def rate_profile(times: np.ndarray, counts: np.ndarray, start: float, end: float) -> np.ndarray | None:
    """Requests per second by hour of the week (spans of 7 days or more: every hour of the week seen at
    least once) or of the day (2 days or more). Why from 7 days: a sparse model's rolling reference (its
    ``reference_min_samples`` requests) spans one to two weeks, and an hour-of-day profile over them takes a
    weekend at 40 % of the weekday traffic for a throughput drop every weekend.

    ``times`` and ``counts`` are when requests came and how many; each hour's rate is its requests over
    the seconds the span covered of it. None for shorter spans (a flat rate is then the best guess).
    """
    period = WEEK if end - start >= WEEK else DAY if end - start >= 2 * DAY else None
    if period is None:
        return None
    bins = int(period / HOUR)
    hits = np.bincount((np.floor(np.asarray(times) / HOUR).astype(np.int64) % bins), np.asarray(counts, float), bins)
    hours = np.arange(np.floor(start / HOUR), np.ceil(end / HOUR))
    covered = np.clip(np.minimum(hours * HOUR + HOUR, end) - np.maximum(hours * HOUR, start), 0.0, HOUR)
    exposure = np.bincount(hours.astype(np.int64) % bins, covered, bins)
    return np.where(exposure > 0, hits / np.maximum(exposure, 1e-9), hits.sum() / max(end - start, 1e-9))


class RollingReference:
    """The rolling reference a model learns: buckets covering ``reference_s``, widened back to at least
    ``reference_min_samples`` requests for sparse models, with running totals (no re-summing per test)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.buckets: deque = deque()
        self.count = self.errors = self.correct = self.labelled = 0
        self.size = 0  # samples: requests, or confidences where those come without requests (live histograms)
        self.exposure = 0  # steps of traffic the buckets stand for (an alarm's excluded steps are not counted)
        self.confidence = np.zeros(CONFIDENCE_BINS, np.int64)
        self.calibration = np.zeros((2, CONFIDENCE_BINS), np.int64)
        self.version = 0  # bumped on every change; a cached snapshot is rebuilt only then
        self._snapshot: tuple[int, Reference | None] = (-1, None)

    def _apply(self, b, sign: int) -> None:
        self.count += sign * b.count
        self.size += sign * max(b.count, b.confidences)
        self.exposure += sign * b.exposure
        self.errors += sign * b.errors
        self.correct += sign * int(sum(b.labels))
        self.labelled += sign * len(b.labels)
        self.confidence += sign * b.confidence
        self.calibration += sign * b.calibration
        self.version += 1

    def append(self, bucket) -> None:
        self.buckets.append(bucket)
        self._apply(bucket, 1)
        s = self.settings
        while len(self.buckets) > 1:
            oldest = self.buckets[0]
            rest = (self.exposure - oldest.exposure) * s.step_s
            if rest < s.reference_s or self.size - max(oldest.count, oldest.confidences) < s.reference_min_samples:
                break
            self._apply(self.buckets.popleft(), -1)

    def seconds(self) -> float:
        """The traffic time the reference covers: its buckets' exposure (alarm periods left out)."""
        return self.exposure * self.settings.step_s if self.buckets else 0.0

    def full(self) -> bool:
        """Spans the whole ``reference_s`` and holds the minimum sample (the keeper captures only then)."""
        return self.seconds() >= self.settings.reference_s and self.size >= self.settings.reference_min_samples

    def now(self) -> Reference | None:
        """The current reference, or None while it is shorter than ``min_reference_s`` or has no sample."""
        seconds = self.seconds()
        if seconds < self.settings.min_reference_s or self.size < self.settings.min_samples:
            return None
        if self._snapshot[0] == self.version:
            return self._snapshot[1]
        bs, step = self.buckets, self.settings.step_s
        latencies = np.concatenate([b.latencies for b in bs]) if bs else np.zeros(0)
        times = np.array([b.step * step for b in bs])
        profile = rate_profile(times, np.array([b.count for b in bs]), times[0], times[-1] + step)
        names = {name for b in bs for name in b.genai}
        genai = {name: np.sort(np.concatenate([b.genai.get(name, ()) for b in bs])) for name in names}
        ref = Reference(
            latencies, self.confidence.copy(), self.count / seconds, self.errors, self.count, self.correct,
            self.labelled, seconds, self.calibration.copy(), profile, genai or None,
        )  # fmt: skip
        self._snapshot = (self.version, ref)
        return ref
