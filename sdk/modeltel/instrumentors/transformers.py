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

import modeltel
from modeltel import taxonomy as tx

from ._common import (
    Guarded,
    Patches,
    PatchOnImportInstrumentor,
    _library_active,
    patch_hierarchy,
    preserve_kind,
    record_confidences,
    stage_attributes,
)

_STAGES = {"preprocess": tx.STAGE_PREPROCESS, "_forward": tx.STAGE_INFERENCE, "postprocess": tx.STAGE_POSTPROCESS}


def _model_name(pipeline: Any) -> str | None:
    model = getattr(pipeline, "model", None)
    return getattr(model, "name_or_path", None) or None


def _scores(result: Any) -> list[float] | None:
    if isinstance(result, Mapping):
        score = result.get("score")
        return [float(score)] if isinstance(score, float | int) else None
    if isinstance(result, list) and result and all(isinstance(r, Mapping) and "score" in r for r in result):
        return [max(float(r["score"]) for r in result)]  # top-k labels of one input: its top score
    return None


def _confidence(stage: Any, result: Any, args: tuple, kwargs: dict) -> None:
    scores = _scores(result)
    if scores is not None:
        record_confidences(scores)


def _maker(method: str, canonical: str) -> Any:
    attributes = stage_attributes("transformers", method)
    child_name = f"transformers.{method}"

    def make(func: Any, owner: Any) -> Any:
        def enter(args: tuple, kwargs: dict) -> Any:
            if _library_active.get():
                return None
            active = modeltel.current_stage()
            if active is None:
                name = _model_name(args[0]) if args else None
                st = modeltel.stage(canonical, model_name=name, attributes=attributes)
            else:
                st = modeltel.stage(active, span_name=child_name, attributes=attributes, record=False)
            return Guarded(st, _library_active, True)

        return preserve_kind(func, enter, _confidence if method == "postprocess" else None)

    return make


class TransformersInstrumentor(PatchOnImportInstrumentor):
    patched_module = "transformers.pipelines.base"

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("transformers >= 4.40, < 6",)

    def _apply(self, patches: Patches) -> None:
        from transformers.pipelines.base import Pipeline

        patch_hierarchy(patches, Pipeline, {m: _maker(m, c) for m, c in _STAGES.items()})
