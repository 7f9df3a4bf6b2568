from __future__ import annotations

import numpy as np
import pytest

import modeltel
from modeltel import taxonomy as tx
from modeltel.testing import Capture
from tests.conftest import parent_of

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnxruntime.capi.onnxruntime_inference_collection import Session  # noqa: E402

from modeltel.instrumentors.onnxruntime import OnnxRuntimeInstrumentor  # noqa: E402


def _softmax_model() -> bytes:
    """x[N,3] -> probabilities = softmax(x), label = argmax(x)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])
    label = helper.make_tensor_value_info("label", TensorProto.INT64, [None, 1])
    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["x"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["x"], ["label"], axis=1),
        ],
        "g",
        [x],
        [probs, label],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture(scope="module")
def session():
    return ort.InferenceSession(_softmax_model(), providers=["CPUExecutionProvider"])


@pytest.fixture
def instrumented():
    OnnxRuntimeInstrumentor().instrument()
    yield
    OnnxRuntimeInstrumentor().uninstrument()


X = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)


def test_off(tel: Capture, session) -> None:
    session.run(None, {"x": X})
    assert tel.spans() == []


def test_run_is_inference_with_confidence(tel: Capture, session, instrumented) -> None:
    probs, _ = session.run(None, {"x": X})
    (span,) = tel.spans()
    assert span.name == "inference" and span.attributes[tx.SPAN_ATTR_FRAMEWORK_STAGE] == "run"
    conf = tel.points(tx.PREDICTION_CONFIDENCE.otel_name)
    assert sum(p.count for p in conf) == 2
    assert sum(p.sum for p in conf) == pytest.approx(float(probs.max(axis=1).sum()), rel=1e-5)
    session.run(["label"], {"x": X})  # probability output not asked for: no confidence
    assert sum(p.count for p in tel.points(tx.PREDICTION_CONFIDENCE.otel_name)) == 2
    assert tel.stage_counts() == {("env-model", "7", "inference"): 2}


def test_nested(tel: Capture, session, instrumented) -> None:
    with modeltel.stage("inference"):
        session.run(None, {"x": X})
    outer = next(s for s in tel.spans() if s.name == "inference")
    child = next(s for s in tel.spans() if s.name == "onnxruntime.run")
    assert parent_of(child) == outer.context.span_id
    assert tel.stage_counts() == {("env-model", "7", "inference"): 1}


def test_error(tel: Capture, session, instrumented) -> None:
    with pytest.raises(Exception) as info, modeltel.prediction():
        session.run(None, {"nope": X})
    assert tel.count(tx.ERRORS.otel_name, error_type=type(info.value).__name__) == 1
    assert tel.count(tx.PREDICTIONS.otel_name, status="error") == 1


def test_on_then_off(tel: Capture, session) -> None:
    original = Session.__dict__["run"]
    OnnxRuntimeInstrumentor().instrument()
    assert Session.__dict__["run"] is not original
    OnnxRuntimeInstrumentor().uninstrument()
    assert Session.__dict__["run"] is original
    assert "__init_subclass__" not in Session.__dict__
