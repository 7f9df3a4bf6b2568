"""PyTorch: the outermost ``nn.Module`` call as the inference stage, via a wrapper of ``nn.Module.__call__``.

Only the outermost module of a call tree gets a span: the wrapper opens a stage when no model-library
call is active in this context; submodule calls see one ContextVar read and go straight on. Global
forward hooks would do the same job, but any global hook sends *every* module call through torch's
slow hook-dispatch path (about 2 µs per submodule here), where wrapping ``__call__`` adds a function call
(docs/performance.md). An outermost module in training mode with gradients enabled is training, not a
prediction: its call tree records nothing (a frozen submodule in eval mode included).

``torch.compile``'d modules are covered: the ``OptimizedModule`` wrapper is the outermost module, and
the wrapper only passes through while Dynamo traces (it tests ``is_compiling()`` first, so Dynamo never
sees the ContextVar). A forward that raises is recorded too.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from modeltel import taxonomy as tx

from .base import LIBRARY, ModeltelInstrumentor, Patches, active_call, batch_len, stage_attributes, training_scope

_ATTRIBUTES = stage_attributes("torch", "forward")


class TorchInstrumentor(ModeltelInstrumentor):
    patched_module = "torch"

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("torch")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        import torch

        module_call = torch.nn.Module.__call__
        is_compiling = torch.compiler.is_compiling
        is_grad_enabled = torch.is_grad_enabled
        library_scope = self.library_scope

        def __call__(module: Any, *args: Any, **kwargs: Any) -> Any:
            if is_compiling() or active_call() is LIBRARY:  # a submodule, or inside another library
                return module_call(module, *args, **kwargs)
            if module.training and is_grad_enabled():
                scope = training_scope()
            else:
                scope = library_scope("torch", "forward", _ATTRIBUTES)
            with scope as stage:
                if stage is not None and args:
                    n = batch_len(args[0])
                    if n is not None:
                        stage.set_attribute(tx.SPAN_ATTR_BATCH_SIZE, n)
                return module_call(module, *args, **kwargs)

        patches.replace(torch.nn.Module, "__call__", __call__)
