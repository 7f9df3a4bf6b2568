from __future__ import annotations

import inspect

import pytest

from modeltel import taxonomy as tx
from modeltel.testing import Capture

ls = pytest.importorskip("litserve")
from litserve import LitAPI  # noqa: E402

from modeltel.instrumentors.litserve import LitServeInstrumentor  # noqa: E402

METHODS = ("decode_request", "batch", "predict", "unbatch", "encode_response")


class SyncApi(LitAPI):
    def decode_request(self, request):
        return request["x"]

    def batch(self, inputs):
        return list(inputs)

    def predict(self, x):
        return [v * 2 for v in x] if isinstance(x, list) else x * 2

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        return {"y": output}


class AsyncStreamingApi(LitAPI):
    async def decode_request(self, request):
        return request["x"]

    async def predict(self, x):
        for i in range(3):
            yield x + i

    async def encode_response(self, outputs):
        async for o in outputs:
            yield {"y": o}


@pytest.fixture
def instrumented():
    LitServeInstrumentor().instrument()
    yield
    LitServeInstrumentor().uninstrument()


def _kinds(cls):
    return {
        m: (inspect.iscoroutinefunction(getattr(cls, m)), inspect.isasyncgenfunction(getattr(cls, m)))
        for m in ("decode_request", "predict", "encode_response")
    }


def test_sync_stages_and_batch_size(tel: Capture, instrumented) -> None:
    api = SyncApi(max_batch_size=4, batch_timeout=0.01)
    xs = [api.decode_request({"x": i}) for i in range(3)]
    outs = api.unbatch(api.predict(api.batch(xs)))
    assert [api.encode_response(o) for o in outs] == [{"y": 0}, {"y": 2}, {"y": 4}]
    assert tel.stage_counts() == {
        ("env-model", "7", "preprocess"): 3,
        ("env-model", "7", "batch"): 1,
        ("env-model", "7", "inference"): 1,
        ("env-model", "7", "unbatch"): 1,
        ("env-model", "7", "postprocess"): 3,
    }
    (batch_span,) = [s for s in tel.spans() if s.name == "batch"]
    assert batch_span.attributes[tx.SPAN_ATTR_BATCH_SIZE] == 3
    (point,) = tel.points(tx.BATCH_SIZE.otel_name)
    assert point.count == 1 and point.sum == 3
    assert {s.attributes[tx.SPAN_ATTR_FRAMEWORK_STAGE] for s in tel.spans()} == set(METHODS)


async def test_async_streaming_kinds_kept(tel: Capture, instrumented) -> None:
    before = _kinds(AsyncStreamingApi)
    api = AsyncStreamingApi(enable_async=True, stream=True)  # LitServe validates the kinds here
    assert (
        _kinds(AsyncStreamingApi)
        == before
        == {
            "decode_request": (True, False),
            "predict": (False, True),
            "encode_response": (False, True),
        }
    )
    x = await api.decode_request({"x": 1})
    assert [o async for o in api.encode_response(api.predict(x))] == [{"y": 1}, {"y": 2}, {"y": 3}]
    assert {s.name for s in tel.spans()} == {"preprocess", "inference", "postprocess"}
    assert tel.stage_counts()[("env-model", "7", "inference")] == 1


def test_overrides_told_apart_by_code(instrumented) -> None:
    # LitServe compares ``method.__code__`` with LitAPI's to find overrides; wrapping must not change the answer
    assert SyncApi.unbatch.__code__ is not LitAPI.unbatch.__code__
    assert AsyncStreamingApi.unbatch.__code__ is LitAPI.unbatch.__code__


def test_off_and_on_then_off(tel: Capture) -> None:
    before = {(c, m): c.__dict__.get(m) for c in (LitAPI, SyncApi, AsyncStreamingApi) for m in METHODS}
    LitServeInstrumentor().instrument()
    LitServeInstrumentor().uninstrument()
    assert {(c, m): c.__dict__.get(m) for c in (LitAPI, SyncApi, AsyncStreamingApi) for m in METHODS} == before
    api = SyncApi()
    api.encode_response(api.predict(api.decode_request({"x": 1})))
    assert tel.spans() == []
