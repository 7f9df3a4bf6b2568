from __future__ import annotations

import asyncio
import inspect

import numpy as np
import pytest

from modeltel import taxonomy as tx
from modeltel.testing import Capture
from tests.conftest import parent_of

bentoml = pytest.importorskip("bentoml")
from _bentoml_sdk.method import APIMethod  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from modeltel.instrumentors.bentoml import BentoMLInstrumentor  # noqa: E402
from modeltel.instrumentors.sklearn import SklearnInstrumentor  # noqa: E402

X, Y = load_iris(return_X_y=True)
CLF = LogisticRegression(max_iter=500).fit(X, Y)


@bentoml.service(name="iris-bento")
class IrisService:
    @bentoml.api
    def classify(self, rows: list[list[float]]) -> list[int]:
        if len(rows[0]) != 4:
            raise KeyError("width")
        return CLF.predict(np.asarray(rows)).tolist()

    @bentoml.api
    async def proba(self, rows: list[list[float]]) -> list[list[float]]:
        await asyncio.sleep(0.001)
        return CLF.predict_proba(np.asarray(rows)).tolist()

    @bentoml.api(batchable=True)
    def batch(self, rows: np.ndarray) -> np.ndarray:
        return CLF.predict(rows)

    @bentoml.api
    def stream(self, n: int = 2):
        yield from (str(i) for i in range(n))

    @bentoml.api
    def chained(self, rows: list[list[float]]) -> list[int]:
        return self.classify(rows)


@bentoml.service
class Plain:
    @bentoml.api
    def echo(self, text: str) -> str:
        return text


ROWS = X[:3].tolist()
APIS = ("classify", "proba", "batch", "stream", "chained")


def _funcs():
    return (
        {n: IrisService.apis[n].func for n in APIS},
        Plain.apis["echo"].func,
        APIMethod.__dict__["_local_call"],
    )


@pytest.fixture
def instrumented():
    BentoMLInstrumentor().instrument()
    yield
    BentoMLInstrumentor().uninstrument()


def test_off(tel: Capture) -> None:
    assert IrisService().classify(ROWS) == CLF.predict(X[:3]).tolist()
    assert tel.spans() == []


def test_sync_api_is_a_prediction(tel: Capture, instrumented) -> None:
    assert IrisService().classify(ROWS) == CLF.predict(X[:3]).tolist()
    spans = {s.name: s for s in tel.spans()}
    assert set(spans) == {"predict", "inference"}
    assert spans["predict"].attributes[tx.ATTR_MODEL_NAME] == "iris-bento"
    assert spans["predict"].attributes[tx.SPAN_ATTR_FRAMEWORK_STAGE] == "classify"
    assert parent_of(spans["inference"]) == spans["predict"].context.span_id
    assert spans["inference"].attributes[tx.SPAN_ATTR_FRAMEWORK] == "bentoml"
    assert tel.stage_counts() == {("iris-bento", "7", "inference"): 1}
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1
    assert not any(p.count for p in tel.points(tx.BATCH_SIZE.otel_name))


async def test_async_api_keeps_kind(tel: Capture, instrumented) -> None:
    svc = IrisService()
    call = svc.proba
    assert inspect.iscoroutinefunction(IrisService.apis["proba"].func)
    out = await call(ROWS)
    assert len(out) == 3
    assert tel.stage_counts() == {("iris-bento", "7", "inference"): 1}
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1


def test_class_name_is_default_service_name(tel: Capture, instrumented) -> None:
    assert Plain().echo("x") == "x"
    assert tel.stage_counts() == {("Plain", "7", "inference"): 1}


def test_batchable_records_batch_size(tel: Capture, instrumented) -> None:
    IrisService().batch(X[:5])
    spans = {s.name: s for s in tel.spans()}
    assert spans["inference"].attributes[tx.SPAN_ATTR_BATCH_SIZE] == 5
    points = [p for p in tel.points(tx.BATCH_SIZE.otel_name) if p.count]
    assert len(points) == 1 and points[0].sum == 5
    assert points[0].attributes[tx.ATTR_MODEL_NAME] == "iris-bento"


def test_stream_is_a_generation(tel: Capture, instrumented) -> None:
    assert inspect.isgeneratorfunction(IrisService.apis["stream"].func)
    assert list(IrisService().stream(3)) == ["0", "1", "2"]
    assert tel.stage_counts() == {("iris-bento", "7", "inference"): 1}  # the stage spans the stream
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1
    ttft = tel.point(tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name)
    assert ttft.count == 1 and ttft.attributes[tx.ATTR_MODEL_NAME] == "iris-bento"
    usage = tel.point(tx.GEN_AI_CLIENT_TOKEN_USAGE.otel_name, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "output"})
    assert usage.sum == 3  # one token per yielded item
    (inference,) = tel.stage_spans()
    (generation,) = tel.spans("text_completion iris-bento")
    assert parent_of(inference) == generation.context.span_id


def test_stream_left_early_is_cancelled(tel: Capture, instrumented) -> None:
    tokens = IrisService().stream(5)
    assert next(tokens) == "0"
    tokens.close()
    assert tel.count(tx.PREDICTIONS.otel_name, status="cancelled") == 1
    assert tel.count(tx.PREDICTIONS.otel_name) == 1


async def test_async_stream_is_a_generation(tel: Capture, instrumented) -> None:
    @bentoml.service(name="tokens")
    class Tokens:
        @bentoml.api
        async def generate(self, n: int = 2):
            for i in range(n):
                await asyncio.sleep(0)
                yield str(i)

    assert inspect.isasyncgenfunction(Tokens.apis["generate"].func)
    assert [t async for t in Tokens().generate(4)] == ["0", "1", "2", "3"]
    usage = tel.point(tx.GEN_AI_CLIENT_TOKEN_USAGE.otel_name, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "output"})
    assert usage.sum == 4 and usage.attributes[tx.ATTR_MODEL_NAME] == "tokens"
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1


def test_api_calling_api_is_one_prediction(tel: Capture, instrumented) -> None:
    IrisService().chained(ROWS)
    assert len(tel.spans("predict")) == 1
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1


def test_error_seen_unchanged_and_counted_once(tel: Capture, instrumented) -> None:
    with pytest.raises(KeyError) as info:
        IrisService().classify([[1.0, 2.0]])
    assert info.value.args == ("width",)
    assert tel.count(tx.ERRORS.otel_name, error_type="KeyError") == 1
    assert tel.count(tx.PREDICTIONS.otel_name, status="error") == 1


def test_sklearn_nested_is_child(tel: Capture, instrumented) -> None:
    SklearnInstrumentor().instrument()
    try:
        asyncio.run(IrisService().proba(ROWS))
    finally:
        SklearnInstrumentor().uninstrument()
    spans = {s.name: s for s in tel.spans()}
    assert parent_of(spans["sklearn.predict_proba"]) == spans["inference"].context.span_id
    assert tel.stage_counts() == {("iris-bento", "7", "inference"): 1}


def test_service_defined_after_instrument(tel: Capture, instrumented) -> None:
    @bentoml.service(name="late")
    class Late:
        @bentoml.api
        def go(self, x: int) -> int:
            return x + 1

    assert Late().go(1) == 2
    assert tel.stage_counts() == {("late", "7", "inference"): 1}


def test_through_bentoml_http_app(tel: Capture, instrumented) -> None:
    """BentoML's own ASGI app (its server's request path, batching dispatcher included), in process, with
    the HTTP instrumentor on too: each request counted once, by the API's prediction (or generation, for
    the streamed one: the HTTP layer gives way to it). One app per process: BentoML registers its metrics."""
    from _bentoml_impl.server.app import ServiceAppFactory
    from starlette.testclient import TestClient

    from modeltel.instrumentors.fastapi import ModeltelFastAPIInstrumentor

    IrisService.inject_config()
    ModeltelFastAPIInstrumentor().instrument(tracer_provider=tel.pipeline.tracer_provider)
    try:
        with TestClient(ServiceAppFactory(IrisService, is_main=True)()) as client:
            r = client.post("/classify", json={"rows": ROWS})
            assert r.status_code == 200, r.text
            r = client.post("/batch", json={"rows": X[:2].tolist()})
            assert r.status_code == 200, r.text
            r = client.post("/stream", json={"n": 4})
            assert r.status_code == 200 and r.text == "0123", r.text
    finally:
        ModeltelFastAPIInstrumentor().uninstrument()
    counts = tel.stage_counts()
    assert counts[("iris-bento", "7", "inference")] == 3
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 3
    assert tel.count(tx.PREDICTIONS.otel_name) == 3
    batch = [p for p in tel.points(tx.BATCH_SIZE.otel_name) if p.count]
    assert sum(p.sum for p in batch) == 2
    ttft = tel.point(tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name)
    assert ttft.count == 1 and ttft.attributes[tx.ATTR_MODEL_NAME] == "iris-bento"


def test_on_then_off_restores_exactly() -> None:
    before = _funcs()
    BentoMLInstrumentor().instrument()
    try:
        IrisService().classify(ROWS)
        Plain().echo("x")
        assert IrisService.apis["classify"].func is not before[0]["classify"]
        assert inspect.iscoroutinefunction(IrisService.apis["proba"].func)
    finally:
        BentoMLInstrumentor().uninstrument()
    assert _funcs() == before
    BentoMLInstrumentor().instrument()
    BentoMLInstrumentor().uninstrument()
    assert _funcs() == before


def test_takes_over_the_http_request_prediction(tel: Capture, instrumented) -> None:
    import modeltel

    with modeltel.prediction(own_span=False):  # what the FastAPI/Starlette instrumentor opens per request
        IrisService().chained(ROWS)
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1
    assert tel.count(tx.PREDICTIONS.otel_name, status="success", model_name="iris-bento") == 1
