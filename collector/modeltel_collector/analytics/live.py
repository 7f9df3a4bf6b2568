"""The detectors in the running collector: fed by ingest and the metric store, published as metrics (and
alerts).

Why a hand-over from ingest: the ingest worker already reads every span's attributes, so it hands over
what the detectors need of each prediction and feedback span (``facts.Prediction``, ``facts.Feedback``,
built by ``process.spanmetrics._add_fact``) in a bounded deque; the analytics thread drains it on each
poll, never decodes a span again, and never slows ingest (when it falls behind, the oldest facts go,
counted as ``analytics_backlog`` drops). Confidence is not on spans: each poll takes, per model version,
what the ``model_prediction_confidence`` histogram in the metric store gained since the last poll
(``MetricStore.histograms``, summed over the processes that send it), stamped with the poll's time
(``facts.Confidence``). Facts are fed to the engine ``lag_s`` after their timestamp, in time order
(exports from several processes arrive out of order by up to their batch delay); one later than that is
skipped and counted as an ``analytics_late`` drop (an exporter whose batch delay exceeds ``lag_s``
shows there). Results are set in the metric store as gauges (``MetricStore.set_gauges``, no OTLP
round trip), so /metrics serves them with no code of its own; they have a budget of their own
(``budget.ModelBudget``), outside the applications' ``max_series``, and a model version silent for
``staleness_s`` is forgotten: its detector state, its join window and its gauges go. Events are kept in a
bounded list (oldest evicted, counted) beside the latest one per (model, version, check), which the
console's alerts API reads without walking the list. Scale-out: behind the otelcol gateway's
load-balancing exporter (routing_key: service), all of one service's spans and metrics reach one
collector, so each collector's detector state is complete for the models it owns and no state is shared;
a re-balance (a collector added or lost) starts the moved models' reference learning afresh on their new
owner.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Protocol

import numpy as np

from modeltel import taxonomy as tx
from modeltel_collector.config import Config
from modeltel_collector.facts import Confidence, Fact, Feedback
from modeltel_collector.stats import Stats
from modeltel_collector.store.history import increase
from modeltel_collector.store.metrics import COUNTER, GaugePoint, MetricStore
from modeltel_collector.translate import label_name

from .alerting import AlertmanagerPoster
from .budget import Key, ModelBudget
from .detectors import CONFIDENCE_BOUNDS, Result
from .engine import Engine, Event
from .joiner import LabelJoiner
from .keeper import BaselineKeeper
from .settings import CHECKS, Settings

log = logging.getLogger(__name__)
POLL_S, LAG_S = 2.0, 10.0  # LiveAnalytics' defaults: how often it polls, how long it waits for stragglers
_CONFIDENCE = tx.PREDICTION_CONFIDENCE.prometheus_name
_MODEL, _VERSION = label_name(tx.ATTR_MODEL_NAME), label_name(tx.ATTR_MODEL_VERSION)
_JOB, _SCOPE = "modeltel-analytics", "modeltel.analytics"  # who the gauges are from, on /metrics
_BY_TIME = attrgetter("time")
MAX_PENDING = 100_000  # facts waiting lag_s for stragglers; beyond, the oldest go (counted as analytics_backlog)
MAX_EVENTS = 10_000  # events kept for readers (each ~1 KB); the latest per (model, version, check) is kept apart


class AnalyticsDeps(Protocol):
    """What the detectors read of the collector's ``wiring.Deps``."""

    config: Config
    facts: deque[Fact] | None  # None when the detectors are off
    metrics: MetricStore
    stats: Stats
    stopped: threading.Event  # set once the collector begins to stop


class LiveAnalytics:
    """Drains ingest's facts every ``interval_s``, runs the engine, publishes gauges, hands events on."""

    def __init__(
        self,
        facts: deque[Fact],
        metrics: MetricStore,
        settings: Settings | None = None,
        *,
        interval_s: float = POLL_S,
        lag_s: float = LAG_S,
        on_events: Callable[[list[Event]], None] | None = None,
        keeper: BaselineKeeper | None = None,
        budget: ModelBudget | None = None,
        stats: Stats | None = None,
    ) -> None:
        self.facts, self.metrics = facts, metrics
        self.engine = Engine(settings)
        self.interval_s, self.lag_s, self.on_events, self.keeper = interval_s, lag_s, on_events, keeper
        self.started_ns = time.time_ns()
        self.confidence_seen: dict[tuple, tuple[int, ...]] = {}  # histogram series -> its counts at the last poll
        self.pending: list[Fact] = []  # facts not yet fed: they wait lag_s for stragglers
        self.joiner = LabelJoiner()
        self.late = 0
        self.stats = stats  # where facts dropped here are counted (modeltel_collector_dropped_total)
        self.budget = budget or ModelBudget(Config.analytics_max_models, Config.staleness_s)  # the defaults
        self.events: deque[Event] = deque(maxlen=MAX_EVENTS)  # newest last
        self.events_evicted = 0
        self.latest: dict[tuple[str, str, str], Event] = {}  # (model, version, check) -> its latest event
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the poll thread, and tests or the CLI calling poll() themselves
        self._thread: threading.Thread | None = None

    def current(self) -> list[dict]:
        """The latest event of each (model, version, check): what fires now, and what resolved last."""
        with self._lock:
            latest = list(self.latest.values())
        return [e.as_dict() for e in latest]

    def record(self, events: Iterable[Event]) -> None:
        """Keep ``events`` (as a poll does; tests hand the console a detection this way)."""
        with self._lock:
            self._record(events)

    def _record(self, events: Iterable[Event]) -> None:
        for e in events:
            if len(self.events) == self.events.maxlen:
                self.events_evicted += 1
            self.events.append(e)
            self.latest[(e.model, e.version, e.check)] = e

    def start(self, stopped: threading.Event | None = None) -> LiveAnalytics:
        """Poll on a daemon thread until ``stop()``, or until ``stopped`` (the collector's own) is set."""
        self._owner_stopped = stopped or threading.Event()
        self._thread = threading.Thread(target=self._run, name="modeltel-analytics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s) and not self._owner_stopped.is_set():
            try:
                self.poll(time.time())
            except Exception:  # the analytics must never take the collector down
                log.exception("analytics poll failed; will retry")

    def poll(self, now: float) -> list[Event]:
        """Take new facts, feed those older than ``now - lag_s`` in time order, publish; returns new events."""
        with self._lock:
            return self._poll(now)

    def _poll(self, now: float) -> list[Event]:
        facts = self.facts
        self.pending += [facts.popleft() for _ in range(len(facts))]  # only this thread takes from it
        self.pending += self._confidence_increases(now)
        horizon = now - self.lag_s
        ready = sorted((f for f in self.pending if f.time <= horizon), key=_BY_TIME)
        self.pending = [f for f in self.pending if f.time > horizon]
        if len(self.pending) > MAX_PENDING:  # ingest outruns lag_s x the hand-over: keep the newest
            self.pending.sort(key=_BY_TIME)
            self._count("analytics_backlog", len(self.pending) - MAX_PENDING)
            del self.pending[:-MAX_PENDING]
        refused = self.budget.refused_facts
        for key in self.budget.stale(now):  # before feeding: a silent version's place goes to a new one
            self._forget(key)
        events: list[Event] = []
        late = 0
        for item in ready:
            try:
                events += self._feed(item, now)
            except ValueError:  # older than a window already closed: after lag_s, it would rewrite history
                late += 1
        self.late += late
        self._count("analytics_late", late)
        events += self.engine.advance(horizon)
        self._count("analytics_over_budget", self.budget.refused_facts - refused)
        self._record(events)
        if self.keeper is not None:
            self.keeper.update(self.engine, horizon)
        self.metrics.set_gauges(_JOB, _SCOPE, self.gauges(now), now, max_series=self.budget.max_series)
        if self.on_events is not None:  # every poll, so open alerts can be re-sent
            self.on_events(events)
        return events

    def _count(self, what: str, n: int) -> None:
        if n and self.stats is not None:
            self.stats.inc("modeltel_collector_dropped", what, n)

    def _forget(self, key: Key) -> None:
        """Drop a silent model version's detector state, join window and latest events (its gauges go with
        the next ``set_gauges``, which no longer lists them)."""
        self.engine.models.pop(key, None)
        self.joiner.accuracy.pop(key, None)
        if self.keeper is not None:
            self.keeper.stable_since.pop(key, None)
        for check in CHECKS:
            self.latest.pop((*key, check), None)

    def _feed(self, fact: Fact, now: float) -> list[Event]:
        if isinstance(fact, Confidence):
            if not self.budget.admit((fact.model, fact.version), now):
                return []
            return self.engine.confidence(fact.time, fact.model, fact.version, fact.counts)
        if isinstance(fact, Feedback):
            events, joined = [], self.joiner.label(fact.prediction_id, fact.time, fact.correct, fact.label)
        elif self.budget.admit((fact.model, fact.version), now):
            events = self.engine.observe(
                fact.time, fact.model, fact.version, fact.latency_s, ok=fact.ok,
                ttft=fact.ttft_s, tpot=fact.tpot_s, output_tokens=fact.output_tokens,
            )  # fmt: skip
            pid = fact.prediction_id
            joined = self.joiner.prediction(pid, fact.model, fact.version, fact.value, fact.confidence) if pid else None
        else:
            return []
        if joined is not None:
            _, model, version, correct, confidence = joined
            if (model, version) in self.budget.last_seen:  # not one forgotten since its prediction
                confidence = math.nan if confidence is None else confidence  # unknown: no calibration
                events += self.engine.label(fact.time, model, version, correct=correct, confidence=confidence)
        return events

    def _confidence_increases(self, now: float) -> list[Confidence]:
        """What each model version's confidence histogram gained since the last poll. A series first seen
        counts whole only if it started after the analytics did: a process that outlived a collector restart
        would pour its whole past into one step. Histograms with other bucket bounds than the taxonomy's
        cannot be compared and are left out."""
        current = {
            labels: (h.start_ns, h.counts)
            for labels, h in self.metrics.histograms(_CONFIDENCE).items()
            if h.bounds == CONFIDENCE_BOUNDS
        }
        seen, self.confidence_seen = self.confidence_seen, {labels: counts for labels, (_, counts) in current.items()}
        totals: dict[tuple[str, str], np.ndarray] = {}
        for labels, (start_ns, counts) in current.items():
            if labels not in seen and start_ns < self.started_ns:
                continue
            grew = np.asarray(increase(COUNTER, seen.get(labels), counts, first_sample=False), np.int64)
            if grew.any():
                names = dict(labels)
                key = (names.get(_MODEL, ""), names.get(_VERSION) or tx.UNKNOWN_VALUE)
                totals[key] = totals.get(key, 0) + grew
        return [Confidence(now, model, version, c) for (model, version), c in totals.items() if model]

    def gauges(self, now: float) -> list[GaugePoint]:
        """The detectors' state as gauges: per model version its online accuracy, its estimated accuracy and
        band, per check the open alarm's severity (one series per severity), p-value, statistic and effect
        size, and the baseline's state."""
        points: list[GaugePoint] = []
        for (model, version), acc in self.joiner.accuracy.items():
            if acc.labels and (model, version) in self.budget.last_seen:
                attrs = {tx.ATTR_MODEL_NAME: model, tx.ATTR_MODEL_VERSION: version}
                points.append(_point(tx.ONLINE_ACCURACY, acc.right / len(acc.labels), attrs))
        for (model, version), w in self.engine.models.items():
            if self.keeper is not None:
                points += self._baseline_points(model, version, now)
            points += _estimate_points(model, version, w.results.get("estimated_accuracy_drop"))
            for check in CHECKS:
                r = w.results.get(check)
                ep = w.episodes.get(check)
                base = {tx.ATTR_MODEL_NAME: model, tx.ATTR_MODEL_VERSION: version, tx.ATTR_CHECK: check}
                for severity in ("warning", "critical"):  # one series per severity, 1 for the open alarm's
                    on = 1.0 if ep is not None and ep.severity.label == severity else 0.0
                    points.append(_point(tx.DEGRADATION_DETECTED, on, {**base, tx.ATTR_SEVERITY: severity}))
                for inst, value in (
                    (tx.DEGRADATION_P_VALUE, r and r.p_value),
                    (tx.DEGRADATION_STATISTIC, r and r.statistic),
                    (tx.DEGRADATION_EFFECT_SIZE, r and r.effect_size),
                ):
                    if value is not None and math.isfinite(value):
                        points.append(_point(inst, float(value), base))
        return points

    def _baseline_points(self, model: str, version: str, now: float) -> list[GaugePoint]:
        status, age = self.keeper.status(model, version, now)
        attrs = {tx.ATTR_MODEL_NAME: model, tx.ATTR_MODEL_VERSION: version}
        points = [_point(tx.BASELINE_STALE, 0.0 if status == "ok" else 1.0, attrs)]
        return points if age is None else [*points, _point(tx.BASELINE_AGE, age, attrs)]


def start_on(deps: AnalyticsDeps) -> LiveAnalytics:
    """The detectors on a collector's hand-over and metric store, configured from its config, polling until
    the collector stops (``analytics.attach``)."""
    cfg = deps.config
    url = cfg.alertmanager_url
    keeper = BaselineKeeper(cfg.baseline_path, stable_s=cfg.baseline_stable_s) if cfg.baseline_path else None
    poster = (
        AlertmanagerPoster(
            url, runbook_base=cfg.runbook_base_url, grafana_url=cfg.grafana_url, cap=deps.metrics.label_cap
        )
        if url
        else None
    )
    live = live_for(cfg, deps.facts, deps.metrics, on_events=poster, keeper=keeper, stats=deps.stats)
    budget = live.budget
    for name, help_, read in (
        ("analytics_models", "Model versions the degradation detectors analyse.", lambda: len(budget.last_seen)),
        (
            "analytics_refused_models",
            "Distinct model versions not analysed for analytics_max_models (see /healthz for their names).",
            lambda: budget.refused_versions,
        ),
        ("analytics_events_evicted", "Detector events evicted from the kept list.", lambda: live.events_evicted),
    ):
        deps.stats.gauge("modeltel_collector_" + name, help_, read)
    return live.start(stopped=deps.stopped)


def live_for(cfg: Config, facts: deque[Fact], metrics: MetricStore, **kwargs) -> LiveAnalytics:
    """A LiveAnalytics whose windows, poll period and lag are scaled by ``cfg.analytics_time_scale``."""
    scale = cfg.analytics_time_scale
    budget = ModelBudget(cfg.analytics_max_models, cfg.staleness_s)
    return LiveAnalytics(
        facts,
        metrics,
        Settings().scaled(scale),
        interval_s=POLL_S * scale,
        lag_s=LAG_S * scale,
        budget=budget,
        **kwargs,
    )


def _estimate_points(model: str, version: str, result: Result | None) -> list[GaugePoint]:
    """The latest estimated_accuracy_drop evaluation's estimate and 95 % band (none before one was made:
    too few calibration labels or confidences)."""
    details = result.details if result is not None else {}
    if "estimate" not in details:
        return []
    attrs = {tx.ATTR_MODEL_NAME: model, tx.ATTR_MODEL_VERSION: version}
    values = (details["estimate"], details["low"], details["high"])
    return [_point(i, float(v), attrs) for i, v in zip(tx.ESTIMATED_ACCURACY_INSTRUMENTS, values, strict=True)]


def _point(inst: tx.Instrument, value: float, attrs: dict[str, str]) -> GaugePoint:
    return GaugePoint(inst.prometheus_name, inst.description, attrs, value)
