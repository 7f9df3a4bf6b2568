from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import modeltel
from modeltel import taxonomy as tx
from modeltel.testing import Capture
from tests.conftest import parent_of

kserve = pytest.importorskip("kserve")
from kserve import Model  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from modeltel.instrumentors.kserve import KServeInstrumentor  # noqa: E402
from modeltel.instrumentors.sklearn import SklearnInstrumentor  # noqa: E402

X, Y = load_iris(return_X_y=True)
CLF = LogisticRegression(max_iter=500).fit(X, Y)


class AsyncIris(Model):
    def __init__(self, name: str = "iris-async") -> None:
        super().__init__(name)
        self.ready = True

    async def preprocess(self, payload, headers=None):
        await asyncio.sleep(0.001)
        return np.asarray(payload["instances"])

    async def predict(self, payload, headers=None):
        await asyncio.sleep(0.001)
        return {"predictions": CLF.predict_proba(payload).tolist()}

    async def postprocess(self, response, headers=None):
        return response


class SyncIris(Model):
    def __init__(self, name: str = "iris-sync") -> None:
        super().__init__(name)
        self.ready = True

    def preprocess(self, payload, headers=None):
        return np.asarray(payload["instances"])

    def predict(self, payload, headers=None):
        if payload.shape[1] != 4:
            raise KeyError("width")
        return {"predictions": CLF.predict(payload).tolist()}

    def postprocess(self, response, headers=None):
        return response


@pytest.fixture
def instrumented():
    KServeInstrumentor().instrument()
    yield
    KServeInstrumentor().uninstrument()


def _kinds(cls):
    return {n: inspect.iscoroutinefunction(getattr(cls, n)) for n in ("preprocess", "predict", "postprocess")}


BODY = {"instances": X[:2].tolist()}


async def test_off(tel: Capture) -> None:
    await AsyncIris()(BODY)
    assert tel.spans() == []


@pytest.mark.parametrize("cls", [AsyncIris, SyncIris])
async def test_stages_under_prediction(tel: Capture, instrumented, cls) -> None:
    assert _kinds(cls) == {n: cls is AsyncIris for n in ("preprocess", "predict", "postprocess")}
    m = cls()
    await m(BODY)
    spans = {s.name: s for s in tel.spans()}
    assert set(spans) == {"predict", "preprocess", "inference", "postprocess"}
    root = spans["predict"]
    for name in ("preprocess", "inference", "postprocess"):
        assert parent_of(spans[name]) == root.context.span_id
        assert spans[name].attributes[tx.SPAN_ATTR_FRAMEWORK] == "kserve"
        assert spans[name].attributes[tx.ATTR_MODEL_NAME] == m.name
    assert spans["inference"].attributes[tx.SPAN_ATTR_FRAMEWORK_STAGE] == "predict"
    assert tel.stage_counts() == {(m.name, "7", s): 1 for s in ("preprocess", "inference", "postprocess")}
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1


async def test_error_seen_unchanged_and_counted_once(tel: Capture, instrumented) -> None:
    with pytest.raises(KeyError) as info:
        await SyncIris()({"instances": [[1.0, 2.0]]})
    assert info.value.args == ("width",)
    assert tel.count(tx.ERRORS.otel_name, error_type="KeyError") == 1
    assert tel.count(tx.PREDICTIONS.otel_name, status="error") == 1


async def test_sklearn_nested_is_child_not_second_sample(tel: Capture, instrumented) -> None:
    SklearnInstrumentor().instrument()
    try:
        await AsyncIris()(BODY)
    finally:
        SklearnInstrumentor().uninstrument()
    spans = {s.name: s for s in tel.spans()}
    assert parent_of(spans["sklearn.predict_proba"]) == spans["inference"].context.span_id
    assert tel.stage_counts()[("iris-async", "7", "inference")] == 1
    assert sum(p.count for p in tel.points(tx.PREDICTION_CONFIDENCE.otel_name)) == 2


async def test_subclass_defined_after_instrument_and_super_call(tel: Capture, instrumented) -> None:
    class Later(SyncIris):
        def predict(self, payload, headers=None):
            return super().predict(payload, headers)

    class LaterAsync(AsyncIris):
        async def preprocess(self, payload, headers=None):
            return await super().preprocess(payload, headers)

    await Later("later")(BODY)
    await LaterAsync("later-async")(BODY)
    stages = ("preprocess", "inference", "postprocess")
    assert tel.stage_counts() == {(name, "7", stage): 1 for name in ("later", "later-async") for stage in stages}


@pytest.mark.parametrize("cls", [AsyncIris, SyncIris])  # each has a wrapper of its own
async def test_a_model_renamed_during_a_request_names_its_later_stages(tel: Capture, instrumented, cls) -> None:
    """The stages take the prediction's model only while the Model's name is still the prediction's."""

    if cls is SyncIris:

        class Renamed(cls):
            def preprocess(self, payload, headers=None):
                self.name = "renamed"
                return super().preprocess(payload, headers)

    else:

        class Renamed(cls):
            async def preprocess(self, payload, headers=None):
                self.name = "renamed"
                return await super().preprocess(payload, headers)

    await Renamed("first")(BODY)
    assert tel.stage_counts() == {
        ("first", "7", "preprocess"): 1,
        ("renamed", "7", "inference"): 1,
        ("renamed", "7", "postprocess"): 1,
    }
    assert tel.count(tx.PREDICTIONS.otel_name, model_name="first") == 1


@pytest.mark.parametrize("cls", [AsyncIris, SyncIris])
async def test_stages_outside_a_kserve_prediction(tel: Capture, instrumented, cls) -> None:
    """Called directly, or inside the application's own prediction of another model, a stage is the Model's."""
    m = cls("direct")

    async def call(method, arg):
        result = method(arg)
        return await result if inspect.isawaitable(result) else result

    await call(m.predict, await call(m.preprocess, BODY))
    with modeltel.prediction("app"):
        await call(m.predict, await call(m.preprocess, BODY))
    assert tel.stage_counts() == {("direct", "7", "preprocess"): 2, ("direct", "7", "inference"): 2}
    assert tel.count(tx.PREDICTIONS.otel_name, model_name="app") == 1
    assert tel.count(tx.PREDICTIONS.otel_name) == 1


async def test_100_concurrent_requests_keep_their_stages(tel: Capture, instrumented) -> None:
    m = AsyncIris()
    await asyncio.gather(*(m(BODY) for _ in range(100)))
    spans = tel.spans()
    roots = {s.context.span_id: s for s in spans if s.name == "predict"}
    assert len(roots) == 100
    children: dict[int, list[str]] = {}
    for s in spans:
        if s.name != "predict":
            assert s.context.trace_id == roots[parent_of(s)].context.trace_id
            children.setdefault(parent_of(s), []).append(s.name)
    assert all(sorted(v) == ["inference", "postprocess", "preprocess"] for v in children.values())
    assert len(children) == 100


def test_on_then_off_restores_exactly() -> None:
    before = {
        (c, n): c.__dict__.get(n)
        for c in (Model, AsyncIris, SyncIris)
        for n in (*tx.CANONICAL_STAGES, "predict", "explain", "__call__")
    }
    KServeInstrumentor().instrument()
    assert _kinds(AsyncIris) == dict.fromkeys(("preprocess", "predict", "postprocess"), True)
    assert inspect.iscoroutinefunction(Model.__call__)
    KServeInstrumentor().uninstrument()
    after = {
        (c, n): c.__dict__.get(n)
        for c in (Model, AsyncIris, SyncIris)
        for n in (*tx.CANONICAL_STAGES, "predict", "explain", "__call__")
    }
    assert after == before
    assert "__init_subclass__" not in Model.__dict__


def test_pytest_collect_only_abbreviated_is_not_taken_for_a_kserve_flag() -> None:
    """KServe parses sys.argv at import; ``--co`` used to end in INTERNALERROR (``--collect-only`` did not)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", __file__],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0 and "INTERNALERROR" not in proc.stdout + proc.stderr, proc.stdout[-2000:]
    assert "test_pytest_collect_only_abbreviated_is_not_taken_for_a_kserve_flag" in proc.stdout
