"""PyTorch: the outermost ``nn.Module`` call as the inference stage, via global forward hooks.

Only the outermost module of a call tree gets a span: the pre-hook opens a stage when no module call is
active in this context and the forward hook closes it for that same module; submodule calls only see
one ContextVar read. ``torch.compile``'d modules are covered: the ``OptimizedModule`` wrapper is the
outermost module, and the hooks do nothing while Dynamo traces. A forward that raises is recorded too
(the forward hook is registered with ``always_call=True`` and sees the exception in ``sys.exc_info()``).
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from contextvars import ContextVar
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from ._common import _library_active, batch_len, library_stage, stage_attributes, tx, when_imported

_ATTRIBUTES = stage_attributes("torch", "forward")
_CHILD_NAME = "torch.forward"
# (module, stage, library-flag token) of the outermost module call in this context
_outer: ContextVar[tuple[Any, Any, Any] | None] = ContextVar("modeltel_torch_outer", default=None)


class TorchInstrumentor(BaseInstrumentor):
    _handles: tuple[Any, ...] = ()
    _cancel: Any = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("torch >= 2.0",)

    def _instrument(self, **kwargs: Any) -> None:
        self._cancel = when_imported("torch", self._hook)

    def _hook(self) -> None:
        import torch
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        is_compiling = torch.compiler.is_compiling

        def pre_hook(module: Any, args: tuple) -> None:
            if is_compiling() or _outer.get() is not None or _library_active.get():
                return
            stage = library_stage(_CHILD_NAME, _ATTRIBUTES)
            flag = _library_active.set(True)
            s = stage.__enter__()
            if args:
                n = batch_len(args[0])
                if n is not None:
                    s.set_attribute(tx.SPAN_ATTR_BATCH_SIZE, n)
            _outer.set((module, stage, flag))
            return

        def post_hook(module: Any, args: tuple, output: Any) -> None:
            if is_compiling():
                return
            outer = _outer.get()
            if outer is None or outer[0] is not module:
                return
            _, stage, flag = outer
            _outer.set(None)
            exc = sys.exc_info()[1] if output is None else None
            try:
                stage.__exit__(type(exc) if exc is not None else None, exc, None)
            finally:
                try:
                    _library_active.reset(flag)
                except ValueError:
                    _library_active.set(False)
            return

        self._handles = (
            register_module_forward_pre_hook(pre_hook),
            register_module_forward_hook(post_hook, always_call=True),
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
        for handle in self._handles:
            handle.remove()
        self._handles = ()
