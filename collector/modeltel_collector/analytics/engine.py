"""The streaming engine: cuts timestamped predictions into windows per model and version, runs the detectors.

Time is the data's own (row timestamps), never the wall clock, so replaying a log gives the same detections
as the live collector did. Every ``step_s`` the engine closes a time bucket and evaluates each model on the
last ``current_s`` of buckets against its reference: a fixed baseline if one was given, otherwise the
rolling ``reference_s`` of history it learned itself. Buckets join that rolling reference only
``reference_gap_s`` after they arrive, and never if an alarm was active meanwhile, so a fault does not
teach the baseline that it is normal. Alarms are episodes: one ``firing`` event when a check degrades (and
again if its severity rises), one ``resolved`` event after ``clear_after_s`` without the condition.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from modeltel.taxonomy import Severity

from . import detectors as d
from .settings import CHECKS, Settings


@dataclass
class Bucket:
    step: int
    count: int = 0
    errors: int = 0
    latencies: list = field(default_factory=list)
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(d.CONFIDENCE_BINS, np.int64))  # per bucket
    labels: list = field(default_factory=list)
    last_time: float | None = None
    last_line: int | None = None
    tainted: bool = False


@dataclass(frozen=True)
class Reference:
    """What the current window is compared with: latency samples, confidence bucket counts, and rates."""

    latencies: np.ndarray
    confidence: np.ndarray  # counts per bucket of detectors.CONFIDENCE_BOUNDS
    rate: float  # requests per second
    errors: int
    total: int
    correct: int
    labelled: int
    seconds: float


@dataclass(frozen=True)
class Event:
    time: float
    model: str
    version: str
    check: str
    state: str  # firing | resolved
    severity: Severity
    result: d.Result
    line: int | None = None

    def as_dict(self) -> dict:
        out = {"time": self.time, "line": self.line, "model": self.model, "version": self.version}
        return {**out, "state": self.state, **self.result.as_dict(), "severity": self.severity.label}


@dataclass
class _Episode:
    severity: Severity
    last_degraded: float


def _thin(values: list, keep: int) -> list:
    if len(values) <= keep:
        return values
    return [values[int(i * len(values) / keep)] for i in range(keep)]


class ModelWindows:
    """One model version's buckets, reference, CUSUM and open alarms."""

    def __init__(self, model: str, version: str, settings: Settings, baseline: Reference | None) -> None:
        self.model, self.version, self.settings, self.baseline = model, version, settings, baseline
        self.open: Bucket | None = None
        self.recent: deque[Bucket] = deque()
        self.reference: deque[Bucket] = deque(maxlen=max(1, int(settings.reference_s / settings.step_s)))
        self.cusum = d.CusumState()
        self.new_labels: list = []
        self.episodes: dict[str, _Episode] = {}
        self.results: dict[str, d.Result] = {}
        self.first_step: int | None = None

    def add(self, step: int, t: float, latency: float, ok: bool, confidence: float, correct, line) -> None:
        b = self.open if self.open is not None and self.open.step == step else self._open(step)
        b.count += 1
        b.errors += not ok
        if len(b.latencies) < self.settings.current_samples_per_step and not math.isnan(latency):
            b.latencies.append(latency)
        if not math.isnan(confidence):
            b.confidence[bisect_left(d.CONFIDENCE_BOUNDS, confidence)] += 1
        if correct is not None:
            b.labels.append(1.0 if correct else 0.0)
            self.new_labels.append(1.0 if correct else 0.0)
        b.last_time, b.last_line = t, line

    def add_label(self, step: int, t: float, correct: bool) -> None:
        b = self.open if self.open is not None and self.open.step == step else self._open(step)
        b.labels.append(1.0 if correct else 0.0)
        self.new_labels.append(1.0 if correct else 0.0)

    def add_confidence(self, step: int, counts: np.ndarray) -> None:
        """Confidences already counted per bucket (the live collector's histogram increases)."""
        b = self.open if self.open is not None and self.open.step == step else self._open(step)
        b.confidence += counts

    def add_many(self, step: int, t: np.ndarray, latency: np.ndarray, ok: np.ndarray, confidence, correct) -> None:
        """``add`` for a batch of rows within one step (the benchmark's 100 req/s day needs numpy speed)."""
        b = self.open if self.open is not None and self.open.step == step else self._open(step)
        room = self.settings.current_samples_per_step - len(b.latencies)
        b.count += len(t)
        b.errors += int(np.sum(~ok))
        b.latencies += latency[~np.isnan(latency)][:room].tolist()
        b.confidence += d.confidence_counts(confidence)
        labels = (correct[~np.isnan(correct)] > 0.5).astype(float).tolist()
        b.labels += labels
        self.new_labels += labels
        b.last_time = float(t[-1])

    def _open(self, step: int) -> Bucket:
        self.open = Bucket(step)
        if self.first_step is None:
            self.first_step = step
        return self.open

    def close_until(self, step: int) -> list[Event]:
        """Close every bucket before ``step`` (empty ones too: silence is data for throughput)."""
        events: list[Event] = []
        if self.first_step is None:
            return events
        last = self.recent[-1].step if self.recent else self.first_step - 1
        cap = (self.reference.maxlen or 0) + len(self.recent) + 1  # after a long silence, only what can matter
        for s in range(max(last + 1, step - cap), step):
            bucket = self.open if self.open is not None and self.open.step == s else Bucket(s)
            self.recent.append(bucket)
            events += self._evaluate(s)
            self._promote()
        return events

    def _window(self) -> list[Bucket]:
        n = round(self.settings.current_s / self.settings.step_s)
        return list(self.recent)[-n:]

    def reference_now(self) -> Reference | None:
        if self.baseline is not None:
            return self.baseline
        seconds = len(self.reference) * self.settings.step_s
        if seconds < self.settings.min_reference_s:
            return None
        bs = self.reference
        return Reference(
            np.concatenate([b.latencies for b in bs]),
            np.sum([b.confidence for b in bs], axis=0),
            sum(b.count for b in bs) / seconds,
            sum(b.errors for b in bs),
            sum(b.count for b in bs),
            int(sum(sum(b.labels) for b in bs)),
            sum(len(b.labels) for b in bs),
            seconds,
        )

    def _evaluate(self, step: int) -> list[Event]:
        s, window = self.settings, self._window()
        ref = self.reference_now()
        full = len(window) * s.step_s >= s.current_s
        if ref is None or not full:
            why = "reference" if ref is None else "window"
            self.results = {c: d.Result(c, d.Status.NOT_ENOUGH_DATA, details={"short": why}) for c in CHECKS}
            self.new_labels = []
            return []
        lat = np.fromiter((x for b in window for x in b.latencies), float)
        count, errors = sum(b.count for b in window), sum(b.errors for b in window)
        labels = np.fromiter((x for b in window for x in b.labels), float)
        accuracy, self.cusum = d.accuracy_drop(
            (ref.correct, ref.labelled), np.asarray(self.new_labels), labels, self.cusum, s
        )
        self.new_labels = []
        self.results = {
            r.check: r
            for r in (
                d.latency_shift(ref.latencies, lat, s),
                d.error_rate_rise(ref.errors, ref.total, errors, count, s),
                d.throughput_drop(ref.rate, count, len(window) * s.step_s, s),
                accuracy,
                d.confidence_drift(ref.confidence, self._confidence(window), s),
            )
        }
        newest = window[-1]
        time = newest.last_time if newest.last_time is not None else (step + 1) * s.step_s
        return self._episodes(time, newest.last_line)

    def _confidence(self, window: list[Bucket]) -> np.ndarray:
        """The window's confidence counts, widened back over the recent buckets while short of
        ``min_samples``. Live, confidence comes from the SDK's metric exports, which may be further apart
        than the window (OTel's default interval is 60 s): the test then takes the last export whole,
        rather than swinging between "not enough data" and a verdict."""
        counts = np.sum([b.confidence for b in window], axis=0)
        older = list(self.recent)[: len(self.recent) - len(window)]
        while counts.sum() < self.settings.min_samples and older:
            counts = counts + older.pop().confidence
        return counts

    def _episodes(self, time: float, line: int | None) -> list[Event]:
        events = []
        for check, r in self.results.items():
            ep = self.episodes.get(check)
            if r.degraded:
                if ep is None or r.severity > ep.severity:
                    events.append(Event(time, self.model, self.version, check, "firing", r.severity, r, line))
                    self.episodes[check] = _Episode(max(r.severity, ep.severity if ep else r.severity), time)
                else:
                    ep.last_degraded = time
            elif ep is not None and time - ep.last_degraded >= self.settings.clear_after_s:
                del self.episodes[check]
                events.append(Event(time, self.model, self.version, check, "resolved", ep.severity, r, line))
        if self.episodes:
            for b in self.recent:
                b.tainted = True
        return events

    def _promote(self) -> None:
        keep = round(max(self.settings.reference_gap_s, self.settings.current_s) / self.settings.step_s)
        while len(self.recent) > keep:
            b = self.recent.popleft()
            if not b.tainted:
                b.latencies = np.asarray(_thin(b.latencies, self.settings.reference_samples_per_step), float)
                self.reference.append(b)

    def worst(self) -> Severity:
        return max((ep.severity for ep in self.episodes.values()), default=Severity.OK)


class Engine:
    """All models' windows, one clock. ``observe`` rows in time order; ``advance`` when time passes silently."""

    def __init__(self, settings: Settings | None = None, baselines: dict[tuple[str, str], Reference] | None = None):
        self.settings = settings or Settings()
        self.baselines = baselines or {}
        self.models: dict[tuple[str, str], ModelWindows] = {}
        self.step: int | None = None

    def observe(
        self,
        time: float,
        model: str,
        version: str,
        latency: float,
        *,
        ok: bool,
        confidence: float = math.nan,
        correct: bool | None = None,
        line: int | None = None,
    ) -> list[Event]:
        events = self._advance_in_order(time)
        self.windows(model, version).add(self._step(time), time, latency, ok, confidence, correct, line)
        return events

    def observe_batch(self, model: str, version: str, rows: dict[str, np.ndarray]) -> list[Event]:
        """Time-ordered rows of one model: ``time``, ``latency``, ``ok``, ``confidence``, ``correct`` (NaN: none)."""
        windows = self.windows(model, version)
        steps = np.floor(rows["time"] / self.settings.step_s).astype(np.int64)
        cuts = np.flatnonzero(np.diff(steps)) + 1
        events: list[Event] = []
        for idx in np.split(np.arange(len(steps)), cuts):
            if not len(idx):
                continue
            events += self.advance(float(rows["time"][idx[0]]))
            part = {k: v[idx] for k, v in rows.items()}
            windows.add_many(
                int(steps[idx[0]]), part["time"], part["latency"], part["ok"], part["confidence"], part["correct"]
            )
        return events

    def label(self, time: float, model: str, version: str, *, correct: bool) -> list[Event]:
        """A delayed label joined to a prediction of this model version (the accuracy detector's data)."""
        events = self._advance_in_order(time)
        self.windows(model, version).add_label(self._step(time), time, correct)
        return events

    def confidence(self, time: float, model: str, version: str, counts: np.ndarray) -> list[Event]:
        """Confidences counted per bucket of ``detectors.CONFIDENCE_BOUNDS`` by ``time`` (a histogram's increase)."""
        events = self._advance_in_order(time)
        self.windows(model, version).add_confidence(self._step(time), counts)
        return events

    def _advance_in_order(self, time: float) -> list[Event]:
        if self.step is not None and self._step(time) < self.step:
            raise ValueError(f"timestamp {time} is older than the last closed window (rows must come in time order)")
        return self.advance(time)

    def windows(self, model: str, version: str) -> ModelWindows:
        key = (model, version)
        if key not in self.models:
            baseline = self.baselines.get(key) or self.baselines.get((model, "*"))
            self.models[key] = ModelWindows(model, version, self.settings, baseline)
        return self.models[key]

    def _step(self, time: float) -> int:
        return math.floor(time / self.settings.step_s)

    def advance(self, time: float) -> list[Event]:
        """Move the clock to ``time``; every model's buckets before it close and are evaluated."""
        step = self._step(time)
        if self.step is not None and step <= self.step:
            return []
        self.step = step
        events: list[Event] = []
        for windows in self.models.values():
            events += windows.close_until(step)
        return events
