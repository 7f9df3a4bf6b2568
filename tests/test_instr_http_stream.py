"""FastAPI / Starlette streamed responses as generations: TTFT at the first body chunk (from the request's
arrival), the end at the last, OpenAI-compatible usage and finish reasons read from the events, a client
that leaves is ``cancelled``; with exact values on a clock the app drives."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from modeltel import taxonomy as tx
from modeltel.hotpath import generation as generation_module
from modeltel.hotpath import stage as stage_module
from modeltel.instrumentors import http_stream
from modeltel.testing import Capture
from tests.test_generation import Clock

fastapi = pytest.importorskip("fastapi")
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import StreamingResponse  # noqa: E402

from modeltel.instrumentors.fastapi import ModeltelFastAPIInstrumentor  # noqa: E402

TTFT = tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name
TPOT = tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN.otel_name
DURATION = tx.GEN_AI_SERVER_REQUEST_DURATION.otel_name
USAGE = tx.GEN_AI_CLIENT_TOKEN_USAGE.otel_name
PREDICTIONS = tx.PREDICTIONS.otel_name
ERRORS = tx.ERRORS.otel_name


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    for module in (stage_module, generation_module):
        monkeypatch.setattr(module, "perf_counter", c)
    for module in (generation_module, http_stream):  # the request's arrival, the generation's start_time_ns
        monkeypatch.setattr(module, "time_ns", lambda: int(c.now * 1e9))
    return c


@pytest.fixture
def fastapi_on(tel: Capture) -> Iterator[None]:
    ModeltelFastAPIInstrumentor().instrument(
        tracer_provider=tel.pipeline.tracer_provider, exclude_spans=["receive", "send"]
    )
    yield
    ModeltelFastAPIInstrumentor().uninstrument()


def sse(obj: object) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def chunk(text: str | None, finish: str | None = None) -> str:
    delta = {} if text is None else {"content": text}
    head = {"id": "c1", "object": "chat.completion.chunk", "model": "served-7b"}
    return sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def app_for(clock: Clock, gaps: list[float], *, usage: bool = True, plain: bool = False) -> FastAPI:
    """An app whose handler takes 0.1 s, then streams one chunk after each gap (then finish, usage, done)."""
    app = FastAPI()

    async def events() -> AsyncIterator[str]:
        for i, gap in enumerate(gaps):
            clock.now += gap
            yield f"t{i} " if plain else chunk(f"t{i}")
        if plain:
            return
        yield chunk(None, "stop")
        if usage:
            yield sse({"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": _usage(7, len(gaps))})
        yield "data: [DONE]\n\n"

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        clock.now += 0.1  # the handler's own work, before the body starts
        if body.get("stream", True):
            return StreamingResponse(events(), media_type="text/plain" if plain else "text/event-stream")
        return {"choices": [{"message": {"content": "t0"}}], "usage": _usage(7, 1)}

    return app


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def post(app: FastAPI, body: dict) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return await client.post("/v1/chat/completions", json=body)


def value(tel: Capture, name: str, **attrs: str) -> tuple[int, float]:
    p = tel.point(name, **attrs)
    return p.count, p.sum


async def test_sse_stream_is_a_generation(tel: Capture, clock: Clock, fastapi_on) -> None:
    response = await post(app_for(clock, [0.4, 0.1, 0.2, 0.3]), {})
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    labels = {tx.ATTR_GEN_AI_OPERATION_NAME: "chat", tx.ATTR_GEN_AI_RESPONSE_MODEL: "served-7b"}
    assert value(tel, TTFT, **labels) == (1, pytest.approx(0.5))  # from the arrival: 0.1 handler + 0.4
    assert value(tel, TPOT, **labels) == (1, pytest.approx(0.2))  # the finish/usage/[DONE] chunks are no tokens
    assert value(tel, DURATION, **labels) == (1, pytest.approx(1.1))
    assert value(tel, USAGE, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "input"}) == (1, 7)
    assert value(tel, USAGE, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "output"}) == (1, 4)
    assert tel.count(PREDICTIONS, status="success") == 1  # the request, counted once: as the generation
    assert tel.count(PREDICTIONS) == 1
    (span,) = tel.spans("chat env-model")
    assert span.start_time == 100 * 10**9  # the request's arrival on the clock (start_time_ns), not its first chunk
    assert span.attributes[tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert span.attributes[tx.SPAN_ATTR_GEN_AI_USAGE_INPUT_TOKENS] == 7
    assert [e.name for e in span.events] == [tx.SPAN_EVENT_GEN_AI_FIRST_TOKEN]


async def test_usage_replaces_the_chunk_count(tel: Capture, clock: Clock, fastapi_on) -> None:
    app = app_for(clock, [0.2, 0.1])
    await post(app, {})
    assert value(tel, USAGE, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "output"}) == (1, 2)
    tel.pipeline.meter_provider.force_flush()
    no_usage = app_for(clock, [0.2, 0.1, 0.1], usage=False)
    await post(no_usage, {})
    assert value(tel, USAGE, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "output"}) == (2, 5)  # 2 reported, then 3 counted
    assert value(tel, USAGE, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "input"}) == (1, 7)  # none without a usage chunk


async def test_plain_streaming_response_counts_chunks(tel: Capture, clock: Clock, fastapi_on) -> None:
    await post(app_for(clock, [0.3, 0.2, 0.2], plain=True), {})
    assert value(tel, TTFT) == (1, pytest.approx(0.4))
    assert value(tel, TPOT) == (1, pytest.approx(0.2))
    assert value(tel, USAGE, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "output"}) == (1, 3)
    assert tel.point(TTFT).attributes[tx.ATTR_GEN_AI_OPERATION_NAME] == "text_completion"


async def test_a_whole_body_is_a_plain_prediction(tel: Capture, clock: Clock, fastapi_on) -> None:
    assert (await post(app_for(clock, [0.1]), {"stream": False})).status_code == 200
    assert tel.count(PREDICTIONS, status="success") == 1
    assert tel.points(DURATION) == [] and tel.points(TTFT) == []


async def asgi_call(
    app: FastAPI, *, spec: str, send_fails_after: int | None = None, leave: asyncio.Event | None = None
):
    """Call the app as a server would, with a client that leaves: sending raises ``OSError`` after
    ``send_fails_after`` body messages (ASGI 2.4), or ``receive`` says ``http.disconnect`` once ``leave`` is set."""
    sent: list[dict] = []
    body = json.dumps({}).encode()
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        if leave is not None:
            await leave.wait()
        else:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        bodies = [m for m in sent if m["type"] == "http.response.body"]
        if send_fails_after is not None and message["type"] == "http.response.body" and len(bodies) >= send_fails_after:
            raise OSError("connection reset by peer")
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": spec}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
        "root_path": "", "headers": [(b"host", b"t"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000), "server": ("t", 80),
    }  # fmt: skip
    await app(scope, receive, send)
    return sent


def _assert_cancelled(tel: Capture) -> None:
    assert tel.count(PREDICTIONS, status="cancelled") == 1
    assert tel.count(PREDICTIONS) == 1  # neither a success nor an error
    assert tel.points(ERRORS) == []
    assert tel.point(DURATION).attributes[tx.ATTR_ERROR_TYPE] == "cancelled"
    (span,) = tel.spans("chat env-model")
    assert span.attributes[tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS] == ("cancelled",)


async def test_send_failing_mid_stream_is_cancelled(tel: Capture, clock: Clock, fastapi_on) -> None:
    from starlette.requests import ClientDisconnect

    with pytest.raises(ClientDisconnect):  # the server sees the client leave, as it did uninstrumented
        await asgi_call(app_for(clock, [0.1, 0.1, 0.1, 0.1]), spec="2.4", send_fails_after=2)
    _assert_cancelled(tel)


async def test_disconnect_message_mid_stream_is_cancelled(tel: Capture, fastapi_on) -> None:
    leave, more = asyncio.Event(), asyncio.Event()
    app = FastAPI()

    async def events() -> AsyncIterator[str]:
        yield chunk("t0")
        leave.set()  # the client goes away after the first token; the stream would go on
        await more.wait()
        yield chunk("t1")

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        return StreamingResponse(events(), media_type="text/event-stream")

    sent = await asgi_call(app, spec="2.0", leave=leave)
    assert [m.get("more_body") for m in sent if m["type"] == "http.response.body"] == [True]
    _assert_cancelled(tel)


async def test_off_after_uninstrument(tel: Capture, clock: Clock) -> None:
    instrumentor = ModeltelFastAPIInstrumentor()
    instrumentor.instrument(tracer_provider=tel.pipeline.tracer_provider)
    instrumentor.uninstrument()
    await post(app_for(clock, [0.1, 0.1]), {})
    assert tel.points(TTFT) == [] and tel.points(PREDICTIONS) == []


async def test_a_prediction_the_app_opened_counts_the_request_once(tel: Capture, clock: Clock, fastapi_on) -> None:
    import modeltel

    app = FastAPI()

    async def events() -> AsyncIterator[str]:
        with modeltel.prediction("own-model"):  # as BentoML's streaming API prediction spans its stream
            for i in range(3):
                clock.now += 0.1
                yield chunk(f"t{i}")

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        return StreamingResponse(events(), media_type="text/event-stream")

    await post(app, {})
    assert tel.count(PREDICTIONS) == 1
    assert tel.count(PREDICTIONS, **{tx.ATTR_MODEL_NAME: "own-model"}) == 1
    assert tel.points(TTFT) == []
