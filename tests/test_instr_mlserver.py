from __future__ import annotations

import asyncio
import inspect

import numpy as np
import pytest

from modeltel import taxonomy as tx
from modeltel.testing import Capture
from tests.conftest import parent_of

mlserver = pytest.importorskip("mlserver")
from mlserver import MLModel  # noqa: E402
from mlserver.codecs import NumpyCodec, NumpyRequestCodec  # noqa: E402
from mlserver.settings import ModelParameters, ModelSettings  # noqa: E402
from mlserver.types import InferenceRequest, InferenceResponse  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from modeltel.instrumentors.mlserver import MLServerInstrumentor  # noqa: E402
from modeltel.instrumentors.sklearn import SklearnInstrumentor  # noqa: E402

X, Y = load_iris(return_X_y=True)
CLF = LogisticRegression(max_iter=500).fit(X, Y)


class Iris(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = self.decode_request(payload, default_codec=NumpyRequestCodec)
        if x.shape[1] != 4:
            raise KeyError("width")
        await asyncio.sleep(0.001)
        return self.encode_response(CLF.predict_proba(x), default_codec=NumpyCodec)


class NoCodec(MLModel):
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return self.encode_response(np.zeros((1, 1)), default_codec=NumpyCodec)


def _settings(name: str = "iris-ml", version: str | None = "v2", cls: type = Iris) -> ModelSettings:
    params = ModelParameters(version=version) if version is not None else None
    return ModelSettings(name=name, implementation=cls, parameters=params)


def _request(rows=X[:2]) -> InferenceRequest:
    return NumpyRequestCodec.encode_request(np.asarray(rows, dtype=np.float64))


NAMES = ("predict", "predict_stream", "decode_request", "encode_response")


def _dicts(*classes):
    return {(c, n): c.__dict__.get(n) for c in classes for n in (*NAMES, "__init_subclass__")}


@pytest.fixture
def instrumented():
    MLServerInstrumentor().instrument()
    yield
    MLServerInstrumentor().uninstrument()


async def test_off(tel: Capture) -> None:
    out = await Iris(_settings()).predict(_request())
    assert isinstance(out, InferenceResponse)
    assert tel.spans() == []


async def test_prediction_with_codec_stages(tel: Capture, instrumented) -> None:
    assert inspect.iscoroutinefunction(Iris.predict)
    assert inspect.isasyncgenfunction(MLModel.predict_stream)
    assert not inspect.iscoroutinefunction(MLModel.decode_request)
    m = Iris(_settings())
    out = await m.predict(_request())
    assert NumpyCodec.decode_output(out.outputs[0]).shape == (2, 3)
    spans = {s.name: s for s in tel.spans()}
    assert set(spans) == {"predict", "inference", "preprocess", "postprocess"}
    root = spans["predict"]
    assert root.parent is None
    assert root.attributes[tx.ATTR_MODEL_NAME] == "iris-ml"
    assert root.attributes[tx.ATTR_MODEL_VERSION] == "v2"
    assert parent_of(spans["inference"]) == root.context.span_id
    for name in ("preprocess", "postprocess"):
        assert parent_of(spans[name]) == spans["inference"].context.span_id
    assert spans["preprocess"].attributes[tx.SPAN_ATTR_FRAMEWORK_STAGE] == "decode_request"
    assert spans["postprocess"].attributes[tx.SPAN_ATTR_FRAMEWORK_STAGE] == "encode_response"
    assert spans["inference"].attributes[tx.SPAN_ATTR_FRAMEWORK] == "mlserver"
    assert tel.stage_counts() == {("iris-ml", "v2", s): 1 for s in ("preprocess", "inference", "postprocess")}
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1


async def test_no_version_falls_back_to_environment(tel: Capture, instrumented) -> None:
    await NoCodec(_settings("nocodec", None, NoCodec)).predict(_request())
    assert set(tel.stage_counts()) == {("nocodec", "7", "inference"), ("nocodec", "7", "postprocess")}


async def test_error_seen_unchanged_and_counted_once(tel: Capture, instrumented) -> None:
    with pytest.raises(KeyError) as info:
        await Iris(_settings()).predict(_request([[1.0, 2.0]]))
    assert info.value.args == ("width",)
    assert tel.count(tx.ERRORS.otel_name, error_type="KeyError") == 1
    assert tel.count(tx.PREDICTIONS.otel_name, status="error") == 1


async def test_sklearn_nested_is_child_not_second_sample(tel: Capture, instrumented) -> None:
    SklearnInstrumentor().instrument()
    try:
        await Iris(_settings()).predict(_request())
    finally:
        SklearnInstrumentor().uninstrument()
    spans = {s.name: s for s in tel.spans()}
    assert parent_of(spans["sklearn.predict_proba"]) == spans["inference"].context.span_id
    assert tel.stage_counts()[("iris-ml", "v2", "inference")] == 1
    assert sum(p.count for p in tel.points(tx.PREDICTION_CONFIDENCE.otel_name)) == 2


async def test_subclass_after_instrument_and_super_call(tel: Capture, instrumented) -> None:
    class Later(Iris):
        async def predict(self, payload):
            return await super().predict(payload)

        def decode_request(self, inference_request, default_codec=None):
            return super().decode_request(inference_request, default_codec)

    assert inspect.iscoroutinefunction(Later.predict)
    await Later(_settings("later", "1", Later)).predict(_request())
    assert tel.stage_counts() == {("later", "1", s): 1 for s in ("preprocess", "inference", "postprocess")}
    assert len(tel.spans("predict")) == 1
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1


async def test_predict_stream_is_a_prediction(tel: Capture, instrumented) -> None:
    class Streamer(MLModel):
        async def predict_stream(self, payloads):
            async for _p in payloads:
                yield self.encode_response(np.ones((1, 1)), default_codec=NumpyCodec)

    async def two():
        for _ in range(2):
            yield _request()

    assert inspect.isasyncgenfunction(Streamer.predict_stream)
    out = [r async for r in Streamer(_settings("stream", "3", Streamer)).predict_stream(two())]
    assert len(out) == 2
    assert len(tel.spans("predict")) == 1
    assert tel.stage_counts()[("stream", "3", "inference")] == 1
    assert tel.stage_counts()[("stream", "3", "postprocess")] == 2


async def test_concurrent_requests_keep_their_stages(tel: Capture, instrumented) -> None:
    m = Iris(_settings())
    await asyncio.gather(*(m.predict(_request()) for _ in range(50)))
    spans = tel.spans()
    roots = {s.context.span_id: s for s in spans if s.name == "predict"}
    assert len(roots) == 50
    infer = {s.context.span_id: s for s in spans if s.name == "inference"}
    assert {parent_of(s) for s in infer.values()} == set(roots)
    assert all(parent_of(s) in infer for s in spans if s.name in ("preprocess", "postprocess"))


def test_on_then_off_restores_exactly() -> None:
    before = _dicts(MLModel, Iris, NoCodec)
    MLServerInstrumentor().instrument()
    try:
        assert MLModel.__dict__["decode_request"] is not before[(MLModel, "decode_request")]
        assert inspect.iscoroutinefunction(Iris.predict) and inspect.iscoroutinefunction(MLModel.predict)
        assert inspect.isasyncgenfunction(MLModel.predict_stream)
    finally:
        MLServerInstrumentor().uninstrument()
    assert _dicts(MLModel, Iris, NoCodec) == before
    MLServerInstrumentor().instrument()
    MLServerInstrumentor().uninstrument()
    assert _dicts(MLModel, Iris, NoCodec) == before


async def test_takes_over_the_http_request_prediction(tel: Capture, instrumented) -> None:
    import modeltel

    with modeltel.prediction(own_span=False):  # what the FastAPI instrumentor opens per request
        await Iris(_settings()).predict(_request())
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1
    assert tel.count(tx.PREDICTIONS.otel_name, status="success", model_name="iris-ml", model_version="v2") == 1
