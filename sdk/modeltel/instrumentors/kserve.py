"""KServe: ``kserve.Model`` preprocess / predict / explain / postprocess, and ``__call__`` as the prediction.

KServe dispatches each stage on ``inspect.iscoroutinefunction``; the wrappers keep the kind of the
method they wrap, so sync and async models behave exactly as before. Overrides in subclasses are wrapped
where they are defined (including classes created after ``instrument()``). The model name is the
Model's ``name``; KServe has no model version, so it comes from ``MODELTEL_MODEL_VERSION``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

import modeltel
from modeltel import taxonomy as tx

from ._common import (
    Patches,
    _framework_active,
    _Guarded,
    framework_wrapper,
    patch_hierarchy,
    preserve_kind,
    stage_attributes,
)

_STAGES = {
    "preprocess": tx.STAGE_PREPROCESS,
    "predict": tx.STAGE_INFERENCE,
    "explain": "explain",
    "postprocess": tx.STAGE_POSTPROCESS,
}
_PREDICTION_ATTRIBUTES = stage_attributes("kserve", "__call__")


def _model_of(model: Any) -> tuple[str | None, str | None]:
    return getattr(model, "name", None), None


_CALL_KEY = ("kserve", "__call__")


def _call_wrapper(func: Any, owner: Any) -> Any:
    """``Model.__call__``: the prediction, named by the KServe model.

    Under the HTTP instrumentors' request prediction it takes over (that one gives way), so
    ``model_predictions_total`` carries the same model name as the stage histograms.
    """

    def enter(args: tuple, kwargs: dict) -> Any:
        if not args or _framework_active.get() is _CALL_KEY:  # an override calling super().__call__
            return None
        prediction = modeltel.prediction(getattr(args[0], "name", None), attributes=_PREDICTION_ATTRIBUTES)
        return _Guarded(prediction, _framework_active, _CALL_KEY)

    return preserve_kind(func, enter)


class KServeInstrumentor(BaseInstrumentor):
    _patches: Patches | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("kserve >= 0.11, < 1",)

    def _instrument(self, **kwargs: Any) -> None:
        from kserve import Model

        self._patches = Patches()
        makers: dict[str, Any] = {
            name: framework_wrapper("kserve", name, stage, model_of=_model_of) for name, stage in _STAGES.items()
        }
        makers["__call__"] = _call_wrapper
        patch_hierarchy(self._patches, Model, makers)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._patches is not None:
            self._patches.restore()
            self._patches = None
