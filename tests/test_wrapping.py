"""The one kind-preserving wrapper (``modeltel.hotpath.wrap``): every kind, every generator protocol method.

The context manager here records what it saw, so each test states exactly when it was entered and
exited, with which exception, and whether it was active where the wrapped code ran.
"""

from __future__ import annotations

import asyncio
import inspect
from contextvars import ContextVar
from typing import Any

import pytest

from modeltel.hotpath import wrap

_inside: ContextVar[bool] = ContextVar("inside", default=False)


class Recorder:
    """A context manager that sets ``_inside`` while active and logs its enter/exit."""

    def __init__(self) -> None:
        self.log: list[Any] = []

    def __enter__(self) -> Recorder:
        self._token = _inside.set(True)
        self.log.append("enter")
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        _inside.reset(self._token)
        self.log.append(("exit", exc_type))


def wrapped(func: Any, after: Any = None) -> tuple[Any, Recorder]:
    rec = Recorder()
    return wrap(func, lambda args, kwargs: rec, after), rec


def test_each_kind_is_kept_and_each_wrapper_has_its_own_code() -> None:
    def plain() -> None: ...

    async def coro() -> None: ...

    def gen():
        yield

    async def agen():
        yield

    checks = (inspect.isfunction, inspect.iscoroutinefunction, inspect.isgeneratorfunction, inspect.isasyncgenfunction)
    for func, check in zip((plain, coro, gen, agen), checks, strict=True):
        w1, w2 = wrap(func, lambda a, k: None), wrap(func, lambda a, k: None)
        assert check(w1) and w1.__wrapped__ is func and w1.__name__ == func.__name__
        assert w1.__code__ is not w2.__code__  # LitServe tells overrides apart by __code__


def test_plain_and_coroutine_calls_run_inside_and_after_sees_the_result() -> None:
    seen = []
    w, rec = wrapped(lambda x: (_inside.get(), x * 2), after=lambda entered, result, a, k: seen.append(result))
    assert w(4) == (True, 8) and rec.log == ["enter", ("exit", None)] and seen == [(True, 8)]

    async def coro(x: int) -> tuple[bool, int]:
        await asyncio.sleep(0)
        return _inside.get(), x

    w, rec = wrapped(coro)
    assert asyncio.run(w(1)) == (True, 1) and rec.log == ["enter", ("exit", None)]


def test_an_exception_passes_through_unchanged_and_reaches_exit() -> None:
    def fails() -> None:
        raise KeyError("k")

    w, rec = wrapped(fails)
    with pytest.raises(KeyError):
        w()
    assert rec.log == ["enter", ("exit", KeyError)]


def test_enter_returning_none_passes_through() -> None:
    def gen():
        yield _inside.get()

    w = wrap(gen, lambda args, kwargs: None)
    assert list(w()) == [False]


def test_generator_is_active_only_while_it_runs_and_send_passes_through() -> None:
    def echo():
        received = yield _inside.get()
        while received is not None:
            received = yield (received, _inside.get())
        return "done"

    w, rec = wrapped(echo)
    g = w()
    assert rec.log == []  # entered at the first step, as the generator's own body would start
    assert next(g) is True
    assert _inside.get() is False  # the consumer's code does not see it
    assert g.send("a") == ("a", True)
    with pytest.raises(StopIteration) as stop:
        g.send(None)
    assert stop.value.value == "done"
    assert rec.log == ["enter", ("exit", None)]


def test_generator_throw_handled_continues_and_unhandled_is_an_error() -> None:
    def resilient():
        while True:
            try:
                yield "item"
            except ValueError:
                yield "recovered"

    w, rec = wrapped(resilient)
    g = w()
    next(g)
    assert g.throw(ValueError()) == "recovered"
    with pytest.raises(TimeoutError):
        g.throw(TimeoutError())
    assert rec.log == ["enter", ("exit", TimeoutError)]


def test_generator_closed_early_closes_the_inner_one_and_exits_as_cancelled() -> None:
    closed = []

    def counting():
        try:
            yield from range(100)
        finally:
            closed.append(_inside.get())

    w, rec = wrapped(counting)
    g = w()
    next(g)
    g.close()
    assert closed == [True]  # the inner generator's cleanup runs inside, too
    assert rec.log == ["enter", ("exit", GeneratorExit)]  # a cancellation (stage.is_cancellation), not an error


def test_async_generator_asend_athrow_and_activity() -> None:
    async def echo():
        received = yield _inside.get()
        while True:
            try:
                received = yield (received, _inside.get())
            except ValueError:
                received = yield "recovered"

    w, rec = wrapped(echo)

    async def drive() -> list[Any]:
        g = w()
        out = [await g.asend(None), _inside.get(), await g.asend("a"), await g.athrow(ValueError())]
        with pytest.raises(TimeoutError):
            await g.athrow(TimeoutError())
        return out

    assert asyncio.run(drive()) == [True, False, ("a", True), "recovered"]
    assert rec.log == ["enter", ("exit", TimeoutError)]


def test_async_generator_inside_across_awaits_and_exhaustion() -> None:
    async def ticks():
        for i in range(2):
            await asyncio.sleep(0)
            yield i, _inside.get()

    w, rec = wrapped(ticks)

    async def consume() -> list[Any]:
        return [item async for item in w()]

    assert asyncio.run(consume()) == [(0, True), (1, True)]
    assert rec.log == ["enter", ("exit", None)]


def test_async_generator_aclose_early_closes_the_inner_one_and_exits_as_cancelled() -> None:
    closed = []

    async def counting():
        try:
            for i in range(100):
                yield i
        finally:
            await asyncio.sleep(0)
            closed.append(_inside.get())

    w, rec = wrapped(counting)

    async def drive() -> None:
        g = w()
        await g.asend(None)
        await g.aclose()

    asyncio.run(drive())
    assert closed == [True]
    assert rec.log == ["enter", ("exit", GeneratorExit)]
