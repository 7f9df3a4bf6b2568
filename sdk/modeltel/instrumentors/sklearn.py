"""scikit-learn: ``predict`` / ``predict_proba`` / ``decision_function`` of every estimator, overrides included."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from ._common import Patches, library_wrapper, patch_hierarchy, record_confidences, top_probabilities


def _confidence(stage: Any, result: Any, args: tuple, kwargs: dict) -> None:
    top = top_probabilities(result)
    if top is not None:
        record_confidences(top)


class SklearnInstrumentor(BaseInstrumentor):
    """Wraps the methods wherever they are defined: ``BaseEstimator`` subclasses and the mixins in their MRO.

    Classes defined after ``instrument()`` are wrapped when they are created (an ``__init_subclass__``
    hook on ``BaseEstimator``, removed again by ``uninstrument()``).
    """

    _patches: Patches | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("scikit-learn >= 1.3, < 2",)

    def _instrument(self, **kwargs: Any) -> None:
        from sklearn.base import BaseEstimator

        self._patches = Patches()
        makers = {
            "predict": library_wrapper("sklearn", "predict"),
            "predict_proba": library_wrapper("sklearn", "predict_proba", after=_confidence),
            "decision_function": library_wrapper("sklearn", "decision_function"),
        }
        patch_hierarchy(self._patches, BaseEstimator, makers, through_mro=True)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._patches is not None:
            self._patches.restore()
            self._patches = None
