"""A bounded ring of metric snapshots, so the console can draw rates and quantiles over time without Prometheus.

Every ``step_s`` the sampler copies the cumulative state of a few chosen families out of the
``MetricStore`` (under its lock, so the copy is the only cost the ingest thread sees), turns it into the
increase since the previous sample per source series (a drop is a counter reset, as in Prometheus'
``rate``), and adds those increases up across workers: one *track* per family and label set, without
``job``/``instance``. Gauges keep their source labels and store the value itself. Each track holds one
float32 row per sample in a preallocated ring of ``points = history_s / step_s`` rows, so memory is
fixed when a track is created and never grows: ``max_bytes`` is the bound, stated in docs/console.md.

A histogram row is its bucket increases followed by the sum's increase, which keeps quantiles over any
window exact (rows add up) where per-sample quantiles could not be combined. Beside each histogram row
sits one exemplar slot: the slowest exemplar that arrived in that interval (the one worth clicking on a
latency chart), packed into 36 bytes, so exemplars are bounded by the same ring.
"""

from __future__ import annotations

import math
import struct
import threading
import time
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from modeltel_collector.store.metrics import GAUGE, HISTOGRAM, Labels, MetricStore
from modeltel_collector.store.series import HistogramSeries, NumberSeries

Exemplar = tuple[float, float, str, str]  # (unix seconds, value, trace_id hex, span_id hex)

_SOURCE_LABELS = frozenset({"job", "instance"})
_SCOPE_LABELS = frozenset({"otel_scope_name", "otel_scope_version"})
MAX_BUCKETS = 64  # histograms with more buckets are not tracked (the taxonomy's have at most 26)
_EXEMPLAR = struct.Struct("<df16s8s")  # unix seconds, value, trace id, span id; a zero trace id: none
_NO_EXEMPLAR = bytes(_EXEMPLAR.size)
_NAN = float("nan")


@dataclass
class Track:
    """One aggregated series: ``points`` rows of ``width`` float32 values (NaN: no data at that sample)."""

    family: str
    kind: str
    labels: Labels
    bounds: tuple[float, ...]
    width: int
    rows: array
    exemplars: bytearray  # one _EXEMPLAR slot per row (histograms), else empty
    last_active: float = 0.0

    @property
    def nbytes(self) -> int:
        return self.rows.itemsize * len(self.rows) + len(self.exemplars)

    def exemplar(self, slot: int) -> Exemplar | None:
        if not self.exemplars:
            return None
        t, value, trace_id, span_id = _EXEMPLAR.unpack_from(self.exemplars, slot * _EXEMPLAR.size)
        return (t, value, trace_id.hex(), span_id.hex()) if any(trace_id) else None


@dataclass
class Group:
    """A query result: rows summed over the tracks sharing ``labels``, oldest first, ``None`` for gaps."""

    labels: dict[str, str]
    bounds: tuple[float, ...]
    rows: list[list[float] | None]
    exemplars: list[Exemplar]


class MetricHistory:
    """The ring. ``sample()`` runs on its own thread (``start``/``close``); queries run on API threads."""

    def __init__(
        self,
        store: MetricStore,
        families: tuple[str, ...],
        *,
        history_s: float = 3600.0,
        step_s: float = 5.0,
        max_tracks: int = 128,
    ) -> None:
        if step_s <= 0 or history_s < step_s:
            raise ValueError("history needs step_s > 0 and history_s >= step_s")
        self.store = store
        self.families = families
        self.step_s = step_s
        self.points = int(history_s / step_s)
        self.max_tracks = max_tracks
        self.dropped_tracks = 0  # series with data but no track, at the last sample (the cap was reached)
        self._times = array("d", [_NAN]) * self.points
        self._head = 0  # the slot the next sample writes
        self._tracks: dict[tuple[str, Labels], Track] = {}
        self._prev: dict[tuple[str, Labels], tuple[tuple[float, ...], frozenset]] = {}
        self._sampled = False
        self._lock = threading.Lock()
        self._sample_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modeltel-history", daemon=True)

    @property
    def max_bytes(self) -> int:
        """The ring's memory bound: every track at the cap, each with the widest row and an exemplar slot."""
        return self.points * (8 + self.max_tracks * (4 * (MAX_BUCKETS + 2) + _EXEMPLAR.size))

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._times.itemsize * self.points + sum(t.nbytes for t in self._tracks.values())

    def start(self) -> None:
        self.sample()  # the baseline: whatever arrives from now on counts from the first interval
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @contextmanager
    def paused(self) -> Iterator[MetricHistory]:
        """Hold samples back while a reader runs several queries, so they all see the same samples."""
        with self._sample_lock:
            yield self

    def _run(self) -> None:
        while not self._stop.wait(self.step_s):
            self.sample()

    # ---------------------------------------------------------------- sampling
    def _copy(self) -> dict[tuple[str, Labels], tuple[str, tuple[float, ...], tuple[float, ...], tuple]]:
        """The tracked families' cumulative state, as plain tuples (runs under the store's lock)."""
        out = {}
        for name in self.families:
            fam = self.store.families.get(name)
            if fam is None:
                continue
            for labels, s in fam.series.items():
                if isinstance(s, NumberSeries):
                    out[(name, labels)] = (fam.type, (), (s.value,), ())
                elif isinstance(s, HistogramSeries) and s.counts and len(s.bounds) <= MAX_BUCKETS:
                    out[(name, labels)] = (HISTOGRAM, s.bounds, (*s.counts, s.sum), tuple(s.exemplars.values()))
        return out

    def sample(self, now: float | None = None) -> None:
        """Add one row to every track: the increase since the last sample (or the value, for gauges)."""
        with self._sample_lock:  # the sampler thread, and tests or a shutdown hook calling it directly
            self._sample(time.time() if now is None else now)

    def _sample(self, now: float) -> None:
        with self.store.lock:
            current = self._copy()
        increases: dict[tuple[str, Labels], list[float]] = {}
        new_exemplars: dict[tuple[str, Labels], list[Exemplar]] = {}
        prev_all, self._prev = self._prev, {}
        refused = set()
        for raw, (kind, bounds, values, exemplars) in current.items():
            prev, seen = prev_all.get(raw, (None, frozenset()))
            self._prev[raw] = (values, frozenset(exemplars))
            delta = increase(kind, prev, values, first_sample=not self._sampled)
            if delta is None:
                continue
            key = (raw[0], _track_labels(kind, raw[1]))
            if key not in self._tracks and kind != GAUGE and not any(delta):
                continue  # nothing happened: a silent series does not take (or take back) a slot
            track = self._track(key, kind, bounds, now)
            if track is None:
                refused.add(key)
            if track is None or track.bounds != bounds:
                continue
            acc = increases.setdefault(key, [0.0] * track.width)
            for i, v in enumerate(delta):
                acc[i] += v
            new_exemplars.setdefault(key, []).extend((ex[3], ex[2], ex[0], ex[1]) for ex in exemplars if ex not in seen)
        with self._lock:
            slot = self._head
            self._times[slot] = now
            for key, track in list(self._tracks.items()):
                row = increases.get(key)
                w = track.width
                track.rows[slot * w : (slot + 1) * w] = array("f", row if row is not None else [_NAN] * w)
                if row is not None and (track.kind == GAUGE or any(row)):
                    track.last_active = now
                if track.exemplars:  # the interval's slowest exemplar, or none
                    slowest = max(new_exemplars.get(key, ()), key=lambda e: e[1], default=None)
                    _write_exemplar(track.exemplars, slot, slowest)
                if now - track.last_active > self.points * self.step_s:
                    del self._tracks[key]  # silent for the whole ring: free its slot
            self._head = (slot + 1) % self.points
            self.dropped_tracks = len(refused)
            self._sampled = True

    def _track(self, key: tuple[str, Labels], kind: str, bounds: tuple[float, ...], now: float) -> Track | None:
        track = self._tracks.get(key)
        if track is None:
            if len(self._tracks) >= self.max_tracks:
                return None
            width = len(bounds) + 2 if kind == HISTOGRAM else 1
            rows = array("f", [_NAN]) * (self.points * width)
            exemplars = bytearray(self.points * _EXEMPLAR.size if kind == HISTOGRAM else 0)
            track = Track(key[0], kind, key[1], bounds, width, rows, exemplars)
            track.last_active = now
            with self._lock:
                self._tracks[key] = track
        return track

    # ---------------------------------------------------------------- queries
    def times(self, since: float | None = None) -> list[tuple[int, float]]:
        """(slot, unix time) of the samples held, oldest first, optionally only those after ``since``."""
        with self._lock:
            order = [(self._head + i) % self.points for i in range(self.points)]
            return [
                (s, self._times[s]) for s in order if not math.isnan(self._times[s]) and self._times[s] > (since or 0)
            ]

    def query(
        self,
        family: str,
        where: dict[str, str] | None = None,
        by: tuple[str, ...] | None = (),
        since: float | None = None,
    ) -> tuple[list[float], list[Group]]:
        """Sample times and, per distinct value of the ``by`` labels (``None``: every track apart), the
        summed rows of the matching tracks."""
        where = where or {}
        slots = self.times(since)
        groups: dict[tuple[str, ...], Group] = {}
        with self._lock:
            tracks = [t for (f, _), t in self._tracks.items() if f == family]
            for t in tracks:
                labels = dict(t.labels)
                if any(labels.get(k) != v for k, v in where.items()):
                    continue
                names = tuple(labels) if by is None else by
                gkey = tuple(labels.get(k, "") for k in names) if by is not None else t.labels
                g = groups.get(gkey)
                if g is None:
                    glabels = dict(zip(names, (labels.get(k, "") for k in names), strict=True))
                    g = groups[gkey] = Group(glabels, t.bounds, [None] * len(slots), [])
                elif g.bounds != t.bounds:
                    continue
                _add_rows(g, t, slots)
                g.exemplars.extend(ex for ex in map(t.exemplar, (slot for slot, _ in slots)) if ex is not None)
        for g in groups.values():
            g.exemplars.sort()
        return [ts for _, ts in slots], sorted(groups.values(), key=lambda g: tuple(g.labels.values()))

    def label_values(self, family: str, names: tuple[str, ...]) -> list[tuple[str, ...]]:
        """Distinct values of ``names`` among a family's tracks (e.g. the models seen)."""
        with self._lock:
            return sorted(
                {tuple(dict(t.labels).get(n, "") for n in names) for (f, _), t in self._tracks.items() if f == family}
            )

    def describe(self) -> dict[str, Any]:
        return {
            "step_s": self.step_s,
            "points": self.points,
            "tracks": len(self._tracks),
            "max_tracks": self.max_tracks,
            "dropped_tracks": self.dropped_tracks,
            "bytes": self.nbytes,
            "max_bytes": self.max_bytes,
        }


def _track_labels(kind: str, labels: Labels) -> Labels:
    """Counters and histograms add up across workers; gauges (utilisation, memory) stay per source."""
    drop = _SCOPE_LABELS if kind == GAUGE else _SCOPE_LABELS | _SOURCE_LABELS
    return tuple((k, v) for k, v in labels if k not in drop)


def increase(
    kind: str, prev: tuple[float, ...] | None, values: tuple[float, ...], *, first_sample: bool
) -> tuple[float, ...] | None:
    """What happened since the last sample. A series first seen after the first sample is new since then,
    so all of it counts; on the very first sample its past is unknown. A decrease is a reset (``rate``)."""
    if kind == GAUGE:
        return values
    if prev is None:
        return None if first_sample else values
    counts = values[:-1] if kind == HISTOGRAM else values  # a histogram's sum may fall (negative values)
    if len(prev) != len(values) or any(v < p for v, p in zip(counts, prev, strict=False)):
        return values
    return tuple(v - p for v, p in zip(values, prev, strict=True))


def _write_exemplar(ring: bytearray, slot: int, ex: Exemplar | None) -> None:
    offset = slot * _EXEMPLAR.size
    if ex is None:
        ring[offset : offset + _EXEMPLAR.size] = _NO_EXEMPLAR
    else:
        _EXEMPLAR.pack_into(ring, offset, ex[0], ex[1], bytes.fromhex(ex[2]), bytes.fromhex(ex[3]))


def _add_rows(group: Group, track: Track, slots: list[tuple[int, float]]) -> None:
    w, rows = track.width, track.rows
    for i, (slot, _) in enumerate(slots):
        row = rows[slot * w : (slot + 1) * w]
        if math.isnan(row[0]):
            continue
        acc = group.rows[i]
        if acc is None:
            group.rows[i] = list(row)
        else:
            for j, v in enumerate(row):
                acc[j] += v
