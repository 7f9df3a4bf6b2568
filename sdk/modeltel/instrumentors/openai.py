"""The ``openai`` Python client: chat and text completions, sync and async, streamed and not, as client-side
generations, against any OpenAI-compatible server (vLLM, TGI, Ollama, :mod:`modeltel.examples.openai_server`).

``Completions.create`` of ``client.chat.completions`` and ``client.completions`` (and their ``Async``
twins; ``client.chat.completions.stream()`` goes through them) is a generation with ``client=True``
(:mod:`modeltel.hotpath.generation`): ``gen_ai.client.operation.duration`` and
``gen_ai.client.token.usage`` as metrics; as span attributes, time to first token and time per output
token as the client saw them (the server-side histograms are the server's to record), the finish
reasons and the usage. ``gen_ai.request.model`` is the request's ``model``, ``gen_ai.response.model``
the one the server answered with.

* **Not streamed**: the generation is the call; usage, finish reasons and response model come from the
  returned completion. No first token is seen, so no TTFT.
* **Streamed** (``stream=True``): the call returns the client's ``Stream`` / ``AsyncStream`` wrapped in a
  proxy that behaves as it does (iteration, ``close()``, ``with``, ``.response``); the generation starts
  when ``create`` is called and ends when the stream does. Its first chunk is the first token (TTFT),
  each chunk with text counts as a token, a chunk's ``usage`` (``stream_options={"include_usage": True}``)
  gives the authoritative counts. A stream closed before its end (``close()``, leaving its ``with``, or
  garbage collection of an async stream's iteration) is ``cancelled``; one that raises is an error.

Outside any modeltel prediction a call is the app's prediction, under the request's ``model``; inside one (an
instrumented server calling an LLM, once or more) it is a CLIENT child of that prediction under its model,
which still counts the request once (see ``docs/generative.md``, "Client calls inside a prediction").
The generation runs in a context of its own, because a stream outlives the call that made it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextvars import copy_context
from typing import Any

import wrapt

import modeltel
from modeltel import taxonomy as tx

from .base import ModeltelInstrumentor, Patches, patch_hierarchy, stage_attributes

ATTRIBUTES = stage_attributes("openai", "create")


class Call:
    """One ``create()`` call's generation, entered in a context of its own; ends once."""

    __slots__ = ("_first", "_open", "_telemetry", "ctx", "g")

    def __init__(self, telemetry: modeltel.Telemetry, operation: str, kwargs: dict) -> None:
        model = kwargs.get("model")
        model = model if isinstance(model, str) else None
        name = None if modeltel.in_prediction() else model
        self._telemetry = telemetry
        self.g = telemetry.generation(
            name, operation=operation, request_model=model, client=True, attributes=ATTRIBUTES
        )
        self.ctx = copy_context()
        self.ctx.run(self.g.__enter__)
        self._open = True
        self._first = True

    def chunk(self, chunk: Any) -> None:
        """One streamed chunk: the first is the first token; chunks with text count; usage when present."""
        try:
            n = self._read(chunk, getattr(chunk, "choices", None) or ())
            if n:
                self.g.token(n)
            elif self._first:
                self.g.first_token()
            self._first = False
        except Exception as failure:  # a monitoring bug must not reach the application
            self._telemetry.monitoring_failed(failure)

    def _read(self, obj: Any, choices: Any) -> int:
        """Finish reasons, usage and response model of a chunk or a whole completion; its choices with text."""
        g = self.g
        g.finish(*(c.finish_reason for c in choices if getattr(c, "finish_reason", None)))
        usage = getattr(obj, "usage", None)
        if usage is not None:
            g.usage(getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None))
        model = getattr(obj, "model", None)
        if isinstance(model, str) and model and g.response_model is None:
            g.response_model = model
        return sum(1 for c in choices if _has_text(c))

    def result(self, result: Any) -> Any:
        """What ``create`` returned: a stream to watch, or a whole completion to read now."""
        if isinstance(result, _stream_classes()[0]):
            return TracedStream(result, self)
        if isinstance(result, _stream_classes()[1]):
            return TracedAsyncStream(result, self)
        try:
            self._read(result, getattr(result, "choices", None) or ())
        except Exception as failure:  # a monitoring bug must not reach the application
            self._telemetry.monitoring_failed(failure)
        self.end()
        return result

    def end(self, exc: BaseException | None = None, *, cancelled: bool = False) -> None:
        if not self._open:
            return
        self._open = False
        if cancelled:
            self.g.cancel()
        self.ctx.run(self.g.__exit__, type(exc) if exc is not None else None, exc, getattr(exc, "__traceback__", None))


def _has_text(choice: Any) -> bool:
    delta = getattr(choice, "delta", None)
    if delta is not None:
        return bool(getattr(delta, "content", None) or getattr(delta, "tool_calls", None))
    return bool(getattr(choice, "text", None))


@functools.cache
def _stream_classes() -> tuple[type, type]:
    from openai import AsyncStream, Stream

    return Stream, AsyncStream


def _iterate(stream: Any, call: Call) -> Iterator[Any]:
    try:
        for chunk in stream:
            call.chunk(chunk)
            yield chunk
    except BaseException as exc:  # GeneratorExit (closed before its end) is a cancellation, not an error
        call.end(exc)
        raise
    call.end()


async def _aiterate(stream: Any, call: Call) -> AsyncIterator[Any]:
    try:
        async for chunk in stream:
            call.chunk(chunk)
            yield chunk
    except BaseException as exc:  # an early aclose() or a cancelled task: the generation counts it cancelled
        call.end(exc)
        raise
    call.end()


class TracedStream(wrapt.ObjectProxy):
    """The client's ``Stream``, iterated through its generation; everything else passes through."""

    def __init__(self, stream: Any, call: Call) -> None:
        super().__init__(stream)
        self._self_call = call
        self._self_it = _iterate(stream, call)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self._self_it)

    def close(self) -> None:
        self._self_it.close()
        self._self_call.end(cancelled=True)  # never iterated: nothing else ends it
        self.__wrapped__.close()

    def __enter__(self) -> TracedStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class TracedAsyncStream(wrapt.ObjectProxy):
    """The client's ``AsyncStream``, iterated through its generation; everything else passes through."""

    def __init__(self, stream: Any, call: Call) -> None:
        super().__init__(stream)
        self._self_call = call
        self._self_it = _aiterate(stream, call)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        return await self._self_it.__anext__()

    async def close(self) -> None:
        await self._self_it.aclose()
        self._self_call.end(cancelled=True)
        await self.__wrapped__.close()

    aclose = close

    async def __aenter__(self) -> TracedAsyncStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def _create_maker(telemetry: Callable[[], modeltel.Telemetry], operation: str) -> Any:
    """A ``make`` for :meth:`Patches.wrap`: ``create`` (sync or async) as a :class:`Call`."""

    def make(func: Any, owner: Any) -> Any:
        if inspect.iscoroutinefunction(inspect.unwrap(func)):  # the client's own decorator hides it

            async def acreate(*args: Any, **kwargs: Any) -> Any:
                call = Call(telemetry(), operation, kwargs)
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    call.end(exc)
                    raise
                return call.result(result)

            return functools.wraps(func)(acreate)

        def create(*args: Any, **kwargs: Any) -> Any:
            call = Call(telemetry(), operation, kwargs)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                call.end(exc)
                raise
            return call.result(result)

        return functools.wraps(func)(create)

    return make


class OpenAIInstrumentor(ModeltelInstrumentor):
    patched_module = "openai"

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("openai")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        from openai.resources import AsyncCompletions, Completions
        from openai.resources.chat import AsyncCompletions as AsyncChatCompletions
        from openai.resources.chat import Completions as ChatCompletions

        chat = {"create": _create_maker(self.telemetry, tx.GEN_AI_OPERATION_CHAT)}
        text = {"create": _create_maker(self.telemetry, tx.GEN_AI_OPERATION_TEXT_COMPLETION)}
        for cls, makers in (
            (ChatCompletions, chat), (AsyncChatCompletions, chat), (Completions, text), (AsyncCompletions, text),
        ):  # fmt: skip
            patch_hierarchy(patches, cls, makers)
