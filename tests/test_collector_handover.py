"""The hand-over from span-derived series to the app's own: the same request is counted the same way by
both, under the same labels, so what /metrics shows does not change when the app's metrics arrive."""

from __future__ import annotations

import time

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

import modeltel
from modeltel import taxonomy as tx
from tests.collector_helpers import metric_exporter, running_collector, scrape

SDK_VERSION = "9.9.9"
# what modeltel's pipeline puts on its resource (modeltel.export.providers)
RESOURCE = {"service.name": "svc", "service.instance.id": "i1", "telemetry.distro.name": "modeltel",
            "telemetry.distro.version": SDK_VERSION}  # fmt: skip
MODEL = {tx.ATTR_MODEL_NAME: "iris", tx.ATTR_MODEL_VERSION: "v1"}
COUNT = tx.PREDICTIONS.prometheus_series


def _server_spans(tp: TracerProvider, statuses: list[int]) -> None:
    """What the FastAPI instrumentation sends: the contrib's server span, adopted as the prediction (its
    span status stays unset on a 4xx, as the HTTP conventions say for server spans)."""
    tracer = tp.get_tracer("opentelemetry.instrumentation.fastapi", "0.50b0")
    for code in statuses:
        attrs = {tx.SPAN_ATTR_KIND: tx.SPAN_KIND_PREDICTION, **MODEL, "http.response.status_code": code}
        tracer.start_span("POST /predict", kind=SpanKind.SERVER, attributes=attrs).end()


def _counts(c) -> dict[tuple, float]:
    """model_predictions_total by (otel_scope_name, otel_scope_version, status)."""
    fam = scrape(c).get("model_predictions", {"samples": {}})
    out = {}
    for (name, labels), value in fam["samples"].items():
        lb = dict(labels)
        if name == COUNT and lb["job"] == "svc":
            out[(lb.get("otel_scope_name"), lb.get("otel_scope_version"), lb[tx.ATTR_STATUS])] = value
    return out


def _sdk_counter(c):
    """(meter provider, counter) as modeltel's SDK records predictions: scope modeltel at its version."""
    reader = PeriodicExportingMetricReader(metric_exporter(c, "http"), export_interval_millis=3_600_000)
    mp = MeterProvider(resource=Resource.create(RESOURCE), metric_readers=[reader])
    meter = mp.get_meter(tx.METER_NAME, SDK_VERSION)
    return mp, meter.create_counter(tx.PREDICTIONS.otel_name, tx.PREDICTIONS.unit, tx.PREDICTIONS.description)


def _tracer_provider(c) -> TracerProvider:
    tp = TracerProvider(resource=Resource.create(RESOURCE))
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=c.urls["otlp_http"] + "/v1/traces")))
    return tp


def test_a_4xx_counts_the_same_from_spans_and_from_the_sdk_across_the_hand_over() -> None:
    # The quick start's 22 successes and one 422: the derived series already say what the SDK's will.
    with running_collector(otlp_grpc="") as c:
        tp = _tracer_provider(c)
        _server_spans(tp, [200] * 22 + [422])
        expected = {("modeltel", SDK_VERSION, "success"): 22, ("modeltel", SDK_VERSION, "error"): 1}
        assert _counts(c) == expected
        mp, counter = _sdk_counter(c)
        counter.add(22, {**MODEL, tx.ATTR_STATUS: tx.STATUS_SUCCESS})
        counter.add(1, {**MODEL, tx.ATTR_STATUS: tx.STATUS_ERROR})
        assert mp.force_flush()
        assert _counts(c) == expected  # the SDK's own series took over: same labels, same values
        tp.shutdown()
        mp.shutdown()


def test_the_hand_over_never_lowers_a_count() -> None:
    # The SDK collected its counter before the last requests' spans were derived: its first export is
    # behind the derived series. The exposed count holds until the SDK's catches up, then follows it.
    with running_collector(otlp_grpc="") as c:
        tp = _tracer_provider(c)
        _server_spans(tp, [200, 200, 200, 500])
        mp, counter = _sdk_counter(c)
        counter.add(2, {**MODEL, tx.ATTR_STATUS: tx.STATUS_SUCCESS})
        assert mp.force_flush()
        held = {("modeltel", SDK_VERSION, "success"): 3, ("modeltel", SDK_VERSION, "error"): 1}
        assert _counts(c) == held
        counter.add(2, {**MODEL, tx.ATTR_STATUS: tx.STATUS_SUCCESS})
        counter.add(1, {**MODEL, tx.ATTR_STATUS: tx.STATUS_ERROR})
        _server_spans(tp, [200, 200])  # once the app sends the family, spans derive no more of it
        assert mp.force_flush()
        assert _counts(c) == {("modeltel", SDK_VERSION, "success"): 4, ("modeltel", SDK_VERSION, "error"): 1}
        tp.shutdown()
        mp.shutdown()


def test_spans_of_an_app_without_modeltel_keep_their_own_scope_and_count_a_4xx_as_failed() -> None:
    with running_collector(otlp_grpc="") as c:
        tp = TracerProvider(resource=Resource.create({"service.name": "svc", "service.instance.id": "i1"}))
        tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=c.urls["otlp_http"] + "/v1/traces")))
        _server_spans(tp, [200, 404, 503])
        scope = ("opentelemetry.instrumentation.fastapi", "0.50b0")
        assert _counts(c) == {(*scope, "success"): 1, (*scope, "error"): 2}
        tp.shutdown()


def test_a_held_series_the_app_never_reaches_goes_after_the_staleness_time() -> None:
    # The spans said model version v1, the app's own metrics say v2: the derived v1 series is held
    # (the app might yet count it) but not forever, and its place is not taken by anything else.
    with running_collector(otlp_grpc="") as c:
        tp = _tracer_provider(c)
        _server_spans(tp, [200, 200])
        mp, counter = _sdk_counter(c)
        counter.add(2, {**MODEL, tx.ATTR_MODEL_VERSION: "v2", tx.ATTR_STATUS: tx.STATUS_SUCCESS})
        assert mp.force_flush()
        assert len(_counts_by_version(c)) == 2
        store = c.metrics
        n_series = store.n_series
        with store.lock:
            (held,) = store.families["model_predictions"].held.values()
        assert store.expire(now=held.since + store.staleness_s / 2) == 0
        with store.lock:  # the resource keeps sending; only its held series has aged
            store.resources[("svc", "i1")].last_seen = held.since + store.staleness_s + 1
        assert store.expire(now=held.since + store.staleness_s + 1) == 1
        assert _counts_by_version(c) == {"v2": 2} and store.n_series == n_series - 1
        tp.shutdown()
        mp.shutdown()


def _counts_by_version(c) -> dict[str, float]:
    fam = scrape(c)["model_predictions"]["samples"]
    return {dict(lb)["model_version"]: v for (name, lb), v in fam.items() if name == COUNT}


BODIES = ({}, {}, {"status": 422}, {"status": 503}, {"own": True})
# the SDK counts a 4xx or 5xx as failed, and a request whose application opened its own prediction once,
# under the application's model
COUNTED = {
    ("env-model", "success"): 2,
    ("env-model", "error"): 2,
    ("own-model", "success"): 1,
    ("own-model", "error"): 0,
}


def _agree(tel) -> None:
    """The SDK's counts are COUNTED, and the collector derives the same from the SDK's spans."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from modeltel_collector.process.spanmetrics import process_traces
    from modeltel_collector.store.metrics import MetricStore

    sdk = {(m, st): tel.count(tx.PREDICTIONS.otel_name, model_name=m, status=st) for m, st in COUNTED}
    assert sdk == COUNTED
    store = MetricStore()
    process_traces(encode_spans(tel.spans()), store, now=time.time())
    derived = dict.fromkeys(COUNTED, 0.0)
    for labels, series in store.families[tx.PREDICTIONS.prometheus_name].series.items():
        lb = dict(labels)
        assert (lb["otel_scope_name"], lb["otel_scope_version"]) == (tx.METER_NAME, modeltel.__version__)
        derived[lb["model_name"], lb[tx.ATTR_STATUS]] += series.value
    assert derived == COUNTED


def _own_prediction() -> None:
    with modeltel.prediction(model_name="own-model", model_version="1"):
        pass


async def test_from_a_fastapi_apps_spans_the_collector_derives_what_its_sdk_counts(tel) -> None:
    pytest.importorskip("fastapi")
    import httpx

    from modeltel.instrumentors.fastapi import ModeltelFastAPIInstrumentor

    ModeltelFastAPIInstrumentor().instrument(
        tracer_provider=tel.pipeline.tracer_provider, exclude_spans=["receive", "send"]
    )
    try:
        from fastapi import FastAPI, HTTPException

        app = FastAPI()

        @app.post("/predict")
        async def predict(body: dict):
            if body.get("status"):
                raise HTTPException(status_code=body["status"], detail="no")
            if body.get("own"):
                _own_prediction()
            return {"ok": True}

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            for body in BODIES:
                await client.post("/predict", json=body)
    finally:
        ModeltelFastAPIInstrumentor().uninstrument()
    _agree(tel)


def test_from_a_flask_apps_spans_the_collector_derives_what_its_sdk_counts(tel) -> None:
    pytest.importorskip("flask")
    from modeltel.instrumentors.flask import ModeltelFlaskInstrumentor

    ModeltelFlaskInstrumentor().instrument(tracer_provider=tel.pipeline.tracer_provider)
    try:
        import flask

        app = flask.Flask("t")

        @app.post("/predict")
        def predict():
            body = flask.request.get_json()
            if body.get("status"):
                flask.abort(body["status"])
            if body.get("own"):
                _own_prediction()
            return {"ok": True}

        client = app.test_client()
        for body in BODIES:
            client.post("/predict", json=body)
    finally:
        ModeltelFlaskInstrumentor().uninstrument()
    _agree(tel)
