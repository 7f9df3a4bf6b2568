"""The scopes of instrumented calls: the context managers one wrapped call enters, under its re-entrancy key.

The re-entrancy rule (:mod:`.base` states it for every kind of wrapped call): a wrapped call made directly
inside a wrapped call with the same key passes straight through. The key of the innermost one lives in one
``ContextVar``, set by a :class:`Scope` (or a :class:`LibraryScope`, the one-stage form every outermost
model-library call enters); keys are one object per (framework, name), so the guard compares by identity.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextvars import ContextVar
from typing import Any

from modeltel.hotpath.state import current
from modeltel.hotpath.wrapping import run_async_generator

LIBRARY = "library"  # the key of every model-library call
# The key of the innermost wrapped call running in this context (see the re-entrancy rule above).
_active: ContextVar[object] = ContextVar("modeltel_instrumented_call", default=None)
active_call = _active.get  # the key of the innermost instrumented call in this context (LIBRARY, say), or None
set_active, reset_active = _active.set, _active.reset  # a wrapper that keeps the key itself (torch's), no Scope
_keys: dict[tuple[str, str], tuple[str, str]] = {}
current_frame = current.get  # the innermost active modeltel stage or prediction in this context, or None


def call_key(framework: str, name: str) -> tuple[str, str]:
    """The one key object for (framework, name), so the guard compares by identity."""
    return _keys.setdefault((framework, name), (framework, name))


class Scope:
    """The context managers of one instrumented call, under the call's re-entrancy key.

    Entered in order and exited in reverse; ``__enter__`` returns what the last one returned (the
    innermost stage), which also gets ``batch_size`` when one is given. The managers must not raise on
    entry (modeltel's stages and predictions never do: a monitoring failure is logged, not raised).
    """

    __slots__ = ("_batch_size", "_key", "_managers", "_token")

    def __init__(self, key: object, managers: tuple[Any, ...], batch_size: int | None = None) -> None:
        self._key = key
        self._managers = managers
        self._batch_size = batch_size

    def __enter__(self) -> Any:
        self._token = _active.set(self._key)
        inner = None
        for manager in self._managers:
            inner = manager.__enter__()
        if self._batch_size is not None and inner is not None:
            inner.set_batch_size(self._batch_size)
        return inner

    def stream_async(self, agen: AsyncGenerator[Any, Any]) -> AsyncGenerator[Any, Any]:
        """Run async generator ``agen`` inside this scope, active only while ``agen`` itself runs (as
        :meth:`modeltel.Stage.stream_async` runs one inside a stage)."""
        return run_async_generator(self, agen)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            for manager in reversed(self._managers):
                manager.__exit__(exc_type, exc, tb)
        finally:
            try:  # noqa: SIM105 (hot path)
                _active.reset(self._token)
            except ValueError:  # a generator finished in another context
                pass


class LibraryScope:
    """A :class:`Scope` of one stage under the ``LIBRARY`` key, without the general one's loop: it runs on
    every outermost model-library call (a torch module's, say)."""

    __slots__ = ("_token", "stage")

    def __init__(self, stage: Any) -> None:
        self.stage = stage

    def __enter__(self) -> Any:
        self._token = _active.set(LIBRARY)
        return self.stage.__enter__()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.stage.__exit__(exc_type, exc, tb)
        finally:
            try:  # noqa: SIM105 (hot path)
                _active.reset(self._token)
            except ValueError:  # a generator finished in another context
                pass


def training_scope(args: tuple = (), kwargs: dict | None = None) -> Scope:
    """The scope of a training call: no stage, and library calls inside it pass through."""
    return Scope(LIBRARY, ())
