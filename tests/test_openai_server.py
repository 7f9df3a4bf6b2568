"""The OpenAI-compatible example server on the tiny model: the protocol (chat and text completions, streamed
and whole, the usage chunk), the decode-slowdown fault, and its streams measured by the FastAPI
instrumentor as generations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from modeltel import taxonomy as tx
from modeltel.examples import openai_server, tinylm
from modeltel.instrumentors.fastapi import ModeltelFastAPIInstrumentor
from modeltel.testing import Capture

CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5, "ignore_eos": True}
COMPLETION = {"prompt": "the model reads", "max_tokens": 4, "ignore_eos": True}
TTFT = tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name
TPOT = tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN.otel_name
USAGE = tx.GEN_AI_CLIENT_TOKEN_USAGE.otel_name


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tinylm.save(tmp_path_factory.mktemp("tinylm"))


@pytest.fixture
def client(folder: Path) -> Iterator[TestClient]:
    with TestClient(openai_server.create_app(str(folder), faults=True)) as c:
        yield c


def events(text: str) -> list[dict | str]:
    assert text.endswith("\n\n")
    out: list[dict | str] = []
    for event in text.split("\n\n")[:-1]:
        assert event.startswith("data: "), event
        payload = event[len("data: ") :]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_chat_whole(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=CHAT).json()
    assert body["object"] == "chat.completion" and body["model"] == "tinylm"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 5


def test_chat_stream_with_usage(client: TestClient) -> None:
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = client.post("/v1/chat/completions", json=request)
    assert response.headers["content-type"].startswith("text/event-stream")
    *chunks, finish, usage, done = events(response.text)
    assert done == "[DONE]"
    assert len(chunks) == 5 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    assert finish["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 5
    whole = client.post("/v1/chat/completions", json=CHAT).json()  # greedy: the same text either way
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == whole["choices"][0]["message"]["content"]


def test_completion_stream_without_usage(client: TestClient) -> None:
    *chunks, finish, done = events(client.post("/v1/completions", json={**COMPLETION, "stream": True}).text)
    assert done == "[DONE]" and len(chunks) == 4
    assert all(c["object"] == "text_completion" and "usage" not in c for c in [*chunks, finish])
    assert finish["choices"][0]["finish_reason"] == "length"


def test_bad_requests(client: TestClient) -> None:
    assert client.post("/v1/completions", json={**COMPLETION, "model": "gpt-4o"}).status_code == 404
    assert client.post("/v1/completions", json={**COMPLETION, "max_tokens": 0}).status_code == 422
    assert client.post("/v1/chat/completions", json={"messages": []}).status_code == 422
    assert client.get("/v1/models").json()["data"][0]["id"] == "tinylm"


def test_faults_only_when_asked(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_SERVER_FAULTS", raising=False)
    with TestClient(openai_server.create_app(str(folder))) as c:
        assert c.post("/faults", json={"decode_delay_s": 1}).status_code in (404, 405)


@pytest.fixture
def instrumented(tel: Capture, folder: Path) -> Iterator[TestClient]:
    ModeltelFastAPIInstrumentor().instrument(tracer_provider=tel.pipeline.tracer_provider)
    try:
        with TestClient(openai_server.create_app(str(folder), faults=True)) as c:
            yield c
    finally:
        ModeltelFastAPIInstrumentor().uninstrument()


def test_streams_are_generations_under_the_instrumentor(tel: Capture, instrumented: TestClient) -> None:
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    usage = events(instrumented.post("/v1/chat/completions", json=request).text)[-2]["usage"]
    instrumented.post("/v1/completions", json={**COMPLETION, "stream": True})
    instrumented.post("/v1/completions", json=COMPLETION)  # whole: a plain prediction
    chat = {tx.ATTR_GEN_AI_OPERATION_NAME: "chat", tx.ATTR_GEN_AI_RESPONSE_MODEL: "tinylm"}
    assert tel.point(USAGE, **chat, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "input"}).sum == usage["prompt_tokens"]
    assert tel.point(USAGE, **chat, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "output"}).sum == 5
    text = {tx.ATTR_GEN_AI_OPERATION_NAME: "text_completion"}
    assert tel.point(USAGE, **text, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "output"}).sum == 4  # counted: no usage chunk
    assert sum(p.count for p in tel.points(TTFT)) == 2
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 3


def test_fault_knobs_slow_decode_and_prefill(tel: Capture, instrumented: TestClient) -> None:
    assert instrumented.post("/faults", json={"decode_delay_s": 0.05}).status_code == 200
    instrumented.post("/v1/completions", json={**COMPLETION, "stream": True})
    assert tel.point(TPOT).sum >= 0.05  # every token after the first waited 50 ms
    assert instrumented.post("/faults", json={"prefill_delay_s": 0.2}).json()["decode_delay_s"] == 0
    instrumented.post("/v1/completions", json={**COMPLETION, "stream": True})
    ttft = tel.point(TTFT)
    assert ttft.count == 2 and ttft.sum >= 0.2  # the second waited 200 ms before its first token


def test_a_streamed_request_is_one_prediction_in_the_sdk_and_in_the_collectors_span_derived_series(
    tel: Capture, folder: Path
) -> None:
    # With the server span (instrument_app adds it): the generation the stream opens is the request's
    # prediction, and the server span around it says it is none, so a trace-only app is counted once too.
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from modeltel_collector.process.spanmetrics import process_traces
    from modeltel_collector.store.metrics import MetricStore

    app = openai_server.create_app(str(folder))
    ModeltelFastAPIInstrumentor.instrument_app(app, tracer_provider=tel.pipeline.tracer_provider)
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with TestClient(app) as c:
        assert c.post("/v1/chat/completions", json=request).status_code == 200
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 200  # whole: the server span counts
    ModeltelFastAPIInstrumentor.uninstrument_app(app)
    assert tel.count(tx.PREDICTIONS.otel_name) == 2
    (server, whole) = [s for s in tel.spans() if s.name == "POST /v1/chat/completions"]
    assert server.attributes[tx.SPAN_ATTR_KIND] == tx.SPAN_KIND_REQUEST
    assert whole.attributes[tx.SPAN_ATTR_KIND] == tx.SPAN_KIND_PREDICTION
    (generation,) = tel.spans("chat env-model")
    assert generation.parent.span_id == server.context.span_id
    store = MetricStore()
    process_traces(encode_spans(tel.spans()), store)
    derived = store.families[tx.PREDICTIONS.prometheus_name].series.values()
    assert sum(s.value for s in derived) == 2


def test_decoding_holds_no_inference_mode_over_a_yield(folder: Path) -> None:
    """Inference mode is the thread's state: held across a yield it leaked into the consumer (and into the
    worker thread Starlette iterates a sync stream on), which then could not train: a later test's
    ``backward()`` failed with "does not require grad"."""
    import torch

    lm = openai_server.TinyLM(str(folder))
    tokens = lm.decode(lm.encode("hello"), 3, ignore_eos=True)
    next(tokens)
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
    assert len([next(tokens), *tokens]) == 2
