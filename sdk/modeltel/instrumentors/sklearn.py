"""scikit-learn: ``predict`` / ``predict_proba`` / ``decision_function`` of every estimator, overrides included.

``fit`` and its kin are wrapped too, as training calls: estimators predict inside ``fit`` (gradient
boosting's init estimator, early stopping, a grid search's scoring), and none of that is the
application predicting. ``score`` is the same: it predicts to evaluate on labelled data, not to serve.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .base import ModeltelInstrumentor, Patches, patch_hierarchy, top_probabilities

TRAINING_METHODS = ("fit", "partial_fit", "fit_transform", "fit_predict", "score")  # not serving


def _confidences(result: Any, args: tuple, kwargs: dict) -> list[float] | None:
    return top_probabilities(result)


class SklearnInstrumentor(ModeltelInstrumentor):
    """Wraps the methods wherever they are defined: ``BaseEstimator`` subclasses and the mixins in their MRO.

    Nothing is imported until scikit-learn is. Classes defined after ``instrument()`` are wrapped when
    they are created (an ``__init_subclass__`` hook on ``BaseEstimator``, removed by ``uninstrument()``).
    """

    patched_module = "sklearn.base"

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("sklearn")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        from sklearn.base import BaseEstimator

        makers = {
            "predict": self.library_call("sklearn", "predict"),
            "predict_proba": self.library_call("sklearn", "predict_proba", confidences=_confidences),
            "decision_function": self.library_call("sklearn", "decision_function"),
            **dict.fromkeys(TRAINING_METHODS, self.training_call()),
        }
        patch_hierarchy(patches, BaseEstimator, makers, through_mro=True)
