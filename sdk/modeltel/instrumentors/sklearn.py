"""scikit-learn: ``predict`` / ``predict_proba`` / ``decision_function`` of every estimator, overrides included."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ._common import (
    Patches,
    PatchOnImportInstrumentor,
    library_wrapper,
    patch_hierarchy,
    record_confidences,
    top_probabilities,
)


def _confidence(stage: Any, result: Any, args: tuple, kwargs: dict) -> None:
    top = top_probabilities(result)
    if top is not None:
        record_confidences(top)


class SklearnInstrumentor(PatchOnImportInstrumentor):
    """Wraps the methods wherever they are defined: ``BaseEstimator`` subclasses and the mixins in their MRO.

    Nothing is imported until scikit-learn is. Classes defined after ``instrument()`` are wrapped when
    they are created (an ``__init_subclass__`` hook on ``BaseEstimator``, removed by ``uninstrument()``).
    """

    patched_module = "sklearn.base"

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("scikit-learn >= 1.3, < 2",)

    def _apply(self, patches: Patches) -> None:
        from sklearn.base import BaseEstimator

        makers = {
            "predict": library_wrapper("sklearn", "predict"),
            "predict_proba": library_wrapper("sklearn", "predict_proba", after=_confidence),
            "decision_function": library_wrapper("sklearn", "decision_function"),
        }
        patch_hierarchy(patches, BaseEstimator, makers, through_mro=True)
