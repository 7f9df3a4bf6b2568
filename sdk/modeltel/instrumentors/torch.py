"""PyTorch: the outermost ``nn.Module`` call as the inference stage, via a wrapper of ``nn.Module.__call__``.

Only the outermost module of a call tree gets a span: the wrapper opens a stage when no model-library
call is active in this context; submodule calls see one ContextVar read and go straight on. Global
forward hooks would do the same job, but any global hook sends *every* module call through torch's
slow hook-dispatch path (about 2 µs per submodule here), where wrapping ``__call__`` adds a function call
(docs/performance.md). An outermost module in training mode with gradients enabled is training, not a
prediction: its call tree records nothing (a frozen submodule in eval mode included).

``torch.compile``'d modules are covered: the ``OptimizedModule`` wrapper is the outermost module, and
the wrapper only passes through while Dynamo traces (it tests ``is_dynamo_compiling()`` first, which
Dynamo folds to True, so Dynamo never sees the ContextVar nor guards on ``torch.compiler``'s compiling
flag, tested next for export and AOT tracing). A forward that raises is recorded too.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from modeltel import Stage
from modeltel import taxonomy as tx

from .base import (
    LIBRARY,
    ModeltelInstrumentor,
    Patches,
    active_call,
    batch_len,
    current_frame,
    reset_active,
    set_active,
    stage_attributes,
)

_ATTRIBUTES = stage_attributes("torch", "forward")
_BY_BATCH_SIZE: dict[int, dict[str, Any]] = {}  # _ATTRIBUTES with each batch size seen (the first 64)
_MAX_BATCH_SIZES = 64


class _NeverCompiling:
    """Stands in for ``torch.compiler`` where a torch has no ``_is_compiling_flag`` (read on each call)."""

    _is_compiling_flag = False


def _with_batch_size(n: int | None) -> dict[str, Any]:
    """The span's start attributes with batch size ``n``: one shared dict per size, so that the span starts
    with it instead of copying its attributes to add one (``set_attribute``: several µs a span)."""
    attributes = _BY_BATCH_SIZE.get(n)  # type: ignore[arg-type]
    if attributes is None:
        if n is None or len(_BY_BATCH_SIZE) >= _MAX_BATCH_SIZES:
            return _ATTRIBUTES if n is None else {**_ATTRIBUTES, tx.SPAN_ATTR_BATCH_SIZE: n}
        attributes = _BY_BATCH_SIZE[n] = {**_ATTRIBUTES, tx.SPAN_ATTR_BATCH_SIZE: n}
    return attributes


class TorchInstrumentor(ModeltelInstrumentor):
    patched_module = "torch"

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("torch")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        import torch

        module_call = torch.nn.Module.__call__
        compiler = torch.compiler
        is_dynamo_compiling = compiler.is_dynamo_compiling
        if not hasattr(compiler, "_is_compiling_flag"):  # a torch without it: is_compiling() is Dynamo's alone
            compiler = _NeverCompiling
        is_grad_enabled = torch.is_grad_enabled
        telemetry = self._telemetry

        def __call__(module: Any, *args: Any, **kwargs: Any) -> Any:
            # torch.compiler.is_compiling(), less its is_scripting() call (this wrapper is never scripted): Dynamo
            # folds is_dynamo_compiling() to True, so it never reads (nor guards on) the flag nor the ContextVar
            if is_dynamo_compiling() or compiler._is_compiling_flag or active_call() is LIBRARY:
                return module_call(module, *args, **kwargs)  # compiling; a submodule, or inside another library
            token = set_active(LIBRARY)  # what library_scope's LibraryScope does, without its three calls
            try:
                if module.training and is_grad_enabled():  # training: nothing recorded (training_scope)
                    return module_call(module, *args, **kwargs)
                t, frame = telemetry(), current_frame()
                attributes = _ATTRIBUTES  # the batch size is a span attribute only: measured for a span
                if args and t.may_trace(frame):
                    attributes = _with_batch_size(batch_len(args[0]))
                if frame is None or frame.stage is None:  # library_scope's two cases, positionally
                    stage = Stage(t, tx.STAGE_INFERENCE, None, None, None, attributes)
                else:  # inside a stage: its child span, no second sample
                    stage = Stage(t, frame.stage, None, None, "torch.forward", attributes, record=False)
                with stage:
                    return module_call(module, *args, **kwargs)
            finally:
                reset_active(token)

        patches.replace(torch.nn.Module, "__call__", __call__)
