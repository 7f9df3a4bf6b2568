"""The one kind-preserving wrapper: run a callable inside a context manager, whatever kind it is.

Used by ``@modeltel.stage`` / ``@modeltel.prediction`` and by every instrumentor, so all of them share
one semantics:

* The wrapper has the kind of the function it wraps (plain, coroutine function, generator function,
  async generator function): frameworks that dispatch on ``inspect.iscoroutinefunction`` and friends
  see what they expect. Each wrapper has its own code object, because frameworks tell overrides from
  base methods by ``method.__code__ is Base.method.__code__`` (LitServe does).
* A plain or coroutine call runs inside the context manager; ``after(entered, result, args, kwargs)``
  sees the result, unless its type is one of ``after_skips`` (a prediction's confidence is never on a
  built-in number or string: the check costs less here than the call).
* A generator or async generator is timed from its first step to its end, and the context manager is
  active only while the generator itself runs, never in the consumer's code between items: the
  manager is entered in a private copy of the context and every step of the generator runs in that
  copy. ``send``/``throw``/``close`` (``asend``/``athrow``/``aclose``) pass through; a consumer that stops
  early is not an error, an exception thrown in that the generator does not handle is.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from contextvars import Context, copy_context
from typing import Any, Protocol

Enter = Callable[[tuple, dict], Any]  # (args, kwargs) -> a context manager, or None to pass through
After = Callable[[Any, Any, tuple, dict], None]  # (what __enter__ returned, result, args, kwargs)


class _Manager(Protocol):
    def __enter__(self) -> Any: ...
    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any: ...


def wrap(
    func: Callable[..., Any], enter: Enter, after: After | None = None, *, after_skips: frozenset[type] = frozenset()
) -> Callable[..., Any]:
    """``func`` wrapped so that each call runs inside ``enter(args, kwargs)``; see the module docstring."""
    return finish(_wrapper(func, enter, after, after_skips), func)


def finish(wrapper: Callable[..., Any], func: Callable[..., Any]) -> Callable[..., Any]:
    """``wrapper`` as a wrapper of ``func`` must be: ``func``'s name, docs and ``__wrapped__``, and a code
    object of its own (see the module docstring); for a wrapper written out by hand (KServe's), too."""
    functools.update_wrapper(wrapper, func)
    wrapper.__code__ = wrapper.__code__.replace()
    return wrapper


def _wrapper(func: Callable[..., Any], enter: Enter, after: After | None, skips: frozenset[type]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(func):
        return _async_generator_function(func, enter)
    if inspect.iscoroutinefunction(func):

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            cm = enter(args, kwargs)
            if cm is None:
                return await func(*args, **kwargs)
            with cm as entered:
                result = await func(*args, **kwargs)
                if after is not None and type(result) not in skips:
                    after(entered, result, args, kwargs)
                return result

        return async_wrapper
    if inspect.isgeneratorfunction(func):

        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            cm = enter(args, kwargs)
            if cm is None:
                return (yield from func(*args, **kwargs))
            return (yield from run_generator(cm, func(*args, **kwargs)))

        return gen_wrapper

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        cm = enter(args, kwargs)
        if cm is None:
            return func(*args, **kwargs)
        with cm as entered:
            result = func(*args, **kwargs)
            if after is not None and type(result) not in skips:
                after(entered, result, args, kwargs)
            return result

    return wrapper


def run_generator(cm: _Manager, gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Run generator ``gen`` inside ``cm``, active only while ``gen`` runs (see the module docstring)."""
    ctx = copy_context()
    ctx.run(cm.__enter__)
    step, value = gen.send, None
    try:
        while True:
            try:
                item = ctx.run(step, value)
            except StopIteration as stop:
                ctx.run(cm.__exit__, None, None, None)
                return stop.value
            try:
                value, step = (yield item), gen.send
            except GeneratorExit:
                raise
            except BaseException as thrown:
                value, step = thrown, gen.throw
    except GeneratorExit as stop:  # the consumer stopped early: a cancellation, not an error
        try:
            ctx.run(gen.close)
        finally:
            ctx.run(cm.__exit__, GeneratorExit, stop, None)
        raise
    except BaseException as exc:
        ctx.run(cm.__exit__, type(exc), exc, exc.__traceback__)
        raise


def run_async_generator(cm: _Manager, agen: AsyncGenerator[Any, Any]) -> AsyncGenerator[Any, Any]:
    """:func:`run_generator` for an async generator."""
    return _async_generator_function(lambda: agen, lambda args, kwargs: cm)()


def _async_generator_function(func: Callable[..., Any], enter: Enter) -> Callable[..., Any]:
    """An async generator function running ``func(...)`` inside ``enter(args, kwargs)``.

    It must itself be an async generator function (for the kind), and an async generator cannot
    delegate with ``yield from``: this loop forwards ``asend``/``athrow``/``aclose`` by hand.
    """

    async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
        cm = enter(args, kwargs)
        agen = func(*args, **kwargs)
        ctx = None if cm is None else copy_context()
        if ctx is not None:
            ctx.run(cm.__enter__)
        step, value = agen.asend, None
        try:
            while True:
                try:
                    item = await (step(value) if ctx is None else _RunIn(ctx, step(value)))
                except StopAsyncIteration:
                    if ctx is not None:
                        ctx.run(cm.__exit__, None, None, None)
                    return
                try:
                    value, step = (yield item), agen.asend
                except GeneratorExit:
                    raise
                except BaseException as thrown:
                    value, step = thrown, agen.athrow
        except GeneratorExit as stop:  # the consumer stopped early: a cancellation, not an error
            try:
                await (agen.aclose() if ctx is None else _RunIn(ctx, agen.aclose()))
            finally:
                if ctx is not None:
                    ctx.run(cm.__exit__, GeneratorExit, stop, None)
            raise
        except BaseException as exc:
            if ctx is not None:
                ctx.run(cm.__exit__, type(exc), exc, exc.__traceback__)
            raise

    return agen_wrapper


class _RunIn:
    """Awaits ``awaitable`` with each of its steps run in ``ctx`` (an ``await`` inside ``ctx.run`` would only
    create the coroutine there; its body runs when the event loop steps it)."""

    __slots__ = ("_awaitable", "_ctx")

    def __init__(self, ctx: Context, awaitable: Awaitable[Any]) -> None:
        self._ctx = ctx
        self._awaitable = awaitable

    def __await__(self) -> Generator[Any, Any, Any]:
        it = self._awaitable.__await__()
        run = self._ctx.run
        step, value = it.send, None
        while True:
            try:
                signal = run(step, value)
            except StopIteration as done:
                return done.value
            try:
                value, step = (yield signal), it.send
            except GeneratorExit:
                run(it.close)
                raise
            except BaseException as thrown:
                value, step = thrown, it.throw
