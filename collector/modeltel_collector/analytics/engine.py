"""The streaming engine: cuts timestamped predictions into windows per model and version, runs the detectors.

Time is the data's own (row timestamps), never the wall clock, so replaying a log gives the same detections
as the live collector did. Cost grows with the rows, not with the time they span: a model is evaluated
when a ``step_s`` bucket that received its data closes, and at the one instant its silence could change a
verdict (its last request leaving the throughput window); an idle model costs nothing, and ``advance``
pops only the models due (a heap). Each window is the last ``current_s``, widened back to the last
``min_samples`` samples for a sparse model, compared with a fixed baseline if one was given, otherwise
with the rolling reference the model learned (``reference.RollingReference``). Buckets join that reference
once they leave the current window and are ``reference_gap_s`` old, and never if an alarm was open
meanwhile, so a fault does not teach the baseline that it is normal. Labels run the accuracy CUSUM the
moment they arrive. Alarms are episodes: one ``firing`` event when a check degrades (and again if its
severity rises), one ``resolved`` event when post-alarm data show the model is back (``recovered``).
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from .reference import Reference
from .settings import Settings
from .windows import Bucket, Event, ModelWindows

__all__ = ["Bucket", "Engine", "Event", "ModelWindows", "Reference"]


class Engine:
    """All models' windows, one clock. ``observe`` rows in time order; ``advance`` when time passes silently."""

    def __init__(self, settings: Settings | None = None, baselines: dict[tuple[str, str], Reference] | None = None):
        self.settings = settings or Settings()
        self.baselines = baselines or {}
        self.models: dict[tuple[str, str], ModelWindows] = {}
        self.step: int | None = None
        self.due: list[tuple[int, int, tuple[str, str]]] = []  # (step, kind 0 data / 1 silence, model) heap
        self.queued: set[tuple[int, int, tuple[str, str]]] = set()
        self.traffic_end: int | None = None  # replay: the log's last step; silence after it is not the model's

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
        ttft: float | None = None,
        tpot: float | None = None,
        output_tokens: float | None = None,
    ) -> list[Event]:
        """One prediction; a generation's time to first token, time per output token and output tokens
        (None: not a generation, or not known) feed the generative checks (``genai.py``)."""
        events = self._advance_in_order(time)
        step, w = self._step(time), self.windows(model, version)
        gen = {"ttft": ttft, "tpot": tpot, "output_tokens": output_tokens}
        w.add(step, time, latency, ok, confidence, line, {k: float(v) for k, v in gen.items() if v is not None})
        self._schedule(step, 0, (model, version))
        if correct is not None:
            events += w.add_labels(step, time, np.array([1.0 if correct else 0.0]), np.array([confidence]), line)
        return events

    def observe_batch(self, model: str, version: str, rows: dict[str, np.ndarray]) -> list[Event]:
        """Time-ordered rows of one model: ``time``, ``latency``, ``ok``, ``confidence``, ``correct`` (NaN: none),
        and optionally ``ttft``, ``tpot``, ``output_tokens`` (NaN: not a generation)."""
        w = self.windows(model, version)
        steps = np.floor(rows["time"] / self.settings.step_s).astype(np.int64)
        cuts = np.flatnonzero(np.diff(steps)) + 1
        events: list[Event] = []
        for idx in np.split(np.arange(len(steps)), cuts):
            if not len(idx):
                continue
            t, step = float(rows["time"][idx[0]]), int(steps[idx[0]])
            events += self._advance_in_order(t)
            part = {k: v[idx] for k, v in rows.items()}
            w.add_many(step, part)
            self._schedule(step, 0, (model, version))
            labelled = ~np.isnan(part["correct"])
            if labelled.any():
                correct = (part["correct"][labelled] > 0.5).astype(float)
                events += w.add_labels(step, float(part["time"][-1]), correct, part["confidence"][labelled])
        return events

    def label(
        self, time: float, model: str, version: str, *, correct: bool, confidence: float = math.nan
    ) -> list[Event]:
        """A delayed label joined to a prediction of this model version (with that prediction's confidence
        when known: it calibrates the estimated accuracy)."""
        events = self._advance_in_order(time)
        step = self._step(time)
        return events + self.windows(model, version).add_labels(
            step, time, np.array([1.0 if correct else 0.0]), np.array([confidence])
        )

    def confidence(self, time: float, model: str, version: str, counts: np.ndarray) -> list[Event]:
        """Confidences counted per bucket of ``detectors.CONFIDENCE_BOUNDS`` by ``time`` (a histogram's increase)."""
        events = self._advance_in_order(time)
        step = self._step(time)
        self.windows(model, version).add_confidence(step, counts)
        self._schedule(step, 0, (model, version))
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

    def _schedule(self, step: int, kind: int, key: tuple[str, str]) -> None:
        if (step, kind, key) not in self.queued:
            self.queued.add((step, kind, key))
            heapq.heappush(self.due, (step, kind, key))

    def advance(self, time: float) -> list[Event]:
        """Move the clock to ``time``: every model due before it (a closed bucket with data, or a silent
        instant) is evaluated. Models with nothing due are not touched."""
        step = self._step(time)
        if self.step is not None and step <= self.step:
            return []
        self.step = step
        events: list[Event] = []
        while self.due and self.due[0][0] < step:
            due, kind, key = heapq.heappop(self.due)
            self.queued.discard((due, kind, key))
            w = self.models[key]
            if kind == 1 and (due != w.silence_due or (self.traffic_end is not None and due > self.traffic_end)):
                continue  # requests came since (a later instant replaced it), or the log had ended
            tested = w.tests.get("throughput_drop", 0)
            events += w.evaluate(due, silence=kind == 1)
            if w.tests.get("throughput_drop", 0) != tested:  # its window moved: so does the silent instant
                self._schedule_silence(w, key, due)
        return events

    def traffic_ended(self, time: float) -> None:
        """The prediction log ends at ``time`` (labels may still come): silence after it is no throughput drop."""
        self.traffic_end = self._step(time)

    def _schedule_silence(self, w: ModelWindows, key: tuple[str, str], after: int) -> None:
        """The instant the last request leaves the throughput window: silence is data for throughput."""
        ref = w.reference_now()
        if ref is None or w.last_request is None:
            return
        s = self.settings
        back, _ = ref.throughput_window(w.last_request, s.min_expected_requests, s.current_s, s.max_window_s)
        at = self._step(w.last_request + back)
        if at > max(self._step(w.last_request), after):
            w.silence_due = at
            self._schedule(at, 1, key)
