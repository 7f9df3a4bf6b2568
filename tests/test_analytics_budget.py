"""What a hostile client can grow in the detectors stays bounded: distinct model names (issue 21 item 1), long
prediction ids and labels (item 2), and the detectors' events (item 9)."""

from __future__ import annotations

import json
import os
import time

import pytest

pytest.importorskip("scipy")

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from modeltel import taxonomy as tx
from modeltel_collector.analytics.budget import SERIES_PER_VERSION
from modeltel_collector.analytics.detectors import Result, Status
from modeltel_collector.analytics.engine import Event
from modeltel_collector.analytics.live import MAX_EVENTS
from modeltel_collector.facts import MAX_TEXT
from tests.collector_helpers import PB, dropped, http_get, http_post, running_collector

DETECTOR_FAMILIES = ("model_degradation_", "model_online_accuracy", "model_baseline_")


def _spans(end_s: float, attrs: list[dict[str, str]]) -> bytes:
    """One span per attribute set, ending at ``end_s``."""
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for a in attrs:
        sp = ss.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name="predict")
        sp.start_time_unix_nano, sp.end_time_unix_nano = int((end_s - 0.01) * 1e9), int(end_s * 1e9)
        for key, value in a.items():
            sp.attributes.add(key=key).value.string_value = value
    return req.SerializeToString()


def _predictions(end_s: float, models: list[str], **extra: str) -> bytes:
    attrs = {tx.SPAN_ATTR_KIND: "prediction", tx.ATTR_MODEL_VERSION: "1", **extra}
    return _spans(end_s, [{**attrs, tx.ATTR_MODEL_NAME: name} for name in models])


def _send(c, body: bytes, signal: str = "traces") -> None:
    status, _, text = http_post(c.urls["otlp_http"] + f"/v1/{signal}", body, PB)
    assert status == 200, text


def _app_gauges(n: int) -> bytes:
    res = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="app"))])
    points = [
        m.NumberDataPoint(as_double=1.0, attributes=[KeyValue(key="i", value=AnyValue(string_value=str(i)))])
        for i in range(n)
    ]
    metric = m.Metric(name="app_things", gauge=m.Gauge(data_points=points))
    rm = m.ResourceMetrics(resource=res, scope_metrics=[m.ScopeMetrics(metrics=[metric])])
    return ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()


def _detector_lines(c) -> list[str]:
    text = http_get(c.urls["listen"] + "/metrics")[2].decode()
    return [ln for ln in text.splitlines() if ln.startswith(DETECTOR_FAMILIES)]


def test_distinct_model_names_fill_the_detectors_budget_never_the_applications_series():
    now = time.time()
    with running_collector(otlp_grpc="", max_series=1000, analytics_max_models=5, staleness_s=60) as c:
        c.analytics.stop()  # this test polls itself, at times of its choosing
        _send(c, _predictions(now - 20, [f"m{i}" for i in range(60)]))
        c.flush()
        room = c.metrics.max_series - c.metrics.n_series - 1  # the app's resource takes one
        c.analytics.poll(now)
        _send(c, _app_gauges(room), "metrics")  # fits max_series whatever the detectors publish
        c.flush()
        assert dropped(c).get("metric_points", 0) == 0
        assert 0 < len(_detector_lines(c)) <= 5 * SERIES_PER_VERSION
        assert len(c.analytics.engine.models) == 5
        doc = json.loads(http_get(c.urls["listen"] + "/healthz")[2])["analytics"]
        assert doc["refused_versions"] == 55 and doc["models"] == 5
        assert {"model": "m59", "version": "1"} in doc["refused_latest"]
        assert dropped(c)["analytics_over_budget"] == 55
        text = http_get(c.urls["listen"] + "/metrics")[2].decode()
        assert "modeltel_collector_analytics_refused_models 55" in text


def test_a_model_version_that_stops_sending_is_forgotten_and_its_gauges_go():
    now = time.time()
    with running_collector(otlp_grpc="", analytics_max_models=5, staleness_s=60) as c:
        c.analytics.stop()
        _send(c, _predictions(now - 20, [f"old{i}" for i in range(5)]))
        c.flush()
        c.analytics.poll(now)
        assert len(c.analytics.engine.models) == 5 and _detector_lines(c)
        _send(c, _predictions(now + 100, ["new"]))  # the old ones have been silent for staleness_s since
        c.flush()
        c.analytics.poll(now + 120)
        assert set(c.analytics.engine.models) == {("new", "1")}  # admitted: the budget has room again
        assert not [ln for ln in _detector_lines(c) if 'model_name="old' in ln]
        assert [ln for ln in _detector_lines(c) if 'model_name="new"' in ln]


def test_long_prediction_ids_and_labels_never_reach_the_joiner():
    now, long_id = time.time(), "x" * 100_000
    with running_collector(otlp_grpc="") as c:
        c.analytics.stop()
        _send(c, _predictions(now - 20, ["m"] * 70, **{tx.SPAN_ATTR_PREDICTION_ID: long_id}))
        feedback = {tx.SPAN_ATTR_KIND: "feedback", tx.SPAN_ATTR_FEEDBACK_LABEL: "cat"}
        _send(c, _spans(now - 20, [{**feedback, tx.SPAN_ATTR_PREDICTION_ID: long_id + str(i)} for i in range(70)]))
        _send(
            c,
            _spans(
                now - 20,
                [{**feedback, tx.SPAN_ATTR_PREDICTION_ID: "ok", tx.SPAN_ATTR_FEEDBACK_LABEL: "y" * (MAX_TEXT + 1)}],
            ),
        )
        c.flush()
        c.analytics.poll(now)
        joiner = c.analytics.joiner
        assert not joiner.join.pending and not joiner.early  # neither the predictions' ids nor the labels wait
        assert len(c.analytics.engine.models) == 1  # the predictions themselves still count
        assert dropped(c)["analytics_text_too_long"] == 141


def test_early_labels_are_bounded_in_bytes():
    from modeltel_collector.analytics.joiner import LabelJoiner

    joiner = LabelJoiner(max_early_bytes=100_000)
    for i in range(10_000):
        joiner.label(f"{i:0{MAX_TEXT}d}", 1.0, None, "z" * MAX_TEXT)
    assert 0 < joiner.early_bytes <= 100_000 and len(joiner.early) < 200
    assert joiner.stats.dropped_labels == 10_000 - len(joiner.early)


def test_events_are_bounded_and_the_alerts_api_reads_the_latest_per_check():
    result = Result("latency_shift", Status.DEGRADED, tx.Severity.CRITICAL, p_value=1e-9, effect_size=0.8)
    with running_collector(otlp_grpc="") as c:
        c.analytics.stop()
        for i in range(MAX_EVENTS + 500):
            state = "firing" if i % 2 else "resolved"
            c.analytics.record(
                [Event(float(i), f"m{i % 3}", "1", "latency_shift", state, tx.Severity.CRITICAL, result)]
            )
        assert len(c.analytics.events) == MAX_EVENTS and c.analytics.events_evicted == 500
        c.analytics.events.clear()  # what the alerts API reads does not depend on the list
        doc = json.loads(http_get(c.urls["listen"] + "/api/v1/console/alerts")[2])
        latest = sorted((d["model"], d["time"]) for d in doc["detections"])
        n = MAX_EVENTS + 500
        assert latest == sorted((f"m{i % 3}", float(i)) for i in range(n - 3, n))
