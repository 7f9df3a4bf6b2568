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

from collections.abc import Callable, Collection
from typing import Any

import modeltel
from modeltel import taxonomy as tx

from ._common import (
    Patches,
    PatchOnImportInstrumentor,
    framework_wrapper,
    patch_hierarchy,
    preserve_kind,
    stage_attributes,
)

_MODULE = "ts.torch_handler.base_handler"
_STAGES = {
    "preprocess": tx.STAGE_PREPROCESS,
    "inference": tx.STAGE_INFERENCE,
    "postprocess": tx.STAGE_POSTPROCESS,
}
_PREDICTION_ATTRIBUTES = stage_attributes("torchserve", "handle")


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


def _model_of(handler: Any) -> tuple[str | None, str | None]:
    """(name, version) of a handler: its manifest (set by ``initialize``), else its current context's."""
    found = _from_manifest(getattr(handler, "manifest", None))
    if found is not None and found[0] is not None:
        return found
    context = getattr(handler, "context", None)
    return _model_of_context(context) if context is not None else (None, None)


class _Prediction:
    """``modeltel.prediction`` that also records the batch size once it is open."""

    __slots__ = ("_n", "_prediction")

    def __init__(self, prediction: Any, n: int | None) -> None:
        self._prediction = prediction
        self._n = n

    def __enter__(self) -> Any:
        p = self._prediction.__enter__()
        if self._n is not None:
            p.set_attribute(tx.SPAN_ATTR_BATCH_SIZE, self._n)
            modeltel.record_batch_size(self._n)
        return p

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._prediction.__exit__(exc_type, exc, tb)


def _handle_wrapper(func: Callable[..., Any], owner: Any) -> Callable[..., Any]:
    """``handle(data, context)``: the prediction, unless one is active (an override calling super())."""

    def enter(args: tuple, kwargs: dict) -> Any:
        if modeltel.in_prediction() or not args:
            return None
        data = args[1] if len(args) > 1 else kwargs.get("data")
        context = args[2] if len(args) > 2 else kwargs.get("context")
        name, version = _model_of_context(context) if context is not None else _model_of(args[0])
        try:
            n = len(data)
        except TypeError:
            n = None
        return _Prediction(modeltel.prediction(name, version, attributes=_PREDICTION_ATTRIBUTES), n)

    return preserve_kind(func, enter)


class TorchServeInstrumentor(PatchOnImportInstrumentor):
    # base_handler imports torch: patch it when TorchServe's worker imports it, not at start-up
    patched_module = _MODULE

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("torchserve >= 0.10, < 1",)

    def _apply(self, patches: Patches) -> None:
        from ts.torch_handler.base_handler import BaseHandler

        makers: dict[str, Any] = {
            name: framework_wrapper("torchserve", name, stage, model_of=_model_of) for name, stage in _STAGES.items()
        }
        makers["handle"] = _handle_wrapper
        patch_hierarchy(patches, BaseHandler, makers)
