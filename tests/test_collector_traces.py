"""Traces: OTel SDK apps over both protocols -> trace store + API, and span-derived modeltel metrics."""

from __future__ import annotations

import json
import time

import pytest
from opentelemetry.trace import Status, StatusCode

from modeltel import taxonomy as tx
from tests.collector_helpers import (
    http_get,
    meter_provider,
    metric_exporter,
    running_collector,
    sample,
    scrape,
    tracer_provider,
)


def _serve(tp, n: int, fail_every: int = 0, sleep_s: float = 0.0, model: str = "iris") -> list[str]:
    """Emit n prediction spans with preprocess/inference stage spans; returns trace ids (hex)."""
    tracer = tp.get_tracer(tx.TRACER_NAME, "0.1.0")
    ids = []
    for i in range(n):
        attrs = {tx.SPAN_ATTR_KIND: tx.SPAN_KIND_PREDICTION, tx.ATTR_MODEL_NAME: model, tx.ATTR_MODEL_VERSION: "v1"}
        with tracer.start_as_current_span("predict", attributes=attrs) as root:
            for stage in (tx.STAGE_PREPROCESS, tx.STAGE_INFERENCE):
                stage_attrs = {tx.SPAN_ATTR_KIND: tx.SPAN_KIND_STAGE, tx.SPAN_ATTR_STAGE: stage,
                               tx.ATTR_MODEL_NAME: model, tx.ATTR_MODEL_VERSION: "v1"}  # fmt: skip
                with tracer.start_as_current_span(stage, attributes=stage_attrs):
                    if sleep_s and stage == tx.STAGE_INFERENCE and i == n - 1:
                        time.sleep(sleep_s)
            if fail_every and i % fail_every == 0:
                root.set_status(Status(StatusCode.ERROR, "boom"))
            ids.append(format(root.get_span_context().trace_id, "032x"))
    assert tp.force_flush()
    return ids


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_trace_api_get_and_search(protocol: str) -> None:
    with running_collector() as c:
        tp = tracer_provider(c, protocol)
        ids = _serve(tp, 10, fail_every=5, sleep_s=0.05)
        c.flush()
        api = c.urls["listen"] + "/api/traces"
        status, _, body = http_get(f"{api}/{ids[3]}")
        assert status == 200
        trace = json.loads(body)
        assert trace["trace_id"] == ids[3]
        assert sorted(s["name"] for s in trace["spans"]) == ["inference", "predict", "preprocess"]
        root = next(s for s in trace["spans"] if s["name"] == "predict")
        assert root["parent_span_id"] == "" and root["service"] == "svc"
        assert root["attributes"][tx.ATTR_MODEL_NAME] == "iris"
        assert all(s["trace_id"] == ids[3] for s in trace["spans"])

        slowest = json.loads(http_get(f"{api}?kind=prediction&sort=duration&limit=1")[2])["traces"]
        assert [t["trace_id"] for t in slowest] == [ids[-1]]
        assert slowest[0]["duration_ms"] >= 50
        errors = json.loads(http_get(f"{api}?status=error&kind=prediction&limit=100")[2])["traces"]
        assert sorted(t["trace_id"] for t in errors) == sorted([ids[0], ids[5]])
        stage = json.loads(http_get(f"{api}?stage=inference&min_duration_ms=40&service=svc&model=iris")[2])["traces"]
        assert [t["trace_id"] for t in stage] == [ids[-1]]
        assert json.loads(http_get(f"{api}?model=other")[2])["traces"] == []
        assert http_get(f"{api}/{'0' * 32}")[0] == 404
        assert http_get(f"{api}/nothex")[0] == 400
        assert http_get(f"{api}?sort=bogus")[0] == 400
        tp.shutdown()


def test_a_trace_that_arrived_in_two_exports_is_searched_and_shown_whole() -> None:
    # A stage's span is exported before its prediction ends: the trace is two stored rows.
    with running_collector(otlp_grpc="") as c:
        tp = tracer_provider(c, "http")
        tracer = tp.get_tracer(tx.TRACER_NAME)
        model = {tx.ATTR_MODEL_NAME: "iris", tx.ATTR_MODEL_VERSION: "v1"}
        with tracer.start_as_current_span("predict", attributes={tx.SPAN_ATTR_KIND: tx.SPAN_KIND_PREDICTION, **model}):
            stage = {tx.SPAN_ATTR_KIND: tx.SPAN_KIND_STAGE, tx.SPAN_ATTR_STAGE: tx.STAGE_INFERENCE, **model}
            with tracer.start_as_current_span(tx.STAGE_INFERENCE, attributes=stage) as inference:
                inference.set_status(Status(StatusCode.ERROR, "boom"))
            assert tp.force_flush()
            time.sleep(0.03)
        assert tp.force_flush()
        c.flush()
        for query in ("kind=prediction", "stage=inference", "status=error"):
            (hit,) = json.loads(http_get(f"{c.urls['listen']}/api/traces?{query}")[2])["traces"]
            assert hit["name"] == "predict" and hit["duration_ms"] >= 30  # the longest span: the root
            assert hit["stages"] == ["inference"] and hit["kinds"] == ["prediction", "stage"]
            assert hit["status"] == "error" and hit["model"] == "iris"
        tp.shutdown()


def test_span_derived_metrics_match_sdk_series_with_exemplars() -> None:
    with running_collector() as c:
        tp = tracer_provider(c, "grpc")
        ids = _serve(tp, 8, fail_every=4)
        fams = scrape(c, openmetrics=True)
        lbl = {"job": "svc", "instance": "i1", "model_name": "iris", "model_version": "v1"}
        pred = tx.PREDICTION_LATENCY.prometheus_name
        assert sample(fams, pred, pred + "_count", **lbl) == 8
        stage = tx.STAGE_LATENCY.prometheus_name
        assert sample(fams, stage, stage + "_count", stage="inference", **lbl) == 8
        assert sample(fams, stage, stage + "_bucket", stage="preprocess", le="+Inf", **lbl) == 8
        assert sample(fams, "model_predictions", tx.PREDICTIONS.prometheus_series, status="error", **lbl) == 2
        assert sample(fams, "model_predictions", tx.PREDICTIONS.prometheus_series, status="success", **lbl) == 6
        exemplars = list(fams[pred]["exemplars"].values())
        assert exemplars and all(e.labels["trace_id"] in ids for e in exemplars)
        tp.shutdown()


def test_no_double_counting_when_app_also_sends_metrics() -> None:
    with running_collector() as c:
        tp = tracer_provider(c, "http")
        _serve(tp, 5)
        assert sample(scrape(c), "model_predictions", "model_predictions_total", job="svc", status="success") == 5
        mp = meter_provider(metric_exporter(c, "http"))
        meter = mp.get_meter(tx.METER_NAME, "0.1.0")
        attrs = {tx.ATTR_MODEL_NAME: "iris", tx.ATTR_MODEL_VERSION: "v1", tx.ATTR_STATUS: "success"}
        meter.create_counter(tx.PREDICTIONS.otel_name, unit=tx.PREDICTIONS.unit).add(5, attrs)
        assert mp.force_flush()
        _serve(tp, 3)  # both signals now: the app's own counter is authoritative
        meter.create_counter(tx.PREDICTIONS.otel_name, unit=tx.PREDICTIONS.unit).add(3, attrs)
        assert mp.force_flush()
        fams = scrape(c)
        assert sample(fams, "model_predictions", "model_predictions_total", job="svc", status="success") == 8
        # families the app does not send itself are still derived from its spans
        assert (
            sample(fams, "model_prediction_latency_seconds", "model_prediction_latency_seconds_count", job="svc") == 8
        )
        tp.shutdown()
        mp.shutdown()


def test_forwarding_to_downstream_otlp_endpoint() -> None:
    with running_collector() as downstream:
        with running_collector(forward_endpoint=downstream.urls["otlp_http"]) as c:
            tp = tracer_provider(c, "grpc")
            ids = _serve(tp, 3)
            mp = meter_provider(metric_exporter(c, "http"))
            mp.get_meter("app").create_counter("jobs").add(7)
            assert mp.force_flush()
            c.flush()
            deadline = time.monotonic() + 10
            while c.forwarder.depth() and time.monotonic() < deadline:
                time.sleep(0.05)
            tp.shutdown()
            mp.shutdown()
        for trace_id in ids:  # stop() flushed the forward queue
            status, _, body = http_get(f"{downstream.urls['listen']}/api/traces/{trace_id}")
            assert status == 200 and len(json.loads(body)["spans"]) == 3
        assert sample(scrape(downstream), "jobs", "jobs_total", job="svc") == 7
