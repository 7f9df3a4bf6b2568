"""TorchServe: ``BaseHandler`` preprocess / inference / postprocess as stages, ``handle`` as the prediction.

TorchServe's Python worker calls ``handler.handle(batch, context)`` once per (dynamically batched) batch;
``handle`` becomes the prediction (batch size = ``len(data)``), and ``preprocess`` -> preprocess,
``inference`` -> inference, ``postprocess`` -> postprocess are its stages. Model name and version come
from the model archive's manifest (``context.manifest["model"]["modelName"]`` / ``["modelVersion"]``,
also kept on the handler as ``handler.manifest``), else ``context.model_name`` / the environment.
Overrides in subclasses are wrapped where they are defined, including handler classes TorchServe imports
from the model archive after ``instrument()``. The torch model called inside ``inference`` is a child
span of the stage (the torch instrumentor records no second sample).

Handlers that are plain module-level ``handle(data, context)`` functions are not covered (wrap their
body in ``modeltel.prediction`` / ``modeltel.stage``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from modeltel import taxonomy as tx

from .base import ModeltelInstrumentor, Patches, patch_hierarchy

_STAGES = {
    "preprocess": tx.STAGE_PREPROCESS,
    "inference": tx.STAGE_INFERENCE,
    "postprocess": tx.STAGE_POSTPROCESS,
}


def _from_manifest(manifest: Any) -> tuple[str | None, str | None] | None:
    try:
        model = manifest["model"]
        name, version = model.get("modelName"), model.get("modelVersion")
    except (TypeError, KeyError, AttributeError):
        return None
    return (str(name) if name else None), (str(version) if version else None)


def _model_of_context(context: Any) -> tuple[str | None, str | None]:
    found = _from_manifest(getattr(context, "manifest", None))
    if found is not None and found[0] is not None:
        return found
    name = getattr(context, "model_name", None)
    return (str(name) if name else None), (found[1] if found is not None else None)


def _model_of(args: tuple, kwargs: dict) -> tuple[str | None, str | None]:
    """(name, version) of a handler: its manifest (set by ``initialize``), else its current context's."""
    handler = args[0]
    found = _from_manifest(getattr(handler, "manifest", None))
    if found is not None and found[0] is not None:
        return found
    context = getattr(handler, "context", None)
    return _model_of_context(context) if context is not None else (None, None)


def _handle_model_of(args: tuple, kwargs: dict) -> tuple[str | None, str | None]:
    """``handle(data, context)``: the model of the call's context, else the handler's."""
    context = args[2] if len(args) > 2 else kwargs.get("context")
    return _model_of_context(context) if context is not None else _model_of(args, kwargs)


def _handle_batch_of(args: tuple, kwargs: dict) -> int | None:
    data = args[1] if len(args) > 1 else kwargs.get("data")
    try:
        return len(data)
    except TypeError:
        return None


class TorchServeInstrumentor(ModeltelInstrumentor):
    # base_handler imports torch: patch it when TorchServe's worker imports it, not at start-up
    patched_module = "ts.torch_handler.base_handler"

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("torchserve")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        from ts.torch_handler.base_handler import BaseHandler

        makers = {
            name: self.framework_stage("torchserve", name, stage, model_of=_model_of) for name, stage in _STAGES.items()
        }
        makers["handle"] = self.prediction_call(
            "torchserve", "handle", model_of=_handle_model_of, batch_of=_handle_batch_of, outermost_only=True
        )
        patch_hierarchy(patches, BaseHandler, makers)
