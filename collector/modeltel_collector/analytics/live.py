"""The detectors in the running collector: fed by ingest and the metric store, published as metrics (and
alerts).

Why a hand-over from ingest: the ingest worker already reads every span's attributes, so it hands over
what the detectors need of each prediction and feedback span (``process.spanmetrics._add_fact``) in a
bounded deque; the analytics thread drains it on each poll, never decodes a span again, and never slows
ingest (when it falls behind, the oldest facts go, counted as ``analytics_backlog`` drops). Confidence is
not on spans: each poll takes, per model version, what the ``model_prediction_confidence`` histogram in
the metric store gained since the last poll (summed over the processes that send it), stamped with the
poll's time. Facts are fed to the engine ``lag_s`` after their timestamp, in time order (exports from
several processes arrive out of order by up to their batch delay); one later than that is counted and
skipped. Results are merged into the metric store as one OTLP gauge request, so /metrics serves them
with no code of its own. Scale-out: behind the otelcol gateway's load-balancing exporter (routing_key:
service), all of one service's spans and metrics reach one collector, so each collector's detector
state is complete for the models it owns and no state is shared; a re-balance (a collector added or
lost) starts the moved models' reference learning afresh on their new owner.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from modeltel import taxonomy as tx
from modeltel_collector.store.history import increase
from modeltel_collector.store.metrics import COUNTER
from modeltel_collector.store.series import HistogramSeries
from modeltel_collector.translate import label_name

from .alerting import AlertmanagerPoster
from .detectors import CONFIDENCE_BOUNDS
from .engine import Engine, Event
from .joiner import LabelJoiner
from .keeper import BaselineKeeper
from .settings import CHECKS, Settings

log = logging.getLogger(__name__)
POLL_S, LAG_S = 2.0, 10.0  # LiveAnalytics' defaults: how often it polls, how long it waits for stragglers
_CONFIDENCE = tx.PREDICTION_CONFIDENCE.prometheus_name
_MODEL, _VERSION = label_name(tx.ATTR_MODEL_NAME), label_name(tx.ATTR_MODEL_VERSION)


class LiveAnalytics:
    """Drains ingest's facts every ``interval_s``, runs the engine, publishes gauges, hands events on."""

    def __init__(
        self,
        facts: deque,
        metrics,
        settings: Settings | None = None,
        *,
        interval_s: float = POLL_S,
        lag_s: float = LAG_S,
        on_events: Callable[[list[Event]], None] | None = None,
        keeper: BaselineKeeper | None = None,
    ) -> None:
        self.facts, self.metrics = facts, metrics
        self.engine = Engine(settings)
        self.interval_s, self.lag_s, self.on_events, self.keeper = interval_s, lag_s, on_events, keeper
        self.started_ns = time.time_ns()
        self.confidence_seen: dict[tuple, tuple[int, ...]] = {}  # histogram series -> its counts at the last poll
        self.pending: list[tuple] = []  # facts not yet fed: they wait lag_s for stragglers
        self.joiner = LabelJoiner()
        self.late = 0
        self.events: list[Event] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the poll thread, and tests or the CLI calling poll() themselves
        self._thread: threading.Thread | None = None

    def current(self) -> list[dict]:
        """The latest event of each (model, version, check): what fires now, and what resolved last."""
        with self._lock:
            latest = {(e.model, e.version, e.check): e for e in self.events}
        return [e.as_dict() for e in latest.values()]

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
        ready = sorted((r for r in self.pending if r[1] <= horizon), key=lambda r: r[1])
        self.pending = [r for r in self.pending if r[1] > horizon]
        events: list[Event] = []
        for item in ready:
            try:
                events += self._feed(item)
            except ValueError:
                self.late += 1
        events += self.engine.advance(horizon)
        self.events += events
        if self.keeper is not None:
            self.keeper.update(self.engine, horizon)
        if self.engine.models:
            self.metrics.ingest(self.gauges(now), now)
        if self.on_events is not None:  # every poll, so open alerts can be re-sent
            self.on_events(events)
        return events

    def _feed(self, item: tuple) -> list[Event]:
        if item[0] == "request":
            _, t, model, version, latency, ok, pid, value = item
            events = self.engine.observe(t, model, version, latency, ok=ok)
            joined = self.joiner.prediction(pid, model, version, value) if pid else None
        elif item[0] == "confidence":
            _, t, model, version, counts = item
            return self.engine.confidence(t, model, version, counts)
        else:
            _, t, pid, correct, label = item
            events, joined = [], self.joiner.label(pid, t, correct, label)
        if joined is not None:
            _, model, version, correct = joined
            events += self.engine.label(t, model, version, correct=correct)
        return events

    def _confidence_increases(self, now: float) -> list[tuple]:
        """("confidence", now, model, version, counts per bucket) for each model version whose confidence
        histogram grew since the last poll. A series first seen counts whole only if it started after the
        analytics did: a process that outlived a collector restart would pour its whole past into one step.
        Histograms with other bucket bounds than the taxonomy's cannot be compared and are left out."""
        with self.metrics.lock:
            fam = self.metrics.families.get(_CONFIDENCE)
            series = [] if fam is None else list(fam.series.items())
            current = {
                labels: (s.start_ns, tuple(s.counts))
                for labels, s in series
                if isinstance(s, HistogramSeries) and s.bounds == CONFIDENCE_BOUNDS
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
        return [("confidence", now, model, version, c) for (model, version), c in totals.items() if model]

    def gauges(self, now: float) -> ExportMetricsServiceRequest:
        """The detectors' state as one OTLP request of gauges (resource service.name=modeltel-analytics)."""
        req = ExportMetricsServiceRequest()
        rm = req.resource_metrics.add()
        rm.resource.attributes.append(_kv("service.name", "modeltel-analytics"))
        sm = rm.scope_metrics.add()
        sm.scope.name = "modeltel.analytics"
        instruments = (
            *tx.DEGRADATION_INSTRUMENTS,
            tx.ONLINE_ACCURACY,
            *((tx.BASELINE_STALE, tx.BASELINE_AGE) if self.keeper else ()),
        )
        families = {i.prometheus_name: sm.metrics.add() for i in instruments}
        for inst in instruments:
            families[inst.prometheus_name].name = inst.prometheus_name
            families[inst.prometheus_name].description = inst.description
        t_ns, detected = int(now * 1e9), families[tx.DEGRADATION_DETECTED.prometheus_name]
        for (model, version), acc in self.joiner.accuracy.items():
            if acc.labels:
                attrs = {tx.ATTR_MODEL_NAME: model, tx.ATTR_MODEL_VERSION: version}
                _point(families[tx.ONLINE_ACCURACY.prometheus_name], t_ns, acc.right / len(acc.labels), attrs)
        for (model, version), w in self.engine.models.items():
            if self.keeper is not None:
                self._baseline_points(families, t_ns, model, version, now)
            for check in CHECKS:
                r = w.results.get(check)
                ep = w.episodes.get(check)
                base = {tx.ATTR_MODEL_NAME: model, tx.ATTR_MODEL_VERSION: version, tx.ATTR_CHECK: check}
                for severity in ("warning", "critical"):  # one series per severity, 1 for the open alarm's
                    on = 1.0 if ep is not None and ep.severity.label == severity else 0.0
                    _point(detected, t_ns, on, {**base, tx.ATTR_SEVERITY: severity})
                for inst, value in (
                    (tx.DEGRADATION_P_VALUE, r and r.p_value),
                    (tx.DEGRADATION_STATISTIC, r and r.statistic),
                    (tx.DEGRADATION_EFFECT_SIZE, r and r.effect_size),
                ):
                    if value is not None and math.isfinite(value):
                        _point(families[inst.prometheus_name], t_ns, float(value), base)
        return req

    def _baseline_points(self, families, t_ns: int, model: str, version: str, now: float) -> None:
        status, age = self.keeper.status(model, version, now)
        attrs = {tx.ATTR_MODEL_NAME: model, tx.ATTR_MODEL_VERSION: version}
        _point(families[tx.BASELINE_STALE.prometheus_name], t_ns, 0.0 if status == "ok" else 1.0, attrs)
        if age is not None:
            _point(families[tx.BASELINE_AGE.prometheus_name], t_ns, age, attrs)


def start_on(collector) -> LiveAnalytics:
    """The detectors on a started ``Collector``'s hand-over and stores, configured from its config
    (``analytics.attach``)."""
    cfg = collector.config
    url = cfg.alertmanager_url
    keeper = BaselineKeeper(cfg.baseline_path, stable_s=cfg.baseline_stable_s) if cfg.baseline_path else None
    poster = (
        AlertmanagerPoster(
            url, runbook_base=cfg.runbook_base_url, grafana_url=cfg.grafana_url, cap=collector.metrics.label_cap
        )
        if url
        else None
    )
    return live_for(cfg, collector.facts, collector.metrics, on_events=poster, keeper=keeper).start(
        stopped=collector._stopped
    )


def live_for(cfg, facts: deque, metrics, **kwargs) -> LiveAnalytics:
    """A LiveAnalytics whose windows, poll period and lag are scaled by ``cfg.analytics_time_scale``."""
    scale = cfg.analytics_time_scale
    return LiveAnalytics(
        facts, metrics, Settings().scaled(scale), interval_s=POLL_S * scale, lag_s=LAG_S * scale, **kwargs
    )


def _kv(key: str, value: str) -> KeyValue:
    kv = KeyValue(key=key)
    kv.value.string_value = value
    return kv


def _point(metric, t_ns: int, value: float, attrs: dict[str, str]) -> None:
    p = metric.gauge.data_points.add()
    p.time_unix_nano = t_ns
    p.as_double = value
    p.attributes.extend(_kv(k, v) for k, v in attrs.items())
