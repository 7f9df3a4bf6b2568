"""Series state behind the metric store: numbers, explicit-bucket and exponential histograms.

Each type holds cumulative state and knows how to expose itself as cumulative buckets; ``merge_*`` folds
one OTLP data point in (delta points accumulate, cumulative points replace). Kept apart from the store so
the store is about families, resources and limits, and the arithmetic is readable on its own.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field

Exemplar = tuple[str, str, float, float]  # (trace_id hex, span_id hex, value, unix seconds)


@dataclass
class NumberSeries:
    value: float = 0.0
    start_ns: int = 0


@dataclass
class HistogramSeries:
    """Explicit-bucket histogram; exponential histograms are stored as ``ExpHistogramSeries``."""

    bounds: tuple[float, ...] = ()
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; len(bounds) + 1
    sum: float = 0.0
    count: int = 0
    start_ns: int = 0
    exemplars: dict[int, Exemplar] = field(default_factory=dict)  # bucket index -> latest exemplar

    def add_exemplar(self, ex: Exemplar) -> None:
        self.exemplars[bisect_left(self.bounds, ex[2])] = ex

    def frozen(self) -> HistogramSeries:
        """A copy that later merges do not change: taken under the store's lock so that a scrape can
        format it after letting go (formatting is most of a render's time)."""
        return HistogramSeries(self.bounds, self.counts[:], self.sum, self.count, self.start_ns, self.exemplars.copy())

    def buckets(self) -> list[tuple[float, int, Exemplar | None]]:
        """Cumulative (upper bound, count, exemplar) rows ending with +Inf."""
        out, running = [], 0
        for i, c in enumerate(self.counts):
            running += c
            out.append((self.bounds[i] if i < len(self.bounds) else math.inf, running, self.exemplars.get(i)))
        return out

    def observe(self, buckets: tuple[float, ...], observations, per_unit: float) -> None:
        """Add span-derived (value, trace_id, span_id, end_ns) observations, the value in ``1 / per_unit``
        of the unit; the last observation in each bucket becomes that bucket's exemplar."""
        if not self.counts:
            self.bounds, self.counts = buckets, [0] * (len(buckets) + 1)
        bounds, counts, last = self.bounds, self.counts, {}
        total = 0.0
        for obs in observations:
            v = obs[0] / per_unit
            i = bisect_left(bounds, v)
            counts[i] += 1
            total += v
            last[i] = obs
        self.sum += total
        self.count += len(observations)
        for i, (d, trace_id, span_id, end) in last.items():
            self.exemplars[i] = (trace_id.hex(), span_id.hex(), d / per_unit, end / 1e9)


@dataclass
class ExpHistogramSeries:
    """Base-2 exponential histogram; exposed as classic buckets at the populated bucket boundaries."""

    scale: int = 0
    zero_count: int = 0
    zero_threshold: float = 0.0
    positive: dict[int, int] = field(default_factory=dict)
    negative: dict[int, int] = field(default_factory=dict)
    sum: float = 0.0
    count: int = 0
    start_ns: int = 0
    exemplars: list[Exemplar] = field(default_factory=list)

    def frozen(self) -> ExpHistogramSeries:
        """A copy that later merges do not change (see ``HistogramSeries.frozen``)."""
        return ExpHistogramSeries(
            self.scale, self.zero_count, self.zero_threshold, self.positive.copy(), self.negative.copy(),
            self.sum, self.count, self.start_ns, self.exemplars[:],
        )  # fmt: skip

    def downscale(self, scale: int) -> None:
        if scale >= self.scale:
            return
        shift = self.scale - scale
        for side in ("positive", "negative"):
            merged: dict[int, int] = {}
            for idx, c in getattr(self, side).items():
                merged[idx >> shift] = merged.get(idx >> shift, 0) + c
            setattr(self, side, merged)
        self.scale = scale

    def _bound(self, index: int) -> float:
        """Upper bound of positive bucket ``index - 1``: 2**(index * 2**-scale), +Inf past float range."""
        exponent = index * 2.0**-self.scale
        return 2.0**exponent if exponent < 1024 else math.inf

    def buckets(self) -> list[tuple[float, int, Exemplar | None]]:
        rows: list[tuple[float, int]] = [(-self._bound(i), c) for i, c in self.negative.items() if c]
        if self.zero_count or not (self.positive or self.negative):
            rows.append((self.zero_threshold, self.zero_count))
        rows.extend((self._bound(i + 1), c) for i, c in self.positive.items() if c)
        rows = [(b, c) for b, c in rows if b != math.inf]  # counted in the +Inf bucket below
        rows.sort()
        out, running = [], 0
        bounds = [b for b, _ in rows]
        by_bucket: dict[int, Exemplar] = {}
        for ex in self.exemplars:
            by_bucket[bisect_left(bounds, ex[2])] = ex
        for i, (bound, c) in enumerate(rows):
            running += c
            out.append((bound, running, by_bucket.get(i)))
        out.append((math.inf, self.count, by_bucket.get(len(rows))))
        return out


Series = NumberSeries | HistogramSeries | ExpHistogramSeries


def exemplars(point) -> list[Exemplar]:
    """A data point's exemplars that carry a trace id, as (trace_id hex, span_id hex, value, unix seconds)."""
    out = []
    for ex in point.exemplars:
        if len(ex.trace_id) != 16:
            continue
        value = ex.as_double if ex.WhichOneof("value") == "as_double" else float(ex.as_int)
        out.append((ex.trace_id.hex(), ex.span_id.hex(), value, ex.time_unix_nano / 1e9))
    return out


def merge_histogram(s: HistogramSeries, p, delta: bool) -> None:
    bounds = tuple(p.explicit_bounds)  # consistent with the counts: see validate.histogram_problem
    counts = list(p.bucket_counts) or [0] * (len(bounds) + 1)
    if delta and s.bounds == bounds and s.counts:
        s.counts = [a + b for a, b in zip(s.counts, counts, strict=True)]
        s.sum += p.sum
        s.count += p.count
    else:
        if s.bounds != bounds:
            s.exemplars.clear()
        s.bounds, s.counts, s.sum, s.count = bounds, counts, p.sum, p.count
    for ex in exemplars(p):
        s.add_exemplar(ex)


def merge_exp_histogram(s: ExpHistogramSeries, p, delta: bool) -> None:
    if not delta or not s.count:
        s.scale, s.positive, s.negative = p.scale, {}, {}
        s.zero_count = s.count = 0
        s.sum = 0.0
    scale = min(s.scale, p.scale)
    s.downscale(scale)
    shift = p.scale - scale
    for side, buckets in (("positive", p.positive), ("negative", p.negative)):
        target = getattr(s, side)
        for i, c in enumerate(buckets.bucket_counts):
            if c:
                idx = (buckets.offset + i) >> shift
                target[idx] = target.get(idx, 0) + c
    s.zero_count += p.zero_count
    s.zero_threshold = max(s.zero_threshold, p.zero_threshold)
    s.sum += p.sum
    s.count += p.count
    s.exemplars = (s.exemplars + exemplars(p))[-16:]
