"""MLServer: ``MLModel.predict`` / ``predict_stream`` as the prediction, the codec steps as pre/post stages.

Mapping: ``predict`` (and ``predict_stream``) -> the prediction (taking over an HTTP instrumentor's
request prediction, as KServe's does) with the ``inference`` stage inside it; ``decode_request`` -> preprocess,
``encode_response`` -> postprocess. A model calls its codecs from inside ``predict``, so the pre/post
spans are children of the inference span (their time is part of it). The model name and version are
MLServer's own (``MLModel.name`` / ``MLModel.version``, i.e. the model settings), so every model of a
multi-model server is told apart. Wrappers keep the kind of the method (``predict`` is a coroutine
function, ``predict_stream`` an async generator, the codecs plain), and overrides in subclasses are
wrapped where they are defined, including classes created after ``instrument()``.
"""

from __future__ import annotations

from collections.abc import Collection
from contextvars import ContextVar
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

import modeltel
from modeltel import taxonomy as tx

from ._common import Patches, _Guarded, framework_wrapper, patch_hierarchy, preserve_kind, stage_attributes

_CODEC_STAGES = {
    "decode_request": tx.STAGE_PREPROCESS,
    "encode_response": tx.STAGE_POSTPROCESS,
}
_PREDICTION_METHODS = ("predict", "predict_stream")
# An MLServer prediction is running in this context: an override calling super().predict is one prediction.
_in_predict: ContextVar[bool] = ContextVar("modeltel_mlserver_predict", default=False)


def _model_of(model: Any) -> tuple[str | None, str | None]:
    """(name, version) from MLServer's properties, falling back to the model settings."""
    try:
        name = getattr(model, "name", None)
        version = getattr(model, "version", None)
        if name is None or version is None:
            settings = getattr(model, "settings", None) or getattr(model, "_settings", None)
            if settings is not None:
                name = name or getattr(settings, "name", None)
                params = getattr(settings, "parameters", None)
                version = version or getattr(params, "version", None)
    except Exception:  # a half-initialised model: use the environment's
        return None, None
    return (str(name) if name else None), (str(version) if version else None)


def _prediction_wrapper(method: str) -> Any:
    """``predict``: the prediction, named by the MLServer model, around the ``inference`` stage.

    Under the HTTP instrumentors' request prediction (MLServer's REST server is FastAPI) it takes over
    (that one gives way), so ``model_predictions_total`` carries the same model name as the stages.
    """
    attributes = stage_attributes("mlserver", method)
    stage_make = framework_wrapper("mlserver", method, tx.STAGE_INFERENCE, model_of=_model_of)

    def make(func: Any, owner: Any) -> Any:
        inner = stage_make(func, owner)

        def enter(args: tuple, kwargs: dict) -> Any:
            if not args or _in_predict.get():
                return None
            name, version = _model_of(args[0])
            return _Guarded(modeltel.prediction(name, version, attributes=attributes), _in_predict, True)

        return preserve_kind(inner, enter)

    return make


class MLServerInstrumentor(BaseInstrumentor):
    _patches: Patches | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("mlserver >= 1.3, < 2",)

    def _instrument(self, **kwargs: Any) -> None:
        from mlserver import MLModel

        self._patches = Patches()
        makers: dict[str, Any] = {name: _prediction_wrapper(name) for name in _PREDICTION_METHODS}
        for name, stage in _CODEC_STAGES.items():
            makers[name] = framework_wrapper("mlserver", name, stage, model_of=_model_of)
        patch_hierarchy(self._patches, MLModel, makers)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._patches is not None:
            self._patches.restore()
            self._patches = None
