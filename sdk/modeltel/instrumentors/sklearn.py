"""scikit-learn: ``predict`` / ``predict_proba`` / ``decision_function`` of every estimator, overrides included."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from ._common import Patches, library_wrapper, patch_hierarchy, record_confidences, top_probabilities, when_imported


def _confidence(stage: Any, result: Any, args: tuple, kwargs: dict) -> None:
    top = top_probabilities(result)
    if top is not None:
        record_confidences(top)


class SklearnInstrumentor(BaseInstrumentor):
    """Wraps the methods wherever they are defined: ``BaseEstimator`` subclasses and the mixins in their MRO.

    Nothing is imported until scikit-learn is. Classes defined after ``instrument()`` are wrapped when
    they are created (an ``__init_subclass__`` hook on ``BaseEstimator``, removed by ``uninstrument()``).
    """

    _patches: Patches | None = None
    _cancel: Any = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("scikit-learn >= 1.3, < 2",)

    def _instrument(self, **kwargs: Any) -> None:
        self._cancel = when_imported("sklearn.base", self._patch)

    def _patch(self) -> None:
        from sklearn.base import BaseEstimator

        self._patches = Patches()
        makers = {
            "predict": library_wrapper("sklearn", "predict"),
            "predict_proba": library_wrapper("sklearn", "predict_proba", after=_confidence),
            "decision_function": library_wrapper("sklearn", "decision_function"),
        }
        patch_hierarchy(self._patches, BaseEstimator, makers, through_mro=True)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
        if self._patches is not None:
            self._patches.restore()
            self._patches = None
