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
from typing import Any

from modeltel import taxonomy as tx

from .base import ModeltelInstrumentor, Patches, patch_hierarchy

_CODEC_STAGES = {
    "decode_request": tx.STAGE_PREPROCESS,
    "encode_response": tx.STAGE_POSTPROCESS,
}
_PREDICTION_METHODS = ("predict", "predict_stream")


def _model_of(args: tuple, kwargs: dict) -> tuple[str | None, str | None]:
    """(name, version) from MLServer's properties, falling back to the model settings."""
    model = args[0]
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


class MLServerInstrumentor(ModeltelInstrumentor):
    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("mlserver")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        from mlserver import MLModel

        makers = {
            name: self.prediction_call("mlserver", name, model_of=_model_of, stage=tx.STAGE_INFERENCE)
            for name in _PREDICTION_METHODS
        }
        for name, stage in _CODEC_STAGES.items():
            makers[name] = self.framework_stage("mlserver", name, stage, model_of=_model_of)
        patch_hierarchy(patches, MLModel, makers)
