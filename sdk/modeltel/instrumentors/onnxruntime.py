"""ONNX Runtime: ``InferenceSession.run`` (and overrides of ``run`` in ``Session`` subclasses)."""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from typing import Any

from .base import ModeltelInstrumentor, Patches, patch_hierarchy, top_probabilities

_NO_PROBS = -1


def _probability_output(session: Any) -> int:
    """Index of the session's probability output (by name, as converters name it), or -1; cached per session."""
    idx = getattr(session, "_modeltel_prob_index", None)
    if idx is None:
        idx = _NO_PROBS
        try:
            for i, out in enumerate(session.get_outputs()):
                if "prob" in out.name.lower():
                    idx = i
                    break
        except Exception:
            pass
        with contextlib.suppress(Exception):
            session._modeltel_prob_index = idx
    return idx


def _confidences(result: Any, args: tuple, kwargs: dict) -> list[float] | None:
    if not args:
        return None
    session = args[0]
    idx = _probability_output(session)
    if idx == _NO_PROBS:
        return None
    names = args[1] if len(args) > 1 else kwargs.get("output_names")
    if names:  # the caller chose outputs: find the probability one among them
        try:
            idx = list(names).index(session.get_outputs()[idx].name)
        except Exception:
            return None
    if isinstance(result, list) and idx < len(result):
        return top_probabilities(result[idx])
    return None


class OnnxRuntimeInstrumentor(ModeltelInstrumentor):
    patched_module = "onnxruntime"

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("onnxruntime")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        from onnxruntime.capi.onnxruntime_inference_collection import Session

        run = self.library_call("onnxruntime", "run", confidences=_confidences)
        patch_hierarchy(patches, Session, {"run": run})
