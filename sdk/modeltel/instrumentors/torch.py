"""PyTorch: the outermost ``nn.Module`` call as the inference stage, via global forward hooks.

Only the outermost module of a call tree gets a span: the pre-hook opens a stage when no module call is
active in this context and the forward hook closes it for that same module; submodule calls only see
one ContextVar read. An outermost module in training mode with gradients enabled is training, not a
prediction: its call tree records nothing (a frozen submodule in eval mode included).

``torch.compile``'d modules are covered: the ``OptimizedModule`` wrapper is the
outermost module, and the hooks do nothing while Dynamo traces. A forward that raises is recorded too
(the forward hook is registered with ``always_call=True`` and sees the exception in ``sys.exc_info()``).
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from contextvars import ContextVar
from typing import Any

from modeltel import taxonomy as tx

from .base import ModeltelInstrumentor, Patches, Scope, batch_len, stage_attributes, training_scope

_ATTRIBUTES = stage_attributes("torch", "forward")
# (module, scope) of the outermost module call in this context, for the forward hook to close
_outer: ContextVar[tuple[Any, Scope] | None] = ContextVar("modeltel_torch_outer", default=None)


class TorchInstrumentor(ModeltelInstrumentor):
    patched_module = "torch"

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("torch >= 2.0",)

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        import torch
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        is_compiling = torch.compiler.is_compiling
        is_grad_enabled = torch.is_grad_enabled

        def pre_hook(module: Any, args: tuple) -> None:
            if is_compiling() or _outer.get() is not None:
                return
            if module.training and is_grad_enabled():
                scope = training_scope()
                scope.__enter__()
                _outer.set((module, scope))
                return
            scope = self.library_scope("torch", "forward", _ATTRIBUTES)
            if scope is None:  # inside another library call (a transformers pipeline, say)
                return
            stage = scope.__enter__()
            if args:
                n = batch_len(args[0])
                if n is not None:
                    stage.set_attribute(tx.SPAN_ATTR_BATCH_SIZE, n)
            _outer.set((module, scope))

        def post_hook(module: Any, args: tuple, output: Any) -> None:
            if is_compiling():
                return
            outer = _outer.get()
            if outer is None or outer[0] is not module:
                return
            _outer.set(None)
            exc = sys.exc_info()[1] if output is None else None
            outer[1].__exit__(type(exc) if exc is not None else None, exc, None)

        patches.defer(register_module_forward_pre_hook(pre_hook).remove)
        patches.defer(register_module_forward_hook(post_hook, always_call=True).remove)
