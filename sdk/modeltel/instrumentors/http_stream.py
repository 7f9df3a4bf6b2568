"""Streamed HTTP responses as generations: what the FastAPI / Starlette instrumentor (and Ray Serve's, for
a plain HTTP deployment) does with a model request whose response body is a stream (``StreamingResponse``,
server-sent events); :func:`run_observed` runs one request that way.

A response streams when its body comes in several ASGI messages (``more_body``) or it is
``text/event-stream``. Its first non-empty body chunk is the first token (time to first token, counted
from the request's arrival), each later chunk counts as a token as it leaves (time per output token), and
the generation ends with the last chunk. Server-sent events are read a little further, as an
OpenAI-compatible server (vLLM, TGI, Ollama's ``/v1``, :mod:`modeltel.examples.openai_server`) writes
them: each ``data:`` line is a chunk, ``data: [DONE]`` is none, and the few chunks that carry a
``finish_reason`` or ``usage`` are parsed as JSON: the finish reasons, the authoritative token counts
(``usage.prompt_tokens`` / ``completion_tokens``), and whether they hold text at all (a usage chunk with
no choices is no token). The first chunk's ``object`` gives the operation (``chat.completion.chunk``:
``chat``, else ``text_completion``) and its ``model`` the response model. Nothing is kept across chunks:
an event split over two body messages counts where its ``data:`` line starts, and a usage or finish
chunk split that way is not read (servers write one event per message).

A client that leaves before the last chunk (the application returns without it, or sending raises
``OSError`` / Starlette's ``ClientDisconnect``, or the task is cancelled) makes the generation
``cancelled``, not an error. A body that is sent whole is not a generation: the request stays a plain
prediction; so does a request whose prediction another one took over before the first chunk (an
application's own ``modeltel.prediction()`` or ``generation()``, a BentoML streaming API's generation, which spans the
stream): that one counts the request, once.

The generation is opened at the first chunk, inside the request's prediction, which it takes over: the
request is counted once, as the generation, and the server span, which the middleware marks before the
last chunk ends it, says ``modeltel.kind=request`` (span-derived series count the request once too). It
starts at the request's arrival (``start_time_ns``), so time to first token, the duration and its span
cover the handler's work before the body started. It runs in a context of its own, as :func:`modeltel.stream`
does, because its first and last chunk may be sent from different tasks.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from contextvars import Context, copy_context
from time import time_ns
from typing import Any

import modeltel
from modeltel import taxonomy as tx

from .base import stage_attributes
from .http_server import status_ok

_FINISH = re.compile(rb'"finish_reason"\s*:\s*"')
_SSE = b"text/event-stream"
_DONE = b"[DONE]"
_LEFT = (OSError, asyncio.CancelledError)  # and Starlette's ClientDisconnect, by name (no import here)
ATTRIBUTES = stage_attributes("http", "stream")


def _payloads(chunk: bytes) -> Iterable[bytes]:
    """The ``data:`` payloads of the server-sent events in one body chunk."""
    for line in chunk.splitlines():
        if line.startswith(b"data:"):
            yield line[5:].strip()


def _json(payload: bytes) -> dict[str, Any] | None:
    try:
        found = json.loads(payload)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _has_text(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    delta = choice.get("delta")
    return bool(choice.get("text") or (isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls"))))


class StreamedResponse:
    """What one model request's response body says; a streamed one becomes a generation at its first chunk."""

    __slots__ = ("_arrival", "_ctx", "_done", "_failed", "_g", "_request", "_sse", "_telemetry")

    def __init__(self, telemetry: Callable[[], modeltel.Telemetry], request: modeltel.Prediction) -> None:
        self._telemetry = telemetry
        self._request = request  # the request's prediction, just entered
        self._arrival = time_ns()  # unix ns: the generation's start_time_ns
        self._g: modeltel.Generation | None = None
        self._ctx: Context | None = None
        self._sse = False
        self._done = False  # the last body message went out
        self._failed = False

    def start(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """The ``http.response.start`` message."""
        self._failed = status >= 400
        for name, value in headers:
            if name.lower() == b"content-type":
                self._sse = value.split(b";", 1)[0].strip().lower() == _SSE

    def body(self, chunk: bytes, *, more: bool) -> None:
        """An ``http.response.body`` message."""
        g = self._g
        opened = g is None
        if g is None:
            if self._done or not chunk or not (more or self._sse):
                self._done = self._done or not more
                return
            g = self._open(chunk)
            if g is None:
                return
        n = self._read_events(g, chunk) if self._sse else int(bool(chunk))
        if n:
            g.token(n)
        elif opened:  # the first chunk is the first token even when it holds no text (a role, a comment)
            g.first_token()
        if not more:
            self._done = True
            self._end(None)

    def close(self, exc: BaseException | None) -> bool:
        """The application returned (``exc`` None) or raised ``exc``; True when ``exc`` is the client
        leaving during the stream (the caller re-raises it outside the request's prediction: not an error)."""
        if self._g is None:
            return False
        left = exc is None or isinstance(exc, _LEFT) or type(exc).__name__ == "ClientDisconnect"
        if left:
            self._g.cancel()  # it returned (or failed to send) before the last chunk: the client went away
        self._end(None if left else exc)
        return exc is not None and left

    def _open(self, chunk: bytes) -> modeltel.Generation | None:
        if self._request.superseded is not None:  # the application's or a framework's own prediction counts it
            self._done = True
            return None
        first = next(iter(_payloads(chunk)), None) if self._sse else None
        head = _json(first) if first else None
        options: dict[str, Any] = {"attributes": ATTRIBUTES, "start_time_ns": self._arrival}
        if head is not None:
            if str(head.get("object", "")).startswith("chat.completion"):
                options["operation"] = tx.GEN_AI_OPERATION_CHAT
            if isinstance(head.get("model"), str):
                options["response_model"] = head["model"]
        try:
            g = self._telemetry().generation(**options)
            ctx = copy_context()
            ctx.run(g.__enter__)
        except Exception as failure:  # a monitoring bug must not reach the model server
            self._telemetry().monitoring_failed(failure)
            self._done = True
            return None
        if self._failed:
            g.set_outcome(False)
        self._g, self._ctx = g, ctx
        return g

    def _read_events(self, g: modeltel.Generation, chunk: bytes) -> int:
        """Tokens in one chunk of server-sent events; reads finish reasons and usage where they are."""
        n = 0
        for payload in _payloads(chunk):
            if payload == _DONE:
                continue
            if b'"usage"' not in payload and _FINISH.search(payload) is None:
                n += 1
                continue
            obj = _json(payload)
            if obj is None:
                n += 1
                continue
            choices = obj.get("choices") if isinstance(obj.get("choices"), list) else []
            g.finish(*(c["finish_reason"] for c in choices if isinstance(c, dict) and c.get("finish_reason")))
            usage = obj.get("usage")
            if isinstance(usage, dict):
                g.usage(_int(usage, "prompt_tokens", "input_tokens"), _int(usage, "completion_tokens", "output_tokens"))
            n += any(_has_text(c) for c in choices)
        return n

    def _end(self, exc: BaseException | None) -> None:
        g, ctx, self._g = self._g, self._ctx, None
        if g is None or ctx is None:
            return
        ctx.run(g.__exit__, type(exc) if exc is not None else None, exc, exc.__traceback__ if exc is not None else None)


def _int(usage: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


async def run_observed(
    app: Callable[..., Awaitable[Any]],
    asgi: tuple[dict, Any, Any],
    prediction: modeltel.Prediction,
    telemetry: Callable[[], modeltel.Telemetry],
    *,
    taken_over: Callable[[modeltel.Prediction], None],
) -> Any:
    """Run ASGI ``app`` on ``asgi`` (scope, receive, send) for one model request, inside ``prediction``
    (entered here): an error when the response's status is ``>= 400`` or the app raises, a generation when
    its body streams (:class:`StreamedResponse`). ``taken_over(prediction)`` runs as the response starts,
    before its last body message and after the app returned (a server span to relabel when the prediction
    was taken over: the contrib server span ends with the last body message)."""
    scope, receive, send = asgi
    status: list[int] = []
    response: StreamedResponse

    async def send_status(message: dict) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            more = message.get("more_body", False)
            response.body(message.get("body", b""), more=more)
            if not more:  # a generation the stream opened took over; the server span ends with this
                taken_over(prediction)
        elif kind == "http.response.start":
            status.append(message["status"])
            response.start(message["status"], message.get("headers", ()))
            taken_over(prediction)  # the server span ends with the response
        await send(message)

    left: BaseException | None = None
    result = None
    with prediction:
        response = StreamedResponse(telemetry, prediction)
        try:
            result = await app(scope, receive, send_status)
        except BaseException as exc:
            if not response.close(exc):
                raise
            left = exc  # the client left a stream: re-raised outside the prediction, not an error
        else:
            response.close(None)
        finally:
            taken_over(prediction)  # a server span that outlives the last body message
            prediction.set_outcome(status_ok(status[0] if status else None))
    if left is not None:
        raise left
    return result


__all__ = ["StreamedResponse", "run_observed"]
