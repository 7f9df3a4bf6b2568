"""KServe: ``kserve.Model`` preprocess / predict / explain / postprocess, and ``__call__`` as the prediction.

KServe dispatches each stage on ``inspect.iscoroutinefunction``; the wrappers keep the kind of the
method they wrap, so sync and async models behave exactly as before. Overrides in subclasses are wrapped
where they are defined (including classes created after ``instrument()``). The model name is the
Model's ``name``; KServe has no model version, so it comes from ``MODELTEL_MODEL_VERSION``.

A stage that KServe's ``__call__`` runs inside its own prediction (every request's case) takes the
prediction's telemetry and series instead of looking them up, in a wrapper that enters it itself, with no
``enter`` call (:func:`_stage`): per wrapped method it costs about what ``with modeltel.stage(...)``
written in the method costs (docs/performance.md, "Wrappers, third round"). Any other call gets the
general framework stage's (:meth:`~.base.ModeltelInstrumentor.stage_enter`), which records the same.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from typing import Any

from modeltel import Prediction, Stage
from modeltel import taxonomy as tx

from .base import (
    Make,
    ModeltelInstrumentor,
    Patches,
    current_frame,
    finish,
    patch_hierarchy,
    prediction_frames,
    stage_attributes,
    wrap,
)

_STAGES = {
    "preprocess": tx.STAGE_PREPROCESS,
    "predict": tx.STAGE_INFERENCE,
    "explain": "explain",
    "postprocess": tx.STAGE_POSTPROCESS,
}


def _model_of(args: tuple, kwargs: dict) -> tuple[str | None, str | None]:
    return getattr(args[0], "name", None), None


def _stage(enter: Callable[[tuple, dict], Any], attributes: dict[str, Any], stage: str, call_attributes: dict) -> Make:
    """A ``make`` for a KServe stage method: directly inside the prediction of :func:`_prediction`'s wrapper
    (its span attributes are ``call_attributes``) naming the same model (the Model's ``name``), a ``Stage``
    on the prediction's telemetry and series; any other call gets what ``enter`` (the framework stage's)
    gives. Entered in the wrapper itself, as :func:`modeltel.hotpath.wrap` would; a generator method is
    wrapped by that."""

    def make(func: Callable[..., Any], owner: Any) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(func):

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                frame = current_frame()
                if (
                    frame is not None
                    and frame._attributes is call_attributes
                    and args
                    and frame._model_name == getattr(args[0], "name", None)
                ):
                    cm = Stage(frame._t, stage, None, None, None, attributes)  # the prediction's model
                else:
                    cm = enter(args, kwargs)
                    if cm is None:
                        return await func(*args, **kwargs)
                with cm:
                    return await func(*args, **kwargs)

        elif inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            return wrap(func, enter)
        else:

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                frame = current_frame()
                if (
                    frame is not None
                    and frame._attributes is call_attributes
                    and args
                    and frame._model_name == getattr(args[0], "name", None)
                ):
                    cm = Stage(frame._t, stage, None, None, None, attributes)  # the prediction's model
                else:
                    cm = enter(args, kwargs)
                    if cm is None:
                        return func(*args, **kwargs)
                with cm:
                    return func(*args, **kwargs)

        return finish(wrapper, func)

    return make


def _prediction(general: Make, telemetry: Callable[[], Any], attributes: dict[str, Any]) -> Make:
    """A ``make`` for ``Model.__call__``: :meth:`~.base.ModeltelInstrumentor.prediction_call`'s rule (a
    prediction named by the Model's ``name``, with span attributes ``attributes``; directly inside another
    KServe prediction, pass through), entered in the wrapper itself; a ``__call__`` that is not a coroutine
    function goes to ``general``."""
    predictions = prediction_frames("kserve")
    predictions[id(attributes)] = attributes

    def make(func: Callable[..., Any], owner: Any) -> Callable[..., Any]:
        if not inspect.iscoroutinefunction(func):
            return general(func, owner)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            frame = current_frame()
            if args and (frame is None or id(frame._attributes) not in predictions):
                name = getattr(args[0], "name", None)
                with Prediction(telemetry(), "predict", name, None, None, attributes):  # Telemetry.prediction
                    return await func(*args, **kwargs)
            return await func(*args, **kwargs)

        return finish(wrapper, func)

    return make


class KServeInstrumentor(ModeltelInstrumentor):
    patched_module = "kserve"

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("kserve")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        from kserve import Model

        call_attributes = stage_attributes("kserve", "__call__")
        makers = {}
        for name, stage in _STAGES.items():
            enter, attributes = self.stage_enter("kserve", name, stage, model_of=_model_of)
            makers[name] = _stage(enter, attributes, stage, call_attributes)
        # Model.__call__ is the prediction, named by the KServe model (taking over an HTTP request's)
        general = self.prediction_call("kserve", "__call__", model_of=_model_of)
        makers["__call__"] = _prediction(general, self._telemetry, call_attributes)
        patch_hierarchy(patches, Model, makers)
