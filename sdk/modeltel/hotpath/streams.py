"""Token streams as generations: ``modeltel.stream(iterable)`` for sync and async iterables.

Each step of the iterable runs in the generation's own context (stages it opens are the generation's
children), never the consumer's code between items, as :mod:`.wrapping` does for generators. Each item
with tokens is one :meth:`Generation.token` call: no object is made or kept per token
(``benchmarks/generation.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from contextvars import copy_context
from typing import Any

from .generation import Generation, TokensOf
from .wrapping import _RunIn


def stream(generation: Generation, iterable: Iterable[Any] | AsyncIterable[Any], tokens_of: TokensOf | None) -> Any:
    """Iterate ``iterable`` (sync or async) as ``generation``: see :func:`modeltel.stream`."""
    if hasattr(iterable, "__aiter__"):
        return _stream_async(generation, iterable, tokens_of)
    return _stream_sync(generation, iter(iterable), tokens_of)


def _stream_sync(g: Generation, it: Any, tokens_of: TokensOf | None) -> Any:
    """Run ``it`` as ``g``: its steps in ``g``'s context; ends ``g`` as the iterator ends, raises or is closed."""
    ctx = copy_context()
    run = ctx.run
    run(g.__enter__)
    token = g.token
    try:
        while True:
            try:
                item = run(next, it)
            except StopIteration:
                break
            n = 1 if tokens_of is None else tokens_of(item)
            if n:
                token(n)
            yield item
    except GeneratorExit as stop:  # the consumer closed the stream early: cancelled, not an error
        try:
            close = getattr(it, "close", None)
            if close is not None:
                run(close)
        finally:
            run(g.__exit__, GeneratorExit, stop, None)
        raise
    except BaseException as exc:
        run(g.__exit__, type(exc), exc, exc.__traceback__)
        raise
    run(g.__exit__, None, None, None)


async def _stream_async(g: Generation, aiterable: AsyncIterable[Any], tokens_of: TokensOf | None) -> Any:
    """:func:`_stream_sync` for an async iterable; a cancelled task (``CancelledError``) is a cancellation."""
    it = aiterable.__aiter__()
    ctx = copy_context()
    ctx.run(g.__enter__)
    step, token = it.__anext__, g.token
    try:
        while True:
            try:
                item = await _RunIn(ctx, step())
            except StopAsyncIteration:
                break
            n = 1 if tokens_of is None else tokens_of(item)
            if n:
                token(n)
            yield item
    except GeneratorExit as stop:
        try:
            close = getattr(it, "aclose", None)
            if close is not None:
                await _RunIn(ctx, close())
        finally:
            ctx.run(g.__exit__, GeneratorExit, stop, None)
        raise
    except BaseException as exc:
        ctx.run(g.__exit__, type(exc), exc, exc.__traceback__)
        raise
    ctx.run(g.__exit__, None, None, None)
