"""The merged metric state behind ``/metrics``: one series per (family, resource, attributes).

Delta points are accumulated into cumulative state, cumulative points replace it, so Prometheus always
scrapes cumulative counters and histograms whatever temporality the SDK chose. Series are grouped by
resource (``job``/``instance``) so workers of one service stay distinct, and a resource that stops sending
is forgotten after ``staleness_s``. The number of series is capped so memory stays bounded, and so are
the span-derived series of each resource: labels read from its spans are the client's to rotate (a new
model name on every span), so past ``derived_max_series`` a new series' span labels become ``_other``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from modeltel_collector.labelcap import LabelCap
from modeltel_collector.latency_bounds import LATENCY_FAMILIES, check_bounds
from modeltel_collector.store import handover
from modeltel_collector.store.labels import Labels, ResourceKey, add_label, point_labels, resource_identity
from modeltel_collector.store.series import (
    ExpHistogramSeries,
    HistogramSeries,
    NumberSeries,
    Series,
    merge_exp_histogram,
    merge_histogram,
)
from modeltel_collector.store.state import Family, GaugePoint, HistogramState, IngestResult, ResourceState
from modeltel_collector.translate import label_name, sample_names
from modeltel_collector.validate import histogram_problem, metric_name

DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

Observation = tuple[int, bytes, bytes, int]  # a span-derived histogram value: (value, trace_id, span_id, end_ns)
_log = logging.getLogger("modeltel_collector")


def _count_points(rm) -> int:
    return sum(
        len(getattr(m, kind).data_points)
        for sm in rm.scope_metrics
        for m in sm.metrics
        if (kind := m.WhichOneof("data"))
    )


def _scope_labels(res: ResourceState, sm, cap: LabelCap) -> Labels:
    """The labels every point of one scope's metrics starts from: the resource's, then the scope's."""
    base = list(res.labels)
    if sm.scope.name:
        base.append(("otel_scope_name", cap(sm.scope.name)))
    if sm.scope.version:
        base.append(("otel_scope_version", cap(sm.scope.version)))
    return tuple(base)


class MetricStore:
    """Thread-safe merged metric state; ``ingest`` runs on the ingest thread, ``collect`` on scrapes."""

    def __init__(
        self,
        staleness_s: float = 300.0,
        max_series: int = 100_000,
        *,
        label_cap: LabelCap | None = None,
        derived_max_series: int = 1000,
        on_overflow: Callable[[str, float], None] | None = None,
        on_refused: Callable[[float], None] | None = None,
    ) -> None:
        self.staleness_s = staleness_s
        self.max_series = max_series
        self.derived_max_series = derived_max_series  # per resource; then span labels become "_other"
        self.on_overflow = on_overflow  # (family, observations) recorded under "_other": the counter
        self.on_refused = on_refused  # (observations) span-derived, refused by max_series: the counter
        self.label_cap = label_cap or LabelCap()  # every label value is cut to its byte bound
        self._lookahead_cap = self.label_cap.silent()  # points_over_limit's: the merge counts the cuts
        self.lock = threading.Lock()
        self.families: dict[str, Family] = {}
        self.resources: dict[ResourceKey, ResourceState] = {}
        self.n_series = 0
        self.producers: dict[ResourceKey, ResourceState] = {}  # in-process producers: outside max_series
        self._claimed: dict[str, str] = {}  # exposed name (family or sample) -> the family that owns it

    # ---------------------------------------------------------------- resources
    def touch_resource(self, resource: Resource, now: float) -> ResourceState | None:
        """The resource's state; None for a new resource while the series limit is reached. Caller holds
        ``lock``.

        A resource is a series too (its ``target_info`` line, and memory for its attributes), so distinct
        resources cannot grow the store and the scrape past ``max_series`` either.
        """
        return self._resource(*resource_identity(resource, self.label_cap), now)

    def _resource(self, key: ResourceKey, info: Labels, now: float) -> ResourceState | None:
        state = self.resources.get(key)
        if state is None:
            if self.n_series >= self.max_series:
                return None
            self.n_series += 1
            state = self.resources[key] = ResourceState(key, (("instance", key[1]), ("job", key[0])), info, now)
        else:
            state.info, state.last_seen = info, now
        return state

    def _family(self, name: str, type_: str, unit: str, help_: str) -> Family | None:
        """The family, created on first use; None when its exposed names clash with another family's.

        Clashes are by every exposed name, not just the family's: a counter ``x_bucket`` would emit the
        samples of histogram ``x``, and Prometheus refuses a page with one name in two families.
        """
        fam = self.families.get(name)
        if fam is None:
            names = sample_names(name, type_)
            if any(self._claimed.get(n, name) != name for n in names):
                return None
            fam = self.families[name] = Family(name, type_, unit, help_)
            self._claimed.update(dict.fromkeys(names, name))
        elif fam.type != type_:
            return None  # same Prometheus name, different type: keep the first, reject the other
        if help_ and not fam.help:
            fam.help = help_
        return fam

    def _series(self, fam: Family, labels: Labels, res: ResourceState, factory: type) -> Series | None:
        s = fam.series.get(labels)
        if s is None or not isinstance(s, factory):
            if s is None and self.n_series >= self.max_series:
                return None
            if s is None:
                self.n_series += 1
            s = fam.series[labels] = factory()
            fam.owner[labels] = res.key
            res.keys.add((fam.name, labels))
        return s

    # ---------------------------------------------------------------- OTLP ingest
    def ingest(self, request, now: float | None = None) -> IngestResult:
        """Merge an ExportMetricsServiceRequest; returns accepted and rejected point counts."""
        now = time.time() if now is None else now
        result = IngestResult()
        with self.lock:
            for rm in request.resource_metrics:
                res = self.touch_resource(rm.resource, now)
                if res is None:
                    result.rejected += _count_points(rm)
                    result.reasons.add(f"series limit {self.max_series} reached (new resource)")
                    continue
                for sm in rm.scope_metrics:
                    base = _scope_labels(res, sm, self.label_cap)
                    for m in sm.metrics:
                        self._ingest_metric(m, base, res, result)
        return result

    def _ingest_metric(self, m, base: Labels, res: ResourceState, result: IngestResult) -> None:
        kind = m.WhichOneof("data")
        if kind == "sum":
            data = m.sum
            type_ = COUNTER if data.is_monotonic else GAUGE
        elif kind == "gauge":
            data, type_ = m.gauge, GAUGE
        elif kind in ("histogram", "exponential_histogram"):
            data, type_ = getattr(m, kind), HISTOGRAM
        else:  # summaries (legacy Prometheus-style) and metrics without data: validate counts them the same
            result.rejected += max(1, len(getattr(m, kind).data_points) if kind else 0)
            result.reasons.add(f"unsupported metric type {kind} ({m.name})")
            return
        delta = kind != "gauge" and data.aggregation_temporality == DELTA
        name, problem = metric_name(m)
        fam = None if problem else self._family(name, type_, m.unit, m.description)
        if fam is None:
            result.rejected += len(data.data_points)
            result.reasons.add(problem or f"{m.name}: its Prometheus names clash with an existing family's")
            return
        if res.key not in fam.direct_resources:
            self._hand_over(fam, res)
        accepted = invalid = 0
        for p in data.data_points:
            labels = point_labels(base, p.attributes, self.label_cap)
            if kind in ("sum", "gauge"):
                s = self._own_series(fam, labels, res, NumberSeries)
                if s is None:
                    break
                v = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                s.value = s.value + v if delta else v
            elif kind == "histogram":
                if problem := histogram_problem(p):
                    result.rejected += 1
                    result.reasons.add(f"{m.name}: {problem}")
                    invalid += 1
                    continue
                s = self._own_series(fam, labels, res, HistogramSeries)
                if s is None:
                    break
                merge_histogram(s, p, delta)
                if fam.name in LATENCY_FAMILIES:
                    check_bounds(fam.name, p.explicit_bounds, res, result)
            else:
                s = self._own_series(fam, labels, res, ExpHistogramSeries)
                if s is None:
                    break
                merge_exp_histogram(s, p, delta)
            s.start_ns = p.start_time_unix_nano or s.start_ns
            if fam.held and labels in fam.held:
                handover.release(fam, labels)
            accepted += 1
        result.points += accepted
        if capped := len(data.data_points) - accepted - invalid:
            result.rejected += capped
            result.reasons.add(f"series limit {self.max_series} reached")

    def _hand_over(self, fam: Family, res: ResourceState) -> None:
        """The app now sends this family itself: spans derive no more of it, so nothing is counted twice,
        and its derived series are held until its own reach them (``store.handover``)."""
        fam.direct_resources.add(res.key)
        res.derived -= handover.hold_derived(fam, res.key, res.last_seen)

    def _own_series(self, fam: Family, labels: Labels, res: ResourceState, factory: type) -> Series | None:
        """Where a point of the app's own goes: aside while its labels' derived series is held."""
        held = fam.held.get(labels) if fam.held else None
        return self._series(fam, labels, res, factory) if held is None else held.series_for(factory)

    # ---------------------------------------------------------------- span-derived updates
    def refuse_derived(self, observations: int) -> None:
        """Count span-derived observations ``max_series`` left no room for (``on_refused``)."""
        if self.on_refused is not None:
            self.on_refused(observations)

    def observe_derived(
        self,
        resource: ResourceState,
        family: str,
        type_: str,
        unit: str,
        help_: str,
        labels: Labels,
        value: float | list[Observation],
        buckets: tuple[float, ...] = (),
        *,
        overflow: Callable[[Labels], Labels],
        per_unit: float = 1e9,
    ) -> bool:
        """Add span-derived data unless the resource sends the family itself. Caller holds ``lock``.

        Counters take an increment; histograms take (value, trace_id, span_id, end_ns) observations, the
        value in ``1 / per_unit`` of the family's unit (ns of a seconds histogram; tokens: ``per_unit=1``),
        and the last observation in each bucket becomes that bucket's exemplar. A new series of a resource
        that holds ``derived_max_series`` already goes under ``overflow(labels)``: its overflow series,
        counted by ``on_overflow``; data ``max_series`` leaves no room for is refused, counted by ``on_refused``.
        """
        fam = self._family(family, type_, unit, help_)
        if fam is None or resource.key in fam.direct_resources:
            return False
        labels = tuple((k, self.label_cap(v)) for k, v in labels)  # span attributes: model, version, stage
        overflowed = labels not in fam.series and resource.derived >= self.derived_max_series
        if overflowed:
            labels = overflow(labels)
        new = labels not in fam.series
        s = self._series(fam, labels, resource, NumberSeries if type_ == COUNTER else HistogramSeries)
        n = value if type_ == COUNTER else len(value)
        if s is None:  # counted once, as refused: not also as recorded under _other
            self.refuse_derived(n)
            return False
        if overflowed:
            self._overflow(resource, family, n)
        resource.derived += new
        if type_ == COUNTER:
            s.value += value
        else:
            s.observe(buckets, value, per_unit)
        fam.derived.add(labels)
        return True

    def _overflow(self, res: ResourceState, family: str, n: float) -> None:
        """Count ``n`` observations of ``family`` going to ``res``'s overflow series (``on_overflow``); the
        first of a resource logs a warning."""
        if not res.overflowed:
            res.overflowed = True
            _log.warning(
                "modeltel collector: job=%r instance=%r derives %d series from its spans (derived_max_series); "
                "the span labels of its new series are recorded as _other from now on",
                res.key[0], res.key[1], res.derived,
            )  # fmt: skip
        if self.on_overflow is not None:
            self.on_overflow(family, n)

    def points_over_limit(self, request) -> int:
        """Points of ``request`` the series limit will refuse, for the OTLP partial_success answer: points
        of series the store does not hold yet, beyond the room left (a new resource takes one more, its
        ``target_info``). Read without the lock, before the ingest worker merges: exact unless another
        request fills the store in between; the merge counts the drops themselves."""
        room = self.max_series - self.n_series
        if room >= sum(_count_points(rm) for rm in request.resource_metrics) + len(request.resource_metrics):
            return 0  # the common case: far from the limit, nothing to look up
        over = 0
        for rm in request.resource_metrics:  # in the order the merge takes them
            res = self.resources.get(resource_identity(rm.resource, self._lookahead_cap)[0])
            if res is None:
                if room < 1:  # the merge refuses the whole resource
                    over += _count_points(rm)
                    continue
                room, fresh = room - 1, _count_points(rm)
            else:
                fresh = sum(
                    self._new_series(m, _scope_labels(res, sm, self._lookahead_cap))
                    for sm in rm.scope_metrics
                    for m in sm.metrics
                )
            taken = min(max(room, 0), fresh)
            room, over = room - taken, over + fresh - taken
        return over

    def _new_series(self, m, base: Labels) -> int:
        """How many points of metric ``m`` would start a series (0 for what validation refuses anyway)."""
        kind = m.WhichOneof("data")
        if kind not in ("sum", "gauge", "histogram", "exponential_histogram"):
            return 0
        name, problem = metric_name(m)
        if problem:
            return 0
        points = getattr(m, kind).data_points
        fam = self.families.get(name)
        if fam is None:
            return len(points)
        return sum(point_labels(base, p.attributes, self._lookahead_cap) not in fam.series for p in points)

    # ---------------------------------------------------------------- in-process readers and writers
    def histograms(self, family: str) -> dict[Labels, HistogramState]:
        """A copy of each explicit-bucket series of ``family``, taken under the lock (the detectors read
        the confidence histograms this way)."""
        with self.lock:
            fam = self.families.get(family)
            series = () if fam is None else fam.series.items()
            return {
                labels: HistogramState(s.start_ns, s.bounds, tuple(s.counts))
                for labels, s in series
                if isinstance(s, HistogramSeries)
            }

    def set_gauges(
        self, job: str, scope: str, points: list[GaugePoint], now: float | None = None, *, max_series: int
    ) -> IngestResult:
        """Replace the gauges of an in-process producer (the detectors), as resource ``job``, scope ``scope``,
        with ``points``: series it no longer lists go at once (a model version it forgot).

        Its series have a budget of their own, ``max_series`` (points beyond it are refused), and are not
        counted in the store's: nothing a producer publishes can refuse an application's data. Its
        families are the applications' (a name another family claims refuses the point)."""
        now = time.time() if now is None else now
        result = IngestResult()
        with self.lock:
            res = self.producers.get((job, ""))
            if res is None:
                res = self.producers[(job, "")] = ResourceState((job, ""), (("instance", ""), ("job", job)), (), now)
            res.last_seen = now
            base = (*res.labels, ("otel_scope_name", scope))
            wanted: dict[tuple[str, Labels], GaugePoint] = {}
            for p in points[:max_series]:
                labels = dict(base)
                for key, value in p.attributes.items():
                    add_label(labels, label_name(key), value, self.label_cap)
                wanted[(p.family, tuple(sorted(labels.items())))] = p
            result.rejected = len(points) - len(wanted)
            self._drop_keys(res, res.keys - wanted.keys())
            for (name, labels), p in wanted.items():
                fam = self._family(name, GAUGE, "", p.help)
                if fam is None:
                    result.rejected += 1
                    continue
                s = fam.series.get(labels)
                if not isinstance(s, NumberSeries):  # a producer's labels are its own: no app holds them
                    s = fam.series[labels] = NumberSeries()
                    fam.owner[labels] = res.key
                    res.keys.add((name, labels))
                s.value = p.value
                result.points += 1
            self._forget_empty_families()
        return result

    def _drop_keys(self, res: ResourceState, keys: Iterable[tuple[str, Labels]]) -> int:
        """Remove ``res``'s series ``keys``; returns how many existed. Caller holds ``lock``."""
        removed = 0
        for fam_name, labels in list(keys):
            res.keys.discard((fam_name, labels))
            fam = self.families.get(fam_name)
            if fam is not None and fam.series.pop(labels, None) is not None:
                removed += 1
                res.derived -= labels in fam.derived
                fam.owner.pop(labels, None)
                fam.derived.discard(labels)
                fam.held.pop(labels, None)
        return removed

    # ---------------------------------------------------------------- staleness
    def expire(self, now: float | None = None) -> int:
        """Forget resources silent for longer than the staleness time; returns series removed."""
        now = time.time() if now is None else now
        removed = 0
        with self.lock:
            for rkey, state in list(self.resources.items()):
                if now - state.last_seen <= self.staleness_s:
                    continue
                removed += self._drop_keys(state, state.keys)
                for fam in self.families.values():
                    fam.direct_resources.discard(rkey)
                del self.resources[rkey]
                self.n_series -= 1  # the resource's own (target_info)
            self.n_series -= removed
            removed += self._expire_held(now)
            self._forget_empty_families()
        return removed

    def _expire_held(self, now: float) -> int:
        removed = 0
        for fam in self.families.values():
            for labels in handover.expire_held(fam, now, self.staleness_s):
                self.resources[fam.owner.pop(labels)].keys.discard((fam.name, labels))
                removed += 1
        self.n_series -= removed
        return removed

    def _forget_empty_families(self) -> None:
        for name in [n for n, f in self.families.items() if not f.series]:
            self._forget_family(name)

    def _forget_family(self, name: str) -> None:
        fam = self.families.pop(name)
        for n in sample_names(name, fam.type):
            self._claimed.pop(n, None)
