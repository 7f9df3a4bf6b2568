"""``tracer_provider`` / ``meter_provider`` keyword arguments reach what every instrumentor records, as
contrib instrumentors' do; ``instrument_app`` instruments one app with its own providers.

Each test has a modeltel pipeline too (``tel``): what the instrumentor was given must get the spans and
points, and the pipeline none of them.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modeltel import taxonomy as tx
from modeltel.testing import Capture

X, Y = load_iris(return_X_y=True)
CLF = LogisticRegression(max_iter=500).fit(X, Y)


@dataclass
class Given:
    """Providers handed to an instrumentor, with their in-memory exporter and reader."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    def kwargs(self) -> dict:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def count(self, name: str, **attrs: str) -> float:
        data = self.reader.get_metrics_data()
        total = 0.0
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name != name:
                        continue
                    for p in m.data.data_points:
                        if all(p.attributes.get(k) == v for k, v in attrs.items()):
                            total += p.count if hasattr(p, "bucket_counts") else p.value
        return total


@pytest.fixture
def given() -> Iterator[Given]:
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    yield Given(tp, mp, spans, reader)
    tp.shutdown()
    mp.shutdown()


def _server_models(g: Given) -> list[str]:
    """The model name of each server span (modeltel's request prediction adopts the contrib's span)."""
    return [str(s.attributes.get(tx.ATTR_MODEL_NAME)) for s in g.spans.get_finished_spans() if s.kind.name == "SERVER"]


def _stages(g: Given) -> list[str]:
    return sorted(str(s.attributes.get(tx.SPAN_ATTR_STAGE)) for s in g.spans.get_finished_spans() if s.attributes)


def test_a_library_instrumentor_records_with_the_given_providers(tel: Capture, given: Given) -> None:
    from modeltel.instrumentors.sklearn import SklearnInstrumentor

    SklearnInstrumentor().instrument(**given.kwargs())
    try:
        CLF.predict(X[:2])
    finally:
        SklearnInstrumentor().uninstrument()
    assert _stages(given) == ["inference"]
    assert given.count(tx.STAGE_LATENCY.otel_name, stage="inference") == 1
    assert tel.spans() == [] and tel.count(tx.STAGE_LATENCY.otel_name) == 0
    # the pipeline's settings still apply (model name from the pipeline, not "unknown")
    assert given.count(tx.STAGE_LATENCY.otel_name, **{tx.ATTR_MODEL_NAME: "env-model"}) == 1


def test_a_framework_instrumentor_records_with_the_given_providers(tel: Capture, given: Given) -> None:
    kserve = pytest.importorskip("kserve")
    from modeltel.instrumentors.kserve import KServeInstrumentor

    class Iris(kserve.Model):
        def predict(self, payload, headers=None):
            return {"predictions": CLF.predict(np.asarray(payload["instances"])).tolist()}

    KServeInstrumentor().instrument(**given.kwargs())
    try:
        asyncio.run(Iris("iris-k")({"instances": X[:2].tolist()}))
    finally:
        KServeInstrumentor().uninstrument()
    assert given.count(tx.PREDICTIONS.otel_name, status="success", **{tx.ATTR_MODEL_NAME: "iris-k"}) == 1
    assert "inference" in _stages(given)
    assert tel.spans() == [] and tel.count(tx.PREDICTIONS.otel_name) == 0


def test_fastapi_instrument_app_instruments_that_app_only(tel: Capture, given: Given) -> None:
    pytest.importorskip("fastapi")
    import httpx
    from fastapi import FastAPI

    from modeltel.instrumentors.fastapi import ModeltelFastAPIInstrumentor

    def app() -> FastAPI:
        a = FastAPI()
        a.post("/predict")(lambda: {"ok": True})
        return a

    mine, other = app(), app()
    ModeltelFastAPIInstrumentor.instrument_app(mine, **given.kwargs())

    async def post(a: FastAPI) -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://t") as client:
            return (await client.post("/predict")).status_code

    assert asyncio.run(post(mine)) == 200 and asyncio.run(post(other)) == 200
    assert given.count(tx.PREDICTIONS.otel_name, status="success") == 1
    assert _server_models(given) == ["env-model"]
    assert tel.count(tx.PREDICTIONS.otel_name) == 0

    ModeltelFastAPIInstrumentor.uninstrument_app(mine)
    assert "build_middleware_stack" not in vars(mine)
    assert asyncio.run(post(mine)) == 200
    assert given.count(tx.PREDICTIONS.otel_name, status="success") == 1  # off again


def test_flask_instrument_app_instruments_that_app_only(tel: Capture, given: Given) -> None:
    flask = pytest.importorskip("flask")
    from modeltel.instrumentors.flask import ModeltelFlaskInstrumentor

    def app() -> flask.Flask:
        a = flask.Flask("t")
        a.post("/predict")(lambda: "ok")
        return a

    mine, other = app(), app()
    ModeltelFlaskInstrumentor.instrument_app(mine, **given.kwargs())
    assert mine.test_client().post("/predict").status_code == 200
    assert other.test_client().post("/predict").status_code == 200
    assert given.count(tx.PREDICTIONS.otel_name, status="success") == 1
    assert _server_models(given) == ["env-model"]
    assert tel.count(tx.PREDICTIONS.otel_name) == 0

    ModeltelFlaskInstrumentor.uninstrument_app(mine)
    assert "full_dispatch_request" not in vars(mine)
    assert mine.test_client().post("/predict").status_code == 200
    assert given.count(tx.PREDICTIONS.otel_name, status="success") == 1


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_instrument_app_options_are_typed_keywords(framework: str) -> None:
    pytest.importorskip(framework)
    from modeltel.instrumentors.fastapi import ModeltelFastAPIInstrumentor
    from modeltel.instrumentors.flask import ModeltelFlaskInstrumentor

    cls = ModeltelFastAPIInstrumentor if framework == "fastapi" else ModeltelFlaskInstrumentor
    params = inspect.signature(cls.instrument_app).parameters
    for name in ("prediction_methods", "excluded_paths", "tracer_provider", "meter_provider"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY and params[name].annotation != "Any", name


def test_instrument_app_honours_prediction_methods_and_excluded_paths(tel: Capture, given: Given) -> None:
    flask = pytest.importorskip("flask")
    from modeltel.instrumentors.flask import ModeltelFlaskInstrumentor

    app = flask.Flask("t")
    app.add_url_rule("/predict", "predict", lambda: "ok", methods=["GET", "POST"])
    app.add_url_rule("/internal/predict", "internal", lambda: "ok")
    options = {"prediction_methods": ["GET"], "excluded_paths": "^/internal/"}
    ModeltelFlaskInstrumentor.instrument_app(app, **options, **given.kwargs())
    try:
        client = app.test_client()
        assert client.get("/predict").status_code == 200  # a prediction: GET is one here
        assert client.post("/predict").status_code == 200  # not one: POST is not
        assert client.get("/internal/predict").status_code == 200  # not one: excluded
        with pytest.raises(TypeError, match="list of HTTP methods"):
            ModeltelFlaskInstrumentor.instrument_app(flask.Flask("u"), prediction_methods="GET")
    finally:
        ModeltelFlaskInstrumentor.uninstrument_app(app)
    assert given.count(tx.PREDICTIONS.otel_name, status="success") == 1
    assert _server_models(given) == ["env-model", "None", "None"]  # three server spans, one prediction's
    assert tel.count(tx.PREDICTIONS.otel_name) == 0
