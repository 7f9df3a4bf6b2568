"""FastAPI and Flask: contrib server span as parent of the stage spans; request status feeds predictions."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from opentelemetry.trace import SpanKind

import modeltel
from modeltel import taxonomy as tx
from modeltel.instrumentors.sklearn import SklearnInstrumentor
from modeltel.testing import Capture
from tests.conftest import parent_of


def _server_span(tel: Capture):
    (server,) = [s for s in tel.spans() if s.kind is SpanKind.SERVER]
    return server


# ---------------------------------------------------------------- FastAPI
fastapi = pytest.importorskip("fastapi")
from modeltel.instrumentors.fastapi import ModeltelFastAPIInstrumentor  # noqa: E402


@pytest.fixture
def fastapi_on(tel: Capture):
    ModeltelFastAPIInstrumentor().instrument(
        tracer_provider=tel.pipeline.tracer_provider, exclude_spans=["receive", "send"]
    )
    yield
    ModeltelFastAPIInstrumentor().uninstrument()


def _fastapi_app():
    from fastapi import FastAPI, HTTPException

    app = FastAPI()

    @app.post("/predict")
    async def predict(body: dict):
        if body.get("fail"):
            raise HTTPException(status_code=422, detail="bad input")
        async with modeltel.stage("preprocess"):
            await asyncio.sleep(0.001)
        with modeltel.stage("inference"):
            await asyncio.sleep(0.001)
        return {"ok": True}

    @app.get("/health")
    async def health():
        return {"ok": True}

    return app


async def test_fastapi_stages_under_server_span(tel: Capture, fastapi_on) -> None:
    app = _fastapi_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.post("/predict", json={})).status_code == 200
        assert (await client.get("/health")).status_code == 200
        assert (await client.post("/predict", json={"fail": True})).status_code == 422
    servers = [s for s in tel.spans() if s.kind is SpanKind.SERVER]
    assert len(servers) == 3
    ok = next(
        s
        for s in servers
        if s.attributes.get("http.response.status_code", s.attributes.get("http.status_code")) == 200
        and "POST" in s.name
    )
    assert ok.attributes[tx.ATTR_MODEL_NAME] == "env-model"
    stages = tel.stage_spans()
    assert {s.name for s in stages} == {"preprocess", "inference"}
    assert all(parent_of(s) == ok.context.span_id for s in stages)
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1
    assert tel.count(tx.PREDICTIONS.otel_name, status="error") == 1  # the 422; /health is not a prediction
    assert sum(p.count for p in tel.points(tx.PREDICTION_LATENCY.otel_name)) == 2


async def test_fastapi_every_counted_error_belongs_to_a_counted_prediction(tel: Capture, fastapi_on) -> None:
    """The report: errors were counted while model_predictions_total stayed at 0. A GET is not a prediction
    (prediction_methods), so its failing stage counts no error; a failing POST counts one error and one
    failed prediction, with the same labels (docs/metrics.md)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/explain")
    def explain():
        with modeltel.stage("inference"):
            raise ValueError("no explainer")

    @app.post("/predict")
    def predict():
        with modeltel.stage("inference"):
            raise ValueError("bad row")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/explain")).status_code == 500
        assert tel.count(tx.PREDICTIONS.otel_name) == 0
        assert tel.count(tx.ERRORS.otel_name) == 0
        assert tel.stage_spans()[0].status.status_code.name == "ERROR"
        assert (await client.post("/predict")).status_code == 500
    errors = [(p.attributes[tx.ATTR_MODEL_NAME], p.value) for p in tel.points(tx.ERRORS.otel_name)]
    assert errors == [("env-model", 1)]
    assert tel.count(tx.PREDICTIONS.otel_name, model_name="env-model", status="error") == 1


async def test_fastapi_100_concurrent(tel: Capture, fastapi_on) -> None:
    app = _fastapi_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        responses = await asyncio.gather(*(client.post("/predict", json={}) for _ in range(100)))
    assert all(r.status_code == 200 for r in responses)
    servers = {s.context.span_id: s for s in tel.spans() if s.kind is SpanKind.SERVER}
    assert len(servers) == 100
    per_server: dict[int, list[str]] = {}
    for s in tel.stage_spans():
        assert parent_of(s) in servers
        per_server.setdefault(parent_of(s), []).append(s.name)
    assert len(per_server) == 100 and all(sorted(v) == ["inference", "preprocess"] for v in per_server.values())
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 100


async def test_fastapi_on_then_off(tel: Capture) -> None:
    from starlette.applications import Starlette

    before = (
        Starlette.__dict__["build_middleware_stack"],
        fastapi.FastAPI.__dict__["build_middleware_stack"],
        fastapi.FastAPI,
    )
    ModeltelFastAPIInstrumentor().instrument(tracer_provider=tel.pipeline.tracer_provider)
    ModeltelFastAPIInstrumentor().uninstrument()
    after = (
        Starlette.__dict__["build_middleware_stack"],
        fastapi.FastAPI.__dict__["build_middleware_stack"],
        fastapi.FastAPI,
    )
    assert after == before
    app = _fastapi_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await client.post("/predict", json={})
    assert [s for s in tel.spans() if s.kind is SpanKind.SERVER] == []
    assert tel.count(tx.PREDICTIONS.otel_name) == 0


# ---------------------------------------------------------------- Flask
flask = pytest.importorskip("flask")
from modeltel.instrumentors.flask import ModeltelFlaskInstrumentor  # noqa: E402


@pytest.fixture
def flask_on(tel: Capture):
    ModeltelFlaskInstrumentor().instrument(tracer_provider=tel.pipeline.tracer_provider)
    SklearnInstrumentor().instrument()
    yield
    SklearnInstrumentor().uninstrument()
    ModeltelFlaskInstrumentor().uninstrument()


def _flask_app():
    import flask as fl
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, Y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=500).fit(X, Y)
    app = fl.Flask("t")

    @app.post("/predict")
    def predict():
        body = fl.request.get_json()
        if body.get("boom"):
            raise RuntimeError("boom")
        return {"probs": clf.predict_proba(body["x"]).tolist()}

    @app.get("/healthz")
    def health():
        return "ok"

    return app, X


def test_flask_library_stage_under_server_span(tel: Capture, flask_on) -> None:
    app, X = _flask_app()
    client = app.test_client()
    assert client.post("/predict", json={"x": X[:3].tolist()}).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.post("/predict", json={"boom": True}).status_code == 500
    servers = [s for s in tel.spans() if s.kind is SpanKind.SERVER]
    assert len(servers) == 3
    (inference,) = tel.stage_spans()
    server = next(s for s in servers if s.context.span_id == parent_of(inference))
    assert server.attributes[tx.ATTR_MODEL_NAME] == "env-model"
    assert tel.stage_counts() == {("env-model", "7", "inference"): 1}
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1
    assert tel.count(tx.PREDICTIONS.otel_name, status="error") == 1
    assert sum(p.count for p in tel.points(tx.PREDICTION_CONFIDENCE.otel_name)) == 3


def test_flask_on_then_off(tel: Capture) -> None:
    from flask.app import Flask

    before = (Flask.__dict__["full_dispatch_request"], flask.Flask)
    ModeltelFlaskInstrumentor().instrument(tracer_provider=tel.pipeline.tracer_provider)
    assert Flask.__dict__["full_dispatch_request"] is not before[0]
    ModeltelFlaskInstrumentor().uninstrument()
    assert (Flask.__dict__["full_dispatch_request"], flask.Flask) == before
    app, X = _flask_app()
    app.test_client().post("/predict", json={"x": X[:1].tolist()})
    assert tel.spans() == [] and tel.count(tx.PREDICTIONS.otel_name) == 0


async def test_fastapi_app_prediction_inside_is_not_counted_twice(tel: Capture, fastapi_on) -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/predict")
    @modeltel.monitor_prediction()
    async def predict(body: dict):
        with modeltel.stage("inference"):
            return {"ok": True}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for _ in range(3):
            assert (await client.post("/predict", json={})).status_code == 200
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 3
    assert sum(p.count for p in tel.points(tx.PREDICTION_LATENCY.otel_name)) == 3
    assert tel.stage_counts() == {("env-model", "7", "inference"): 3}
