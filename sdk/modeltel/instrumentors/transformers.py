"""Hugging Face transformers: ``Pipeline`` preprocess / _forward / postprocess (every task's overrides).

With no modeltel stage active, the three become the preprocess / inference / postprocess stages (the
model name is the pipeline model's ``name_or_path`` when it has one); inside an active stage (a KServe
predict, say) they are child spans ``transformers.<method>`` with no histogram sample. PyTorch module
calls inside ``_forward`` pass through (no second span). A classification pipeline's ``score`` is the
prediction's confidence.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from modeltel import taxonomy as tx

from .base import ModeltelInstrumentor, Patches, patch_hierarchy

_STAGES = {"preprocess": tx.STAGE_PREPROCESS, "_forward": tx.STAGE_INFERENCE, "postprocess": tx.STAGE_POSTPROCESS}


def _model_of(args: tuple, kwargs: dict) -> tuple[str | None, str | None]:
    model = getattr(args[0], "model", None) if args else None
    return (getattr(model, "name_or_path", None) or None), None


def _scores(result: Any, args: tuple, kwargs: dict) -> list[float] | None:
    if isinstance(result, Mapping):
        score = result.get("score")
        return [float(score)] if isinstance(score, float | int) else None
    if isinstance(result, list) and result and all(isinstance(r, Mapping) and "score" in r for r in result):
        return [max(float(r["score"]) for r in result)]  # top-k labels of one input: its top score
    return None


class TransformersInstrumentor(ModeltelInstrumentor):
    patched_module = "transformers.pipelines.base"

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("transformers")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        from transformers.pipelines.base import Pipeline

        makers = {
            method: self.library_call(
                "transformers",
                method,
                stage=stage,
                model_of=_model_of,
                confidences=_scores if method == "postprocess" else None,
            )
            for method, stage in _STAGES.items()
        }
        patch_hierarchy(patches, Pipeline, makers)
