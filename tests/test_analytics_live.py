"""The detectors in a running collector: spans in over OTLP/HTTP, model_degradation_* gauges out on /metrics."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque

import numpy as np
import pytest

pytest.importorskip("scipy")

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.proto.trace.v1.trace_pb2 import Status

import modeltel
from modeltel import taxonomy as tx
from modeltel_collector import analytics
from modeltel_collector.analytics.detectors import confidence_counts
from modeltel_collector.analytics.engine import Engine
from modeltel_collector.analytics.live import LiveAnalytics
from modeltel_collector.analytics_cli import health
from modeltel_collector.store.metrics import MetricStore
from tests.collector_helpers import dropped, http_post, running_collector, sample, scrape, sdk_exporting_to

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _spans(model: str, start_s: float, seconds: float, rng, *, slow: float = 1.0, rate: float = 20.0) -> bytes:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    n = int(seconds * rate)
    for t, latency in zip(start_s + np.sort(rng.random(n)) * seconds, rng.lognormal(-3, 0.3, n) * slow, strict=True):
        sp = ss.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name="predict")
        sp.start_time_unix_nano = int(t * 1e9)
        sp.end_time_unix_nano = int((t + latency) * 1e9)
        sp.status.code = Status.STATUS_CODE_OK
        for key, value in (
            (tx.SPAN_ATTR_KIND, "prediction"),
            (tx.ATTR_MODEL_NAME, model),
            (tx.ATTR_MODEL_VERSION, "3"),
        ):
            kv = sp.attributes.add(key=key)
            kv.value.string_value = value
    return req.SerializeToString()


def _send(c, body: bytes) -> None:
    status, _, text = http_post(c.urls["otlp_http"] + "/v1/traces", body, PROTOBUF)
    assert status == 200, text


def test_a_slow_model_is_detected_and_exported_while_a_healthy_one_is_not(capsys):
    rng, now = np.random.default_rng(0), time.time()
    with running_collector(otlp_grpc="") as c:
        c.analytics.stop()  # this test polls itself, at a time of its choosing
        for model in ("slow", "fine"):
            for start in range(-1300, -400, 100):  # 15 healthy minutes...
                _send(c, _spans(model, now + start, 100, rng))
        for start in range(-400, -100, 100):  # ...then 5 minutes at twice the latency for one of them
            _send(c, _spans("slow", now + start, 100, rng, slow=2.0))
            _send(c, _spans("fine", now + start, 100, rng))
        c.flush()
        events = c.analytics.poll(now - 90)  # the data end at now - 100
        firing = {(e.model, e.check) for e in c.analytics.events if e.state == "firing"}
        assert firing == {("slow", "latency_shift")}, events
        fams = scrape(c)
        name = tx.DEGRADATION_DETECTED.prometheus_name
        slow = {"model_name": "slow", "model_version": "3", "check": "latency_shift"}
        assert sample(fams, name, name, **slow, severity="critical") == 1.0
        assert sample(fams, name, name, **slow, severity="warning") == 0.0
        fine = {"model_name": "fine", "model_version": "3", "check": "latency_shift"}
        assert sample(fams, name, name, **fine, severity="critical") == 0.0
        effect = tx.DEGRADATION_EFFECT_SIZE.prometheus_name
        assert sample(fams, effect, effect, **slow) > 0.5
        p_value = tx.DEGRADATION_P_VALUE.prometheus_name
        assert sample(fams, p_value, p_value, **slow) < 1e-6
        assert health(["--collector", c.urls["listen"], "--format", "json"]) == 1  # 1: a model is degraded
        report = {m["model_name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
        assert report["slow"]["overall_health"] == "degraded" and report["slow"]["max_severity"] == "critical"
        assert report["slow"]["details"]["latency_shift"]["status"] == "degraded"
        assert report["fine"]["overall_health"] == "healthy" and report["fine"]["max_severity"] == "ok"


def test_two_collectors_each_own_the_models_routed_to_them():
    # The gateway's load-balancing exporter routes by service: each collector sees all of its models' spans
    # and nothing of the others', so each detects on its own models with no shared state.
    rng, now = np.random.default_rng(1), time.time()
    with running_collector(otlp_grpc="") as a, running_collector(otlp_grpc="") as b:
        a.analytics.stop(), b.analytics.stop()
        for c, model in ((a, "alpha"), (b, "beta")):
            for start in range(-1300, -400, 100):
                _send(c, _spans(model, now + start, 100, rng))
            for start in range(-400, -100, 100):
                _send(c, _spans(model, now + start, 100, rng, slow=2.0 if model == "beta" else 1.0))
            c.flush()
        a.analytics.poll(now - 90)
        b.analytics.poll(now - 90)
        assert set(a.analytics.engine.models) == {("alpha", "3")}
        assert set(b.analytics.engine.models) == {("beta", "3")}
        assert {e.check for e in a.analytics.events} == set()
        assert {(e.model, e.check) for e in b.analytics.events if e.state == "firing"} == {("beta", "latency_shift")}


def test_when_the_detectors_fall_behind_the_oldest_facts_go_and_are_counted(monkeypatch):
    monkeypatch.setattr(analytics, "BACKLOG", 50)
    rng, now = np.random.default_rng(2), time.time()
    with running_collector(otlp_grpc="") as c:
        c.analytics.stop()  # nobody drains the hand-over
        body = _spans("m", now - 10, 4, rng)  # 80 predictions
        _send(c, body)
        c.flush()
        assert len(c.facts) == 50 and dropped(c)["analytics_backlog"] == 30
        sent = ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans
        assert [f.time for f in c.facts] == [sp.end_time_unix_nano / 1e9 for sp in sent[30:]]  # the newest 50


def test_a_prediction_handed_over_after_its_window_closed_is_skipped_and_counted():
    rng, now = np.random.default_rng(4), time.time()
    with running_collector(otlp_grpc="") as c:
        c.analytics.stop()
        _send(c, _spans("m", now - 20, 1, rng))
        c.flush()
        c.analytics.poll(now)  # fed, and the clock moved to now - lag_s
        _send(c, _spans("m", now - 60, 1, rng))  # an export that waited longer than the lag
        c.flush()
        c.analytics.poll(now + 1)
        assert dropped(c).get("analytics_late") == 20 and c.analytics.late == 20
        assert c.analytics.engine.models[("m", "3")].seen["requests"] == 20  # the first export's only


def test_a_poll_with_nothing_received_finds_nothing_and_publishes_nothing():
    store = MetricStore()
    live = LiveAnalytics(deque(), store)
    assert live.poll(time.time()) == []
    assert store.families == {}  # no model seen: nothing to publish


def test_confidence_drift_is_detected_from_the_sdks_histogram(monkeypatch):
    # Confidence is only a metric: the SDK's model_prediction_confidence histogram, exported over OTLP.
    # Every simulated 5 s the app records 100 confidences, exports, and the collector polls.
    rng, t0 = np.random.default_rng(7), time.time()
    with running_collector(otlp_grpc="") as c:
        c.analytics.stop()
        with sdk_exporting_to(c, monkeypatch) as pipeline:
            drift_at = 92  # 460 s healthy (a reference needs 5 min after the 1-min warm-up, joined 1 min late)
            for i in range(drift_at + 12):
                a, b = (8, 2) if i < drift_at else (6, 2.5)
                for value in rng.beta(a, b, 100):
                    modeltel.record_confidence(float(value), "scorer", "4")
                pipeline.force_flush()
                c.flush()
                c.analytics.poll(t0 + 5 * i)
                if i == drift_at - 1:
                    result = c.analytics.engine.models[("scorer", "4")].results["confidence_drift"]
                    assert result.status.value == "ok" and result.details["current"] >= 100  # tested, and healthy
        firing = [e for e in c.analytics.events if e.state == "firing"]
        assert {(e.model, e.version, e.check) for e in firing} == {("scorer", "4", "confidence_drift")}
        assert firing[0].time - (t0 + 5 * drift_at) <= 30  # within 30 s of simulated time, lag included
        fams = scrape(c)
        name = tx.DEGRADATION_DETECTED.prometheus_name
        labels = {"model_name": "scorer", "model_version": "4", "check": "confidence_drift"}
        assert sample(fams, name, name, **labels, severity=firing[-1].severity.label) == 1.0


def test_confidence_histograms_are_read_as_increases_per_model_version():
    store, requests = MetricStore(), []

    def export(instance: str, counts: list[int], *, start: int, bounds=tx.CONFIDENCE_BUCKETS) -> None:
        req = ExportMetricsServiceRequest()
        rm = req.resource_metrics.add()
        for key, value in (("service.name", "app"), ("service.instance.id", instance)):
            rm.resource.attributes.add(key=key).value.string_value = value
        m = rm.scope_metrics.add().metrics.add(name=tx.PREDICTION_CONFIDENCE.otel_name)
        m.histogram.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
        p = m.histogram.data_points.add(start_time_unix_nano=start, time_unix_nano=time.time_ns())
        p.explicit_bounds.extend(bounds)
        p.bucket_counts.extend(counts)
        p.count, p.sum = sum(counts), 0.5 * sum(counts)
        for key, value in ((tx.ATTR_MODEL_NAME, "m"), (tx.ATTR_MODEL_VERSION, "1")):
            p.attributes.add(key=key).value.string_value = value
        requests.append(store.ingest(req))

    def one(bucket: int, n: int = 1) -> list[int]:
        return [n if i == bucket else 0 for i in range(len(tx.CONFIDENCE_BUCKETS) + 1)]

    export("before", one(3, 50), start=1)  # a process that started before the analytics did
    live = LiveAnalytics(deque(), store)
    started = live.started_ns
    export("a", one(5, 10), start=started + 1)
    increases = live._confidence_increases(1.0)
    assert [(f.model, f.version, f.counts.tolist()) for f in increases] == [("m", "1", one(5, 10))]  # not "before"'s
    export("before", one(3, 52), start=1)
    export("a", one(5, 13), start=started + 1)
    (fact,) = live._confidence_increases(2.0)
    assert fact.counts.tolist() == [a + b for a, b in zip(one(3, 2), one(5, 3), strict=True)]  # summed over processes
    export("a", one(7, 4), start=started + 9)  # restarted: its counts fell, so they are new since the reset
    export("other-bounds", [5, 5], start=started + 1, bounds=(0.5,))  # cannot be compared: left out
    (fact,) = live._confidence_increases(3.0)
    assert fact.counts.tolist() == one(7, 4)
    assert live._confidence_increases(4.0) == []  # nothing new


def _span(ss, t: float, attrs: dict, duration: float = 0.01) -> None:
    sp = ss.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name="x")
    sp.start_time_unix_nano, sp.end_time_unix_nano = int(t * 1e9), int((t + duration) * 1e9)
    for key, value in attrs.items():
        kv = sp.attributes.add(key=key)
        if isinstance(value, bool):
            kv.value.bool_value = value
        else:
            kv.value.string_value = value


def test_feedback_from_a_labelling_job_joins_its_predictions_in_the_collector():
    now = time.time()
    serving, labelling = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    predictions = serving.resource_spans.add().scope_spans.add()
    feedback = labelling.resource_spans.add().scope_spans.add()
    model = {tx.SPAN_ATTR_KIND: "prediction", tx.ATTR_MODEL_NAME: "iris", tx.ATTR_MODEL_VERSION: "3"}
    for i in range(10):
        pid = {tx.SPAN_ATTR_PREDICTION_ID: f"p{i}"}
        _span(predictions, now - 100 + i, {**model, **pid, tx.SPAN_ATTR_PREDICTION_VALUE: "cat" if i < 8 else "dog"})
        # labels for p0..p4 arrive (by their timestamps) before their predictions: out of order
        at = now - 105 if i < 5 else now - 50
        _span(feedback, at, {tx.SPAN_ATTR_KIND: tx.SPAN_KIND_FEEDBACK, **pid, tx.SPAN_ATTR_FEEDBACK_LABEL: "cat"})
    _span(feedback, now - 40, {tx.SPAN_ATTR_KIND: tx.SPAN_KIND_FEEDBACK, tx.SPAN_ATTR_PREDICTION_ID: "p1",
                               tx.SPAN_ATTR_FEEDBACK_CORRECT: False})  # fmt: skip  # a duplicate: ignored
    _span(feedback, now - 40, {tx.SPAN_ATTR_KIND: tx.SPAN_KIND_FEEDBACK, tx.SPAN_ATTR_PREDICTION_ID: "nope",
                               tx.SPAN_ATTR_FEEDBACK_CORRECT: True})  # fmt: skip  # unknown: waits, never joins
    with running_collector(otlp_grpc="") as c:
        c.analytics.stop()
        _send(c, labelling.SerializeToString())  # the labelling job's export even reaches the collector first
        _send(c, serving.SerializeToString())
        c.flush()
        c.analytics.poll(now)
        stats = c.analytics.joiner.stats
        assert (stats.joined, stats.duplicate) == (10, 1)
        assert list(c.analytics.joiner.early) == ["nope"]
        fams = scrape(c)
        name = tx.ONLINE_ACCURACY.prometheus_name
        assert sample(fams, name, name, model_name="iris", model_version="3") == pytest.approx(0.8)


def test_without_the_analytics_extra_the_collector_runs_and_says_so_once(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "scipy", None)  # as if not installed: importing it raises ImportError
    with caplog.at_level("WARNING", logger="modeltel_collector.analytics"), running_collector(otlp_grpc="") as c:
        assert c.analytics is None and c.healthy()
        assert c.facts is None  # and ingest collects nothing for them
    assert [r.getMessage() for r in caplog.records if "detectors off" in r.getMessage()] == [
        "degradation detectors off: install them with pip install 'modeltel[analytics]'"
    ]


def test_an_app_exporting_metrics_once_a_minute_still_gets_every_confidence_window_tested():
    # OTel's default export interval (60 s) is longer than the 30 s window: the window widens to the last export.
    engine, rng, results = Engine(), np.random.default_rng(3), []
    for minute in range(15):
        engine.confidence(60.0 * minute, "m", "1", confidence_counts(rng.beta(8, 2, 1200)))
        for step in range(1, 12):  # evaluated every 5 s in between
            engine.advance(60.0 * minute + 5.0 * step)
            results.append(engine.models[("m", "1")].results["confidence_drift"].status.value)
    assert set(results[-11 * 7 :]) == {"ok"}  # from when the reference is learned on, never "not enough data"


def test_analytics_false_turns_the_detectors_off_quietly(caplog):
    with (
        caplog.at_level("WARNING", logger="modeltel_collector.analytics"),
        running_collector(otlp_grpc="", analytics=False) as c,
    ):
        _send(c, _spans("m", time.time() - 10, 1, np.random.default_rng(4)))
        c.flush()
        assert c.analytics is None and c.facts is None and c.healthy()
    assert caplog.records == []  # asked for: nothing to warn about
