"""TorchServe handlers: a real BaseHandler loading a TorchScript model, driven with TorchServe's own Context."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modeltel import taxonomy as tx
from modeltel.testing import Capture
from tests.conftest import parent_of

torch = pytest.importorskip("torch")
pytest.importorskip("ts")
from ts.context import Context, RequestProcessor  # noqa: E402
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl  # noqa: E402
from ts.torch_handler.base_handler import BaseHandler  # noqa: E402

from modeltel.instrumentors.torch import TorchInstrumentor  # noqa: E402
from modeltel.instrumentors.torchserve import TorchServeInstrumentor  # noqa: E402

METRICS_YAML = Path(sys.modules["ts"].__file__).parent / "configs" / "metrics.yaml"
ROWS = [{"body": [1.0, 2.0, 3.0]}, {"body": [0.0, 1.0, 0.0]}]
WRAPPED = ("preprocess", "inference", "postprocess", "handle")


class RowsHandler(BaseHandler):
    """A handler overriding only preprocess (BaseHandler's inference / postprocess / handle run)."""

    def preprocess(self, data):
        rows = [row["body"] for row in data]
        if any(len(r) != 3 for r in rows):
            raise ValueError("width")
        return torch.as_tensor(rows, dtype=torch.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("mar")
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), str(d / "model.pt"))
    return d


def _context(model_dir: Path, manifest: Any = "default") -> Any:
    if manifest == "default":
        manifest = {"model": {"modelName": "rows", "modelVersion": "2.0", "serializedFile": "model.pt"}}
    metrics = MetricsCacheYamlImpl(config_file_path=str(METRICS_YAML))
    metrics.initialize_cache()
    # the way ts.model_loader builds it: name, dir, manifest, batch size, gpu, server version, ...
    context = Context("rows-ctx", str(model_dir), manifest, 2, None, "0.12.0", metrics=metrics, model_yaml_config={})
    # what ts.service.Service.predict sets per batch
    context.request_ids = {0: "req-0", 1: "req-1"}
    context.request_processor = [RequestProcessor({}), RequestProcessor({})]
    metrics.request_ids = context.request_ids
    return context


def _handler(model_dir: Path, cls: type = RowsHandler) -> tuple[Any, Any]:
    context = _context(model_dir)
    handler = cls()
    handler.initialize(context)
    return handler, context


@pytest.fixture
def instrumented() -> Iterator[None]:
    TorchServeInstrumentor().instrument()
    yield
    TorchServeInstrumentor().uninstrument()


def test_off(tel: Capture, model_dir: Path) -> None:
    handler, context = _handler(model_dir)
    assert len(handler.handle(ROWS, context)) == 2
    assert tel.spans() == []


def test_handle_is_prediction_with_stages(tel: Capture, model_dir: Path, instrumented: None) -> None:
    handler, context = _handler(model_dir)
    out = handler.handle(ROWS, context)
    assert len(out) == 2 and len(out[0]) == 2
    spans = {s.name: s for s in tel.spans()}
    assert set(spans) == {"predict", "preprocess", "inference", "postprocess"}
    root = spans["predict"]
    assert root.attributes[tx.ATTR_MODEL_NAME] == "rows"
    assert root.attributes[tx.ATTR_MODEL_VERSION] == "2.0"
    assert root.attributes[tx.SPAN_ATTR_BATCH_SIZE] == 2
    for name in ("preprocess", "inference", "postprocess"):
        assert parent_of(spans[name]) == root.context.span_id
        assert spans[name].attributes[tx.SPAN_ATTR_FRAMEWORK] == "torchserve"
        assert spans[name].attributes[tx.SPAN_ATTR_FRAMEWORK_STAGE] == name
    assert tel.stage_counts() == {("rows", "2.0", s): 1 for s in ("preprocess", "inference", "postprocess")}
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1
    assert tel.count(tx.BATCH_SIZE.otel_name, model_name="rows") == 1


def test_torch_inside_inference_is_child_not_second_sample(tel: Capture, model_dir: Path, instrumented: None) -> None:
    handler, context = _handler(model_dir)
    TorchInstrumentor().instrument()
    try:
        handler.handle(ROWS, context)
    finally:
        TorchInstrumentor().uninstrument()
    spans = {s.name: s for s in tel.spans()}
    assert parent_of(spans["torch.forward"]) == spans["inference"].context.span_id
    assert tel.stage_counts()[("rows", "2.0", "inference")] == 1


def test_error_unchanged_and_counted_once(tel: Capture, model_dir: Path, instrumented: None) -> None:
    handler, context = _handler(model_dir)
    with pytest.raises(ValueError) as info:
        handler.handle([{"body": [1.0]}], context)
    assert info.value.args == ("width",)
    assert tel.count(tx.ERRORS.otel_name, error_type="ValueError") == 1
    assert tel.count(tx.PREDICTIONS.otel_name, status="error") == 1


def test_subclass_after_instrument_and_super_calls(tel: Capture, model_dir: Path, instrumented: None) -> None:
    class Later(RowsHandler):
        def inference(self, data, *args, **kwargs):
            return super().inference(data, *args, **kwargs)

        def handle(self, data, context):
            return super().handle(data, context)

    handler, context = _handler(model_dir, Later)
    handler.handle(ROWS, context)
    assert len(tel.spans("predict")) == 1
    assert tel.stage_counts()[("rows", "2.0", "inference")] == 1


def test_no_manifest_uses_context_model_name(tel: Capture, model_dir: Path, instrumented: None) -> None:
    class Bare(BaseHandler):  # a handler that never calls BaseHandler.initialize
        def preprocess(self, data):
            return [row["body"] for row in data]

        def inference(self, data, *args, **kwargs):
            return [sum(r) for r in data]

        def postprocess(self, data):
            return data

    Bare().handle(ROWS, _context(model_dir, manifest=None))
    assert tel.stage_counts() == {("rows-ctx", "7", s): 1 for s in ("preprocess", "inference", "postprocess")}


def test_on_then_off_restores_exactly(tel: Capture, model_dir: Path) -> None:
    classes = (BaseHandler, RowsHandler)
    before = {(c, n): c.__dict__.get(n) for c in classes for n in WRAPPED}
    TorchServeInstrumentor().instrument()
    assert BaseHandler.__dict__["handle"] is not before[(BaseHandler, "handle")]
    assert RowsHandler.__dict__["preprocess"] is not before[(RowsHandler, "preprocess")]
    TorchServeInstrumentor().uninstrument()
    assert {(c, n): c.__dict__.get(n) for c in classes for n in WRAPPED} == before
    assert "__init_subclass__" not in BaseHandler.__dict__
    handler, context = _handler(model_dir)
    handler.handle(ROWS, context)
    assert tel.spans() == []


def test_patched_on_import_not_before() -> None:
    code = (
        "import sys\n"
        "from modeltel.instrumentors.torchserve import TorchServeInstrumentor\n"
        "TorchServeInstrumentor().instrument()\n"
        "assert 'torch' not in sys.modules and 'ts.torch_handler.base_handler' not in sys.modules\n"
        "from ts.torch_handler.base_handler import BaseHandler\n"
        "assert BaseHandler.__dict__['handle'].__modeltel_original__\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_entry_point_registered_and_dependencies_met() -> None:
    from importlib.metadata import entry_points

    from opentelemetry.instrumentation.dependencies import get_dependency_conflicts

    eps = {ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor")}
    assert eps["modeltel_torchserve"].load() is TorchServeInstrumentor
    assert get_dependency_conflicts(TorchServeInstrumentor().instrumentation_dependencies()) is None


def test_example_handler(tel: Capture, model_dir: Path) -> None:
    import importlib

    try:
        example = importlib.import_module("examples.torchserve_handler")  # instruments on import
        handler = example.TinyHandler()
        context = _context(model_dir)
        handler.initialize(context)
        out = handler.handle([{"body": b"[1, 2, 3, 4]"}, {"data": [0, 0, 0, 1]}], context)
    finally:
        TorchServeInstrumentor().uninstrument()
        TorchInstrumentor().uninstrument()
    assert [set(o) for o in out] == [{"class", "confidence"}] * 2
    spans = {s.name: s for s in tel.spans()}
    assert parent_of(spans["torch.forward"]) == spans["inference"].context.span_id
    assert tel.stage_counts() == {("rows", "2.0", s): 1 for s in ("preprocess", "inference", "postprocess")}
