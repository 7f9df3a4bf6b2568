"""Token streams as generations: ``modeltel.stream(iterable)`` for sync and async iterables.

Each step of the iterable runs in the generation's own context (stages it opens are the generation's
children), never the consumer's code between items, as :mod:`.wrapping` does for generators. The per-token
work is a clock read and a few float operations on locals, handed to the generation when the stream ends:
no object is made or kept per token (``benchmarks/generation.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from contextvars import copy_context
from time import perf_counter
from typing import Any

from .generation import Generation, TokensOf
from .wrapping import _RunIn


def stream(generation: Generation, iterable: Iterable[Any] | AsyncIterable[Any], tokens_of: TokensOf | None) -> Any:
    """Iterate ``iterable`` (sync or async) as ``generation``: see :func:`modeltel.stream`."""
    if hasattr(iterable, "__aiter__"):
        return _stream_async(generation, iterable, tokens_of)
    return _stream_sync(generation, iter(iterable), tokens_of)


def _stream_sync(g: Generation, it: Any, tokens_of: TokensOf | None) -> Any:
    """Each step of ``it`` runs in the generation's own context (stages it opens are the generation's
    children); the consumer's code between items does not. Counters live in locals until the end."""
    ctx = copy_context()
    run = ctx.run
    run(g.__enter__)
    first = last = max_gap = 0.0
    tokens = 0
    try:
        while True:
            try:
                item = run(next, it)
            except StopIteration:
                break
            n = 1 if tokens_of is None else tokens_of(item)
            if n:
                now = perf_counter()
                if first:
                    gap = now - last
                    if gap > max_gap:
                        max_gap = gap
                else:
                    first = now
                    g._mark_first(now)
                last = now
                tokens += n
            yield item
    except GeneratorExit as stop:  # the consumer closed the stream early: cancelled, not an error
        _store(g, first, last, max_gap, tokens)
        try:
            close = getattr(it, "close", None)
            if close is not None:
                run(close)
        finally:
            run(g.__exit__, GeneratorExit, stop, None)
        raise
    except BaseException as exc:
        _store(g, first, last, max_gap, tokens)
        run(g.__exit__, type(exc), exc, exc.__traceback__)
        raise
    _store(g, first, last, max_gap, tokens)
    run(g.__exit__, None, None, None)


async def _stream_async(g: Generation, aiterable: AsyncIterable[Any], tokens_of: TokensOf | None) -> Any:
    """:func:`_stream_sync` for an async iterable; a cancelled task (``CancelledError``) is a cancellation."""
    it = aiterable.__aiter__()
    ctx = copy_context()
    ctx.run(g.__enter__)
    step = it.__anext__
    first = last = max_gap = 0.0
    tokens = 0
    try:
        while True:
            try:
                item = await _RunIn(ctx, step())
            except StopAsyncIteration:
                break
            n = 1 if tokens_of is None else tokens_of(item)
            if n:
                now = perf_counter()
                if first:
                    gap = now - last
                    if gap > max_gap:
                        max_gap = gap
                else:
                    first = now
                    g._mark_first(now)
                last = now
                tokens += n
            yield item
    except GeneratorExit as stop:
        _store(g, first, last, max_gap, tokens)
        try:
            close = getattr(it, "aclose", None)
            if close is not None:
                await _RunIn(ctx, close())
        finally:
            ctx.run(g.__exit__, GeneratorExit, stop, None)
        raise
    except BaseException as exc:
        _store(g, first, last, max_gap, tokens)
        ctx.run(g.__exit__, type(exc), exc, exc.__traceback__)
        raise
    _store(g, first, last, max_gap, tokens)
    ctx.run(g.__exit__, None, None, None)


def _store(g: Generation, first: float, last: float, max_gap: float, tokens: int) -> None:
    """Hand a stream's counters to its generation (added to any the application counted itself)."""
    if tokens:
        if not g._first:
            g._first = first
        if last > g._last:
            g._last = last
        if max_gap > g._max_gap:
            g._max_gap = max_gap
        g._tokens += tokens
