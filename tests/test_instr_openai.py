"""The ``openai`` client instrumentor against the project's OpenAI-compatible example server (on a free port,
never a hosted API): client-side generations, sync and async, streamed and whole, early close, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("transformers")
import uvicorn  # noqa: E402

from modeltel import taxonomy as tx  # noqa: E402
from modeltel.examples import openai_server, tinylm  # noqa: E402
from modeltel.instrumentors.openai import OpenAIInstrumentor  # noqa: E402
from modeltel.testing import Capture  # noqa: E402
from tests.instr.servers import free_port  # noqa: E402

DURATION = tx.GEN_AI_CLIENT_OPERATION_DURATION.otel_name
USAGE = tx.GEN_AI_CLIENT_TOKEN_USAGE.otel_name
PREDICTIONS = tx.PREDICTIONS.otel_name
MESSAGES = [{"role": "user", "content": "hello"}]
EXTRA = {"ignore_eos": True}  # exactly max_tokens tokens (vLLM's extension; the example server has it)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example server, in a thread of this process, on a free port (not instrumented: the client is)."""
    app = openai_server.create_app(str(tinylm.save(tmp_path_factory.mktemp("tinylm"))))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the example server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def on(tel: Capture) -> Iterator[None]:
    OpenAIInstrumentor().instrument(tracer_provider=tel.pipeline.tracer_provider)
    yield
    OpenAIInstrumentor().uninstrument()


@pytest.fixture
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0) as c:
        yield c


def usage(tel: Capture, kind: str, **attrs: str) -> tuple[int, float]:
    p = tel.point(USAGE, **{tx.ATTR_GEN_AI_TOKEN_TYPE: kind}, **attrs)
    return p.count, p.sum


def test_chat_stream_with_usage(tel: Capture, on, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tinylm", messages=MESSAGES, max_tokens=5, stream=True,
        stream_options={"include_usage": True}, extra_body=EXTRA,
    )  # fmt: skip
    chunks = list(stream)
    (reported,) = [c.usage for c in chunks if c.usage is not None]
    labels = {tx.ATTR_GEN_AI_OPERATION_NAME: "chat", tx.ATTR_GEN_AI_REQUEST_MODEL: "tinylm"}
    assert tel.point(DURATION, **labels, **{tx.ATTR_GEN_AI_RESPONSE_MODEL: "tinylm"}).count == 1
    assert usage(tel, "input", **labels) == (1, reported.prompt_tokens)
    assert usage(tel, "output", **labels) == (1, 5)
    assert tel.points(tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name) == []  # the server's to record
    assert tel.count(PREDICTIONS, status="success", **{tx.ATTR_MODEL_NAME: "tinylm"}) == 1
    (span,) = tel.spans("chat tinylm")
    attrs = span.attributes
    assert attrs[tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)
    assert 0 < attrs[tx.SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN] <= tel.point(DURATION).sum
    assert attrs[tx.SPAN_ATTR_GEN_AI_TIME_PER_OUTPUT_TOKEN] > 0
    assert [e.name for e in span.events] == [tx.SPAN_EVENT_GEN_AI_FIRST_TOKEN]


def test_whole_completion(tel: Capture, on, client: openai.OpenAI) -> None:
    result = client.completions.create(model="tinylm", prompt="the model", max_tokens=3, extra_body=EXTRA)
    labels = {tx.ATTR_GEN_AI_OPERATION_NAME: "text_completion"}
    assert usage(tel, "input", **labels) == (1, result.usage.prompt_tokens)
    assert usage(tel, "output", **labels) == (1, 3)
    (span,) = tel.spans("text_completion tinylm")
    assert tx.SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN not in span.attributes  # no token was seen arrive
    assert span.attributes[tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)


def test_stream_left_early_is_cancelled(tel: Capture, on, client: openai.OpenAI) -> None:
    with client.chat.completions.create(
        model="tinylm", messages=MESSAGES, max_tokens=8, stream=True, extra_body=EXTRA
    ) as stream:
        assert isinstance(stream, openai.Stream)  # the proxy passes for the client's own
        next(iter(stream))
    assert tel.count(PREDICTIONS, status="cancelled") == 1
    assert tel.count(PREDICTIONS) == 1
    assert tel.point(DURATION).attributes[tx.ATTR_ERROR_TYPE] == "cancelled"


def test_error_is_counted(tel: Capture, on, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MESSAGES, stream=True)
    assert tel.point(DURATION).attributes[tx.ATTR_ERROR_TYPE] == "NotFoundError"
    assert tel.count(PREDICTIONS, status="error") == 1


async def test_async_stream_and_whole(tel: Capture, on, base_url: str) -> None:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        stream = await client.completions.create(
            model="tinylm", prompt="hi", max_tokens=4, stream=True, extra_body=EXTRA
        )
        texts = [c.choices[0].text async for c in stream if c.choices]
        whole = await client.chat.completions.create(model="tinylm", messages=MESSAGES, max_tokens=2)
    assert len(texts) == 5  # four tokens and the finish chunk
    assert usage(tel, "output", **{tx.ATTR_GEN_AI_OPERATION_NAME: "text_completion"}) == (1, 4)  # counted
    assert usage(tel, "output", **{tx.ATTR_GEN_AI_OPERATION_NAME: "chat"}) == (1, whole.usage.completion_tokens)
    assert tel.count(PREDICTIONS, status="success") == 2


async def test_async_stream_closed_early_is_cancelled(tel: Capture, on, base_url: str) -> None:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        async with await client.chat.completions.create(
            model="tinylm", messages=MESSAGES, max_tokens=8, stream=True, extra_body=EXTRA
        ) as stream:
            await stream.__anext__()
    assert tel.count(PREDICTIONS, status="cancelled") == 1


def test_stream_helper_goes_through(tel: Capture, on, client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="tinylm", messages=MESSAGES, max_tokens=3, extra_body=EXTRA) as s:
        kinds = [event.type for event in s]
    assert kinds.count("chunk") == 4  # three tokens and the finish chunk, through the proxy
    assert usage(tel, "output") == (1, 3)


def test_uninstrument_restores_exactly(tel: Capture, client: openai.OpenAI) -> None:
    from openai.resources.chat import Completions

    original = Completions.__dict__["create"]
    OpenAIInstrumentor().instrument(tracer_provider=tel.pipeline.tracer_provider)
    assert Completions.__dict__["create"] is not original
    OpenAIInstrumentor().uninstrument()
    assert Completions.__dict__["create"] is original
    client.chat.completions.create(model="tinylm", messages=MESSAGES, max_tokens=2)
    assert tel.points(DURATION) == []


def test_two_calls_in_one_request_are_children_of_its_one_prediction(tel: Capture, on, base_url: str) -> None:
    # A FastAPI app whose handler calls the upstream model twice (whole, then streamed): the request is one
    # prediction, the server's; each call is its CLIENT child with its own client-side GenAI series.
    fastapi = pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.trace import SpanKind

    from modeltel.instrumentors.fastapi import ModeltelFastAPIInstrumentor
    from modeltel_collector.process.spanmetrics import process_traces
    from modeltel_collector.store.metrics import MetricStore

    app = fastapi.FastAPI()

    @app.post("/answer")
    def answer() -> dict:
        with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0) as upstream:
            create = upstream.chat.completions.create
            whole = create(model="tinylm", messages=MESSAGES, max_tokens=2, extra_body=EXTRA)
            chunks = create(model="tinylm", messages=MESSAGES, max_tokens=3, stream=True, extra_body=EXTRA)
            streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return {"text": whole.choices[0].message.content + streamed}

    ModeltelFastAPIInstrumentor.instrument_app(app, tracer_provider=tel.pipeline.tracer_provider)
    try:
        with TestClient(app) as c:
            assert c.post("/answer").status_code == 200
    finally:
        ModeltelFastAPIInstrumentor.uninstrument_app(app)
    assert tel.count(PREDICTIONS) == 1
    assert tel.count(PREDICTIONS, model_name="env-model", status="success") == 1
    assert tel.point(DURATION, model_name="env-model", **{tx.ATTR_GEN_AI_REQUEST_MODEL: "tinylm"}).count == 2
    (server,) = tel.spans("POST /answer")
    assert server.attributes[tx.SPAN_ATTR_KIND] == tx.SPAN_KIND_PREDICTION  # not replaced by a call
    calls = tel.spans("chat tinylm")
    assert len(calls) == 2
    assert all(s.kind == SpanKind.CLIENT and s.parent.span_id == server.context.span_id for s in calls)
    assert all(s.attributes[tx.SPAN_ATTR_KIND] == tx.SPAN_KIND_CLIENT for s in calls)
    store = MetricStore()
    process_traces(encode_spans(tel.spans()), store)  # a trace-only app: the collector counts the same
    assert sum(s.value for s in store.families[tx.PREDICTIONS.prometheus_name].series.values()) == 1
    client = store.families[tx.GEN_AI_CLIENT_OPERATION_DURATION.prometheus_name].series.values()
    assert sum(s.count for s in client) == 2
