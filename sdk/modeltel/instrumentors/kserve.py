"""KServe: ``kserve.Model`` preprocess / predict / explain / postprocess, and ``__call__`` as the prediction.

KServe dispatches each stage on ``inspect.iscoroutinefunction``; the wrappers keep the kind of the
method they wrap, so sync and async models behave exactly as before. Overrides in subclasses are wrapped
where they are defined (including classes created after ``instrument()``). The model name is the
Model's ``name``; KServe has no model version, so it comes from ``MODELTEL_MODEL_VERSION``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from modeltel import taxonomy as tx

from .base import ModeltelInstrumentor, Patches, patch_hierarchy

_STAGES = {
    "preprocess": tx.STAGE_PREPROCESS,
    "predict": tx.STAGE_INFERENCE,
    "explain": "explain",
    "postprocess": tx.STAGE_POSTPROCESS,
}


def _model_of(args: tuple, kwargs: dict) -> tuple[str | None, str | None]:
    return getattr(args[0], "name", None), None


class KServeInstrumentor(ModeltelInstrumentor):
    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("kserve")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        from kserve import Model

        makers = {
            name: self.framework_stage("kserve", name, stage, model_of=_model_of) for name, stage in _STAGES.items()
        }
        # Model.__call__ is the prediction, named by the KServe model (taking over an HTTP request's)
        makers["__call__"] = self.prediction_call("kserve", "__call__", model_of=_model_of)
        patch_hierarchy(patches, Model, makers)
