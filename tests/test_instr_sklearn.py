from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modeltel
from modeltel import taxonomy as tx
from modeltel.instrumentors.sklearn import SklearnInstrumentor
from modeltel.testing import Capture, capture
from tests.conftest import parent_of

X, Y = load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def model():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, Y)


@pytest.fixture
def instrumented():
    SklearnInstrumentor().instrument()
    yield
    SklearnInstrumentor().uninstrument()


def _originals():
    return {
        (cls, name): cls.__dict__[name]
        for cls in (LogisticRegression, LogisticRegression.__mro__[1], type(make_pipeline(LogisticRegression())))
        for name in ("predict", "predict_proba", "decision_function")
        if name in cls.__dict__
    }


def test_off_records_nothing(tel: Capture, model) -> None:
    model.predict(X[:2])
    assert tel.spans() == []
    assert tel.stage_counts() == {}


def test_on_is_inference_stage_with_confidence(tel: Capture, model, instrumented) -> None:
    probs = model.predict_proba(X[:5])
    spans = tel.spans()
    assert [s.name for s in spans] == ["inference"]  # the pipeline's final estimator passes through
    attrs = spans[0].attributes
    assert attrs[tx.SPAN_ATTR_FRAMEWORK] == "sklearn"
    assert attrs[tx.SPAN_ATTR_FRAMEWORK_STAGE] == "predict_proba"
    assert attrs[tx.ATTR_MODEL_NAME] == "env-model" and attrs[tx.ATTR_MODEL_VERSION] == "7"
    assert tel.stage_counts() == {("env-model", "7", "inference"): 1}
    conf = tel.points(tx.PREDICTION_CONFIDENCE.otel_name)
    assert sum(p.count for p in conf) == 5
    assert sum(p.sum for p in conf) == pytest.approx(float(probs.max(axis=1).sum()))


def test_confidence_switch(make_captured, model, instrumented) -> None:
    c = make_captured(record_confidence=False)
    model.predict_proba(X[:5])
    assert c.count(tx.STAGE_LATENCY.otel_name) == 1
    assert c.count(tx.PREDICTION_CONFIDENCE.otel_name) == 0


def test_nested_in_stage_is_child_span_not_second_sample(tel: Capture, model, instrumented) -> None:
    with modeltel.prediction(model_name="iris", model_version="3"), modeltel.stage("inference"):
        model.predict(X[:4])
    by_name = {s.name: s for s in tel.spans()}
    assert set(by_name) == {"predict", "inference", "sklearn.predict"}
    child = by_name["sklearn.predict"]
    assert parent_of(child) == by_name["inference"].context.span_id
    assert child.attributes[tx.ATTR_MODEL_NAME] == "iris"
    assert tel.stage_counts() == {("iris", "3", "inference"): 1}


def test_subclass_override_defined_before_and_after(tel: Capture, instrumented) -> None:
    class Custom(ClassifierMixin, BaseEstimator):  # defined after instrument(): hooked on creation
        def fit(self, X, y):
            return self

        def predict(self, X):
            return np.zeros(len(X))

        def predict_proba(self, X):
            return np.tile([0.9, 0.1], (len(X), 1))

    class Sub(LogisticRegression):
        def predict(self, X):
            return super().predict(X)  # nested base call passes through

    c = Custom().fit(X, Y)
    c.predict(X[:3])
    c.predict_proba(X[:3])
    Sub(max_iter=500).fit(X, Y).predict(X[:3])
    spans = tel.spans()
    assert [s.attributes[tx.SPAN_ATTR_FRAMEWORK_STAGE] for s in spans] == ["predict", "predict_proba", "predict"]
    assert tel.stage_counts() == {("env-model", "7", "inference"): 3}


def _model_points(c: Capture) -> dict[str, list]:
    return {i.otel_name: c.points(i.otel_name) for i in tx.INSTRUMENTS if c.points(i.otel_name)}


def test_training_is_not_a_prediction(monkeypatch: pytest.MonkeyPatch, instrumented) -> None:
    """The KServe report: GradientBoostingClassifier.fit at start-up calls its own predict_proba."""
    for var in ("MODELTEL_MODEL_NAME", "MODELTEL_MODEL_VERSION", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(var, raising=False)

    class SelfScoring(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            self.classes_ = np.unique(y)
            self.predict(X)  # early stopping, a validation score...
            return self

        def predict(self, X):
            return np.zeros(len(X))

    with capture() as c:
        gbc = GradientBoostingClassifier(n_estimators=3, max_depth=1).fit(X, Y)
        SGDClassifier(max_iter=5, tol=None).partial_fit(X, Y, classes=np.unique(Y))
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, Y)
        StandardScaler().fit_transform(X)
        KMeans(n_clusters=2, n_init=1).fit_predict(X)
        SelfScoring().fit(X, Y)
        gbc.score(X, Y)  # evaluation on labelled data (ClassifierMixin.score predicts): not serving either
        make_pipeline(StandardScaler(), LinearRegression()).fit(X, Y).score(X, Y)  # Pipeline.score, R^2
        assert c.spans() == []
        assert _model_points(c) == {}  # no series at all, so none with model_name="unknown"
        gbc.predict_proba(X[:2])  # the first real prediction
        assert c.stage_counts() == {(tx.UNKNOWN_VALUE, tx.UNKNOWN_VALUE, "inference"): 1}


def test_error_counted_and_reraised_unchanged(tel: Capture, model, instrumented) -> None:
    with pytest.raises(ValueError) as info, modeltel.prediction():
        model.predict(np.zeros((2, 99)))
    assert type(info.value) is ValueError
    assert tel.count(tx.ERRORS.otel_name, error_type="ValueError") == 1
    assert tel.spans()[0].status.status_code.name == "ERROR"


def test_on_then_off_restores_exactly(tel: Capture, model) -> None:
    before = _originals()
    SklearnInstrumentor().instrument()
    assert _originals() != before
    SklearnInstrumentor().uninstrument()
    assert _originals() == before
    assert "__init_subclass__" not in BaseEstimator.__dict__
    model.predict(X[:2])
    assert tel.spans() == []


def test_entry_point_registered() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="opentelemetry_instrumentor")}
    assert eps.get("modeltel_sklearn") == "modeltel.instrumentors.sklearn:SklearnInstrumentor"


def test_instrument_before_import_is_lazy() -> None:
    import subprocess
    import sys

    code = """
import sys
from modeltel.instrumentors.sklearn import SklearnInstrumentor
from modeltel.instrumentors.torch import TorchInstrumentor
SklearnInstrumentor().instrument(); TorchInstrumentor().instrument()
assert "sklearn" not in sys.modules and "torch" not in sys.modules
from sklearn.linear_model import LogisticRegression
assert hasattr(LogisticRegression.__dict__["predict_proba"], "__modeltel_original__")
assert "torch" not in sys.modules
SklearnInstrumentor().uninstrument()
assert not hasattr(LogisticRegression.__dict__["predict_proba"], "__modeltel_original__")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
