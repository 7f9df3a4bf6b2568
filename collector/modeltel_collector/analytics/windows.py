"""One model version's windows: its buckets, reference, accuracy state and open alarms (``ModelWindows``).

The engine (``engine.py``) feeds it rows and tells it when to evaluate; this module decides what each
window holds (the last ``current_s``, widened back to ``min_samples`` samples when sparse), when a test
is due (``retest_fraction`` of its window new) and at which alpha (the time since that check's last test),
when an alarm opens, escalates and resolves (on post-alarm evidence, ``recovered``), and which buckets
join the rolling reference (none from an alarm, or from the version's first ``warmup_s``).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from modeltel.taxonomy import Severity

from . import detectors as d
from . import genai
from .accuracy import AccuracyState, accuracy_drop, estimated_accuracy_drop
from .reference import Reference, RollingReference
from .settings import CHECKS, Settings

_REQUESTS = ("latency_shift", "error_rate_rise")  # checks whose samples are requests
_CONFIDENCES = ("confidence_drift", "estimated_accuracy_drop")  # checks whose samples are confidences
_LEARNING = tuple(c for c in CHECKS if c not in genai.FIELDS)  # "not enough data" while the reference is learned


@dataclass
class Bucket:
    step: int
    count: int = 0
    errors: int = 0
    latencies: list = field(default_factory=list)
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(d.CONFIDENCE_BINS, np.int64))
    labels: list = field(default_factory=list)
    calibration: np.ndarray = field(default_factory=lambda: np.zeros((2, d.CONFIDENCE_BINS), np.int64))
    genai: dict = field(default_factory=dict)  # ttft / tpot / output_tokens -> samples (generative models only)
    generations: int = 0  # requests that were generations (a generative model's other predictions are not)
    confidences: int = 0  # the sum of ``confidence``, kept (a numpy sum per bucket per test is most of a test)
    exposure: int = 1  # steps of traffic it stands for in the reference (itself and the empty steps before it)
    last_time: float | None = None
    last_line: int | None = None
    tainted: bool = False


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
    clean_from: int = 0  # the first step whose data came after the last degraded verdict


def _windows(
    recent: deque[Bucket], newest: int, settings: Settings, *, generative: bool = False
) -> tuple[list[Bucket], list[Bucket]]:
    """(requests' window, confidences' window): the buckets of the last ``current_s`` up to step ``newest``,
    each widened back over older ones while its samples are short of ``min_samples`` (never further back
    than ``max_window_s``); a ``generative`` model's requests' window also until it holds ``min_samples``
    generations (some of its predictions may be other spans). One pass from the newest bucket, stopping as
    soon as both are complete."""
    s = settings
    first, oldest = newest - round(s.current_s / s.step_s) + 1, newest - s.max_window_s / s.step_s
    requests, confidences, n_req, n_conf = [], [], 0, 0
    n_gen = 0 if generative else s.min_samples
    req_open = conf_open = True
    for b in reversed(recent):
        if b.step > newest:
            continue
        if b.step < oldest:
            break
        old = b.step < first
        req_open = req_open and not (old and n_req >= s.min_samples and n_gen >= s.min_samples)
        conf_open = conf_open and not (old and n_conf >= s.min_samples)
        if not (req_open or conf_open):
            break
        if req_open:
            requests.append(b)
            n_req += b.count
            n_gen += b.generations
        if conf_open:
            confidences.append(b)
            n_conf += b.confidences
    return requests[::-1], confidences[::-1]


class ModelWindows:
    """One model version's buckets, reference, accuracy state and open alarms."""

    def __init__(self, model: str, version: str, settings: Settings, baseline: Reference | None) -> None:
        self.model, self.version, self.settings, self.baseline = model, version, settings, baseline
        self.recent: deque[Bucket] = deque()
        self.reference = RollingReference(settings)
        self.accuracy = AccuracyState()
        self.episodes: dict[str, _Episode] = {}
        self.results: dict[str, d.Result] = {}
        self.tested: dict[str, tuple[float, int]] = {}  # check -> (time, samples seen) at its last test
        # check -> samples in its window at its last test; throughput is retested every 10 requests, as the others
        self.window_size: dict[str, int] = {"throughput_drop": settings.min_samples}
        self.tests: dict[str, int] = {}  # check -> tests run (each spent a share of the budget)
        self.seen = {"requests": 0, "confidences": 0}
        self.labels, self.first_label = 0, None
        self.last_request: float | None = None
        self.first_time = math.inf  # of the first request: no window reaches before it
        self.first_step: int | None = None  # of the first data (requests, confidences or labels): the warm-up's
        self.silence_due: int | None = None  # the step of the one silent instant that counts
        self.throughput_from = math.inf  # where the last throughput window started: its buckets stay
        self.last_out: tuple[int, bool] | None = None  # (step, tainted) of the last bucket that left ``recent``

    def bucket(self, step: int) -> Bucket:
        if self.recent and self.recent[-1].step == step:
            return self.recent[-1]
        self.first_step = step if self.first_step is None else self.first_step
        self.recent.append(Bucket(step))
        return self.recent[-1]

    def add(
        self, step: int, t: float, latency: float, ok: bool, confidence: float, line: int | None, genai=None
    ) -> None:
        """One request; ``genai`` maps ``genai.FIELDS``' values to a generation's numbers (None: not one)."""
        b = self.bucket(step)
        b.count += 1
        b.errors += not ok
        self.seen["requests"] += 1
        if len(b.latencies) < self.settings.current_samples_per_step and not math.isnan(latency):
            b.latencies.append(latency)
        b.generations += bool(genai)
        for name, value in (genai or {}).items():
            kept = b.genai.setdefault(name, [])
            if len(kept) < self.settings.current_samples_per_step and not math.isnan(value):
                kept.append(value)
        if not math.isnan(confidence):
            b.confidence[bisect_left(d.CONFIDENCE_BOUNDS, confidence)] += 1
            b.confidences += 1
            self.seen["confidences"] += 1
        b.last_time, b.last_line, self.last_request = t, line, t
        self.first_time = min(self.first_time, t)

    def add_many(self, step: int, rows: dict[str, np.ndarray]) -> None:
        """``add`` for a batch of rows within one step (the benchmark's 100 req/s day needs numpy speed)."""
        b, n = self.bucket(step), len(rows["time"])
        room = self.settings.current_samples_per_step - len(b.latencies)
        b.count += n
        b.errors += int(np.sum(~rows["ok"]))
        b.latencies += rows["latency"][~np.isnan(rows["latency"])][:room].tolist()
        given = [~np.isnan(rows[name]) for name in genai.FIELDS.values() if name in rows]
        b.generations += int(np.sum(np.any(given, axis=0))) if given else 0
        for name in genai.FIELDS.values():  # optional columns, NaN where a row is no generation
            if name in rows and (values := rows[name][~np.isnan(rows[name])]).size:
                kept = b.genai.setdefault(name, [])
                kept += values[: self.settings.current_samples_per_step - len(kept)].tolist()
        counts = d.confidence_counts(rows["confidence"])
        b.confidence += counts
        b.confidences += int(counts.sum())
        self.seen["requests"] += n
        self.seen["confidences"] += int(counts.sum())
        b.last_time = self.last_request = float(rows["time"][-1])
        self.first_time = min(self.first_time, float(rows["time"][0]))

    def add_confidence(self, step: int, counts: np.ndarray) -> None:
        """Confidences already counted per bucket (the live collector's histogram increases)."""
        b = self.bucket(step)
        b.confidence += counts
        b.confidences += int(np.sum(counts))
        self.seen["confidences"] += int(np.sum(counts))

    def add_labels(
        self, step: int, t: float, labels: np.ndarray, confidence: np.ndarray, line: int | None = None
    ) -> list[Event]:
        """Labels (1 right, 0 wrong) in arrival order, with their predictions' confidence (NaN: unknown):
        they advance the accuracy CUSUM now, and join the reference's calibration with their bucket."""
        b = self.bucket(step)
        b.labels += labels.tolist()
        if len(labels) == 1:  # one label: scalar indexing (np.add.at costs more than the rest of a label)
            if not math.isnan(confidence[0]):
                where = bisect_left(d.CONFIDENCE_BOUNDS, confidence[0])
                b.calibration[0, where] += 1
                b.calibration[1, where] += labels[0] > 0.5
        elif (known := ~np.isnan(confidence)).any():
            where = np.searchsorted(d.CONFIDENCE_BOUNDS, confidence[known], side="left")
            np.add.at(b.calibration[0], where, 1)
            np.add.at(b.calibration[1], where, labels[known] > 0.5)
        self.labels += len(labels)
        self.first_label = t if self.first_label is None else self.first_label
        ref = self.reference_now()
        if ref is None:
            return []
        # labels a day so far, over at least a minute: early on this over-states the rate (a higher run length:
        # safe); flooring the elapsed time at a day would under-state it all through the first day
        days = max((t - self.first_label) / 86400.0, 60.0 / 86400.0)
        open_ = "accuracy_drop" in self.episodes
        result, self.accuracy = accuracy_drop(
            (ref.correct, ref.labelled), labels, self.accuracy, self.settings,
            labels_per_day=self.labels / days, alarm_open=open_,
        )  # fmt: skip
        self.results["accuracy_drop"] = result
        back = {"accuracy_drop"} if result.details.get("recovered") else set()
        return self._episodes(t, line, {"accuracy_drop": result}, back)

    def reference_now(self) -> Reference | None:
        return self.baseline if self.baseline is not None else self.reference.now()

    def evaluate(self, step: int, *, silence: bool = False) -> list[Event]:
        """Test the windows ending at ``step`` (a closed bucket's, or a silent instant's: throughput only).
        The windows are assembled only when a test is due (``retest_fraction`` of them is new)."""
        ref, s = self.reference_now(), self.settings
        due = not silence and (
            self._due("latency_shift", self.seen["requests"]) or self._due("confidence_drift", self.seen["confidences"])
        )
        throughput_due = silence or self._due("throughput_drop", self.seen["requests"])
        if ref is not None and not (due or throughput_due):
            return []  # a sparse model's row that neither completes a retest nor moves throughput's window
        generative = ref is not None and ref.genai is not None
        windows = _windows(self.recent, step, s, generative=generative) if due or ref is None else None
        if ref is None:
            short = {"short": "reference"}  # the generative checks report only once a model sends their data
            self.results = {c: d.Result(c, d.Status.NOT_ENOUGH_DATA, details=short) for c in _LEARNING}
            self._promote(step, windows)
            return []
        newest = next((b for b in reversed(self.recent) if b.step <= step and b.count), None)
        now = (step + 1) * s.step_s if silence or newest is None else newest.last_time or (step + 1) * s.step_s
        results = {"throughput_drop": self._throughput(ref, now)} if throughput_due else {}
        if windows is not None:
            results.update(self._tests(ref, windows, now))
        self.results.update(results)
        recovered = {c for c in results if c in self.episodes and self._recovered(c, ref, step, now)}
        events = self._episodes(now, None if silence or newest is None else newest.last_line, results, recovered)
        if windows is not None:
            self._promote(step, windows)
        return events

    def _due(self, check: str, seen: int) -> bool:
        """Whether ``retest_fraction`` of the check's last window is new since its last test."""
        last = self.tested.get(check)
        size = self.window_size.get(check, 0)
        return last is None or seen - last[1] >= max(1, self.settings.retest_fraction * size)

    def _alpha(self, check: str, now: float, seen: int) -> float:
        last = self.tested.get(check)
        self.tested[check] = (now, seen)
        self.tests[check] = self.tests.get(check, 0) + 1
        return self.settings.alpha_for(now - last[0] if last else 0.0)

    def _tests(self, ref: Reference, windows: tuple[list[Bucket], list[Bucket]], now: float) -> dict[str, d.Result]:
        s, out = self.settings, {}
        win, conf = windows
        count = sum(b.count for b in win)
        if self._due("latency_shift", self.seen["requests"]):
            self.window_size["latency_shift"] = count
            lat = np.fromiter((x for b in win for x in b.latencies), float)
            for check in _REQUESTS:
                a = self._alpha(check, now, self.seen["requests"])
                out[check] = (
                    d.latency_shift(ref.sorted_latencies(), lat, s, alpha=a)
                    if check == "latency_shift"
                    else d.error_rate_rise(ref.errors, ref.total, sum(b.errors for b in win), count, s, alpha=a)
                )
            out.update(genai.tests(ref.genai, win, s, lambda c: self._alpha(c, now, self.seen["requests"])))
        if self._due("confidence_drift", self.seen["confidences"]):
            self.window_size["confidence_drift"] = sum(b.confidences for b in conf)
            counts = np.sum([b.confidence for b in conf], axis=0) if conf else np.zeros(d.CONFIDENCE_BINS, np.int64)
            for check in _CONFIDENCES:
                a = self._alpha(check, now, self.seen["confidences"])
                out[check] = (
                    d.confidence_drift(ref.confidence, counts, s, alpha=a)
                    if check == "confidence_drift"
                    else estimated_accuracy_drop(ref.calibration, ref.confidence, counts, s, alpha=a)
                )
        return out

    def _throughput(self, ref: Reference, now: float, *, since: float | None = None) -> d.Result:
        """Requests in the window where the reference expects ``min_expected_requests`` (never from before the
        model's first request; a recovery test counts only from ``since``), against that expectation."""
        s = self.settings
        back, expected = ref.throughput_window(now, s.min_expected_requests, s.current_s, s.max_window_s)
        self.throughput_from = min(self.throughput_from, now - back) if since is not None else now - back
        if now - self.first_time < s.current_s:
            return d.Result("throughput_drop", d.Status.NOT_ENOUGH_DATA, details={"short": "window"})
        start = max(now - back, self.first_time, -math.inf if since is None else since)
        if start > now - back:
            back, expected = now - start, expected * (now - start) / back
        count = 0
        for b in reversed(self.recent):  # buckets that overlap [start, now]
            if (b.step + 1) * s.step_s <= start:
                break
            count += b.count if b.step * s.step_s <= now else 0
        a = self._alpha("throughput_drop", now, self.seen["requests"]) if since is None else s.recover_alpha
        return d.throughput_drop(ref.rate, count, max(back, 1e-9), s, alpha=a, expected=expected)

    def _recovered(self, check: str, ref: Reference, step: int, now: float) -> bool:
        """Post-alarm data only (the buckets after the last degraded verdict): evidence the check is back."""
        ep, s = self.episodes[check], self.settings
        if check == "throughput_drop":
            return d.recovered(self._throughput(ref, now, since=ep.clean_from * s.step_s), s)
        clean = [b for b in self.recent if ep.clean_from <= b.step <= step]
        if check in genai.FIELDS:
            result = genai.test(check, ref.genai, clean, s, s.recover_alpha)
        elif check in _REQUESTS:
            lat = np.fromiter((x for b in clean for x in b.latencies), float)
            errors, count = sum(b.errors for b in clean), sum(b.count for b in clean)
            result = (
                d.latency_shift(ref.sorted_latencies(), lat, s, alpha=s.recover_alpha)
                if check == "latency_shift"
                else d.error_rate_rise(ref.errors, ref.total, errors, count, s, alpha=s.recover_alpha)
            )
        else:
            counts = np.sum([b.confidence for b in clean], axis=0) if clean else np.zeros(d.CONFIDENCE_BINS)
            result = (
                d.confidence_drift(ref.confidence, counts, s, alpha=s.recover_alpha)
                if check == "confidence_drift"
                else estimated_accuracy_drop(ref.calibration, ref.confidence, counts, s, alpha=s.recover_alpha)
            )
        return d.recovered(result, s)

    def _episodes(
        self, time: float, line: int | None, results: dict[str, d.Result], recovered: set[str]
    ) -> list[Event]:
        events, step = [], math.floor(time / self.settings.step_s)
        for check, r in results.items():
            ep = self.episodes.get(check)
            if r.degraded:
                if ep is None or r.severity > ep.severity:
                    events.append(Event(time, self.model, self.version, check, "firing", r.severity, r, line))
                    ep = self.episodes[check] = _Episode(max(r.severity, ep.severity if ep else r.severity), time)
                ep.last_degraded, ep.clean_from = time, step + 1
            elif check in recovered:
                del self.episodes[check]
                events.append(Event(time, self.model, self.version, check, "resolved", ep.severity, r, line))
        if self.episodes:  # taint what came since the last evaluation: the tainted buckets are a prefix
            for b in reversed(self.recent):
                if b.tainted:
                    break
                b.tainted = True
        return events

    def _promote(self, step: int, windows: tuple[list[Bucket], list[Bucket]]) -> None:
        """Buckets that left every current window (and are ``reference_gap_s`` old) join the reference,
        unless an alarm was open or they hold the model version's first ``warmup_s`` (cold caches, lazy
        loading and compilation make a fresh version's first answers slow: learned, they would hide a
        later slowdown)."""
        s = self.settings
        gap = round(max(s.reference_gap_s, s.current_s) / s.step_s)
        sizes = (sum(b.count for b in windows[0]), sum(b.confidences for b in windows[1]))
        time_window = step - round(s.current_s / s.step_s) + 1
        if math.isfinite(self.throughput_from):  # and throughput's
            time_window = min(time_window, math.floor(self.throughput_from / s.step_s))
        # a widened window pins its buckets (a sparse model's last min_samples); one with no sample at all
        # (a model that sends no confidence) pins nothing, or it would keep max_window_s of buckets
        oldest_needed = min([time_window] + [w[0].step for w, n in zip(windows, sizes, strict=True) if w and n])
        open_from = min((ep.clean_from for ep in self.episodes.values()), default=step)
        warm_until = (self.first_step or 0) * s.step_s + s.warmup_s  # buckets starting before it: the warm-up
        while self.recent and self.recent[0].step < min(oldest_needed, step - gap + 1, open_from):
            b = self.recent.popleft()
            excluded = b.tainted or b.step * s.step_s < warm_until
            last, self.last_out = self.last_out, (b.step, excluded)
            # the empty steps before it count as its exposure, unless they followed an excluded bucket (an
            # alarm's or the warm-up's)
            b.exposure = b.step - last[0] if last is not None and not last[1] else 1
            if not excluded and self.baseline is None:  # with a fixed baseline nothing is learned
                b.latencies = np.asarray(_thin(b.latencies, s.reference_samples_per_step), float)
                b.genai = {k: _thin(v, s.reference_samples_per_step) for k, v in b.genai.items()}
                self.reference.append(b)

    def worst(self) -> Severity:
        return max((ep.severity for ep in self.episodes.values()), default=Severity.OK)


def _thin(values: list, keep: int) -> list:
    if len(values) <= keep:
        return values
    return [values[int(i * len(values) / keep)] for i in range(keep)]
