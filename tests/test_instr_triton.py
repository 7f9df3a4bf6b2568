"""Triton client instrumentation against small local KServe-v2 servers (HTTP JSON and gRPC)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

import modeltel
from modeltel import taxonomy as tx
from modeltel.testing import Capture
from tests.conftest import parent_of

pytest.importorskip("tritonclient")
httpclient = pytest.importorskip("tritonclient.http")
import tritonclient.http.aio as httpaio  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from modeltel.instrumentors.triton import TritonInstrumentor  # noqa: E402

# tritonclient.grpc and kserve register the same protobuf symbols ("inference.ServerLiveRequest"...), so
# they cannot be imported into one process: the gRPC cases run in a child pytest (test_grpc_in_child).
GRPC_CHILD = os.environ.get("MODELTEL_TEST_TRITON_GRPC") == "1"
grpc_only = pytest.mark.skipif(not GRPC_CHILD, reason="run by test_grpc_in_child (tritonclient.grpc vs kserve)")
if GRPC_CHILD:
    import grpc
    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as grpcaio
    from tritonclient.grpc import service_pb2, service_pb2_grpc

DATA = np.arange(6, dtype=np.float32).reshape(2, 3)
CLIENTS: tuple[type, ...] = (httpclient.InferenceServerClient, httpaio.InferenceServerClient)
if GRPC_CHILD:
    CLIENTS = (*CLIENTS, grpcclient.InferenceServerClient, grpcaio.InferenceServerClient)


# --------------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]]

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append({k.lower(): v for k, v in self.headers.items()})  # type: ignore[attr-defined]
        parts = self.path.strip("/").split("/")  # v2/models/<name>[/versions/<v>]/infer
        name = parts[2]
        version = parts[4] if len(parts) > 5 else "1"
        if name == "broken":
            out = json.dumps({"error": "model 'broken' failed"}).encode()
            self.send_response(400)
        else:
            inp = body["inputs"][0]
            resp = {
                "model_name": name,
                "model_version": version,
                "outputs": [
                    {"name": "OUTPUT0", "datatype": inp["datatype"], "shape": inp["shape"], "data": inp["data"]}
                ],
            }
            out = json.dumps(resp).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client closed its keep-alive connection
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def http_server() -> Iterator[Any]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def grpc_server() -> Iterator[tuple[str, Any]]:
    class Infer(service_pb2_grpc.GRPCInferenceServiceServicer):
        def __init__(self) -> None:
            self.seen: list[dict[str, str]] = []

        def ModelInfer(self, request: Any, context: Any) -> Any:
            self.seen.append(dict(context.invocation_metadata()))
            if request.model_name == "broken":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "model 'broken' failed")
            inp = request.inputs[0]
            out = service_pb2.ModelInferResponse.InferOutputTensor(
                name="OUTPUT0", datatype=inp.datatype, shape=inp.shape
            )
            return service_pb2.ModelInferResponse(
                model_name=request.model_name,
                model_version=request.model_version or "1",
                outputs=[out],
                raw_output_contents=list(request.raw_input_contents),
            )

    servicer = Infer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None)


@pytest.fixture
def instrumented() -> Iterator[None]:
    TritonInstrumentor().instrument()
    yield
    TritonInstrumentor().uninstrument()


def _http_inputs(mod: Any = httpclient) -> tuple[list[Any], list[Any]]:
    inp = mod.InferInput("INPUT0", list(DATA.shape), "FP32")
    inp.set_data_from_numpy(DATA, binary_data=False)
    return [inp], [mod.InferRequestedOutput("OUTPUT0", binary_data=False)]


def _grpc_inputs(mod: Any = None) -> list[Any]:
    inp = (mod or grpcclient).InferInput("INPUT0", list(DATA.shape), "FP32")
    inp.set_data_from_numpy(DATA)
    return [inp]


def _http_url(server: Any) -> str:
    return f"127.0.0.1:{server.server_address[1]}"


# --------------------------------------------------------------------------------------------------
# Assertions
# --------------------------------------------------------------------------------------------------
def _client_span(tel: Capture, model: str = "iris") -> Any:
    spans = tel.spans(f"triton.infer {model}")
    assert len(spans) == 1, [s.name for s in tel.spans()]
    return spans[0]


def _assert_propagated(span: Any, headers: dict[str, str]) -> None:
    ctx = span.context
    _, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (trace_id, span_id) == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    assert int(flags, 16) & 1  # sampled


def _assert_inference_call(tel: Capture, headers: dict[str, str], system: str, version: str = "2") -> None:
    client = _client_span(tel)
    assert client.kind is SpanKind.CLIENT
    assert client.attributes[tx.ATTR_MODEL_NAME] == "iris"
    assert client.attributes[tx.ATTR_MODEL_VERSION] == version
    assert client.attributes[tx.SPAN_ATTR_BATCH_SIZE] == 2
    assert client.attributes["rpc.system"] == system
    stage = tel.spans("inference")[0]
    assert parent_of(client) == stage.context.span_id
    assert stage.attributes[tx.SPAN_ATTR_FRAMEWORK] == "triton"
    _assert_propagated(client, headers)
    assert tel.stage_counts() == {("iris", version, "inference"): 1}
    assert tel.count(tx.BATCH_SIZE.otel_name, model_name="iris") == 1


# --------------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------------
def test_http_off_adds_nothing(tel: Capture, http_server: Any) -> None:
    inputs, outputs = _http_inputs()
    result = httpclient.InferenceServerClient(_http_url(http_server)).infer("iris", inputs, outputs=outputs)
    assert (result.as_numpy("OUTPUT0") == DATA).all()
    assert tel.spans() == []
    assert "traceparent" not in http_server.seen[-1]


def test_http_infer(tel: Capture, http_server: Any, instrumented: None) -> None:
    inputs, outputs = _http_inputs()
    user_headers = {"x-user": "1"}
    client = httpclient.InferenceServerClient(_http_url(http_server))
    result = client.infer("iris", inputs, model_version="2", outputs=outputs, headers=user_headers)
    assert (result.as_numpy("OUTPUT0") == DATA).all()
    seen = http_server.seen[-1]
    assert seen["x-user"] == "1"
    assert user_headers == {"x-user": "1"}  # the caller's dict is not changed
    _assert_inference_call(tel, seen, "http")


def test_http_positional_arguments(tel: Capture, http_server: Any, instrumented: None) -> None:
    inputs, outputs = _http_inputs()
    client = httpclient.InferenceServerClient(_http_url(http_server))
    # model_name, inputs, model_version, outputs, request_id, sequence_id, start, end, priority, timeout, headers
    client.infer("iris", inputs, "2", outputs, "", 0, False, False, 0, None, {"x-user": "2"})
    assert http_server.seen[-1]["x-user"] == "2"
    _assert_inference_call(tel, http_server.seen[-1], "http")


def test_http_async_infer(tel: Capture, http_server: Any, instrumented: None) -> None:
    inputs, outputs = _http_inputs()
    client = httpclient.InferenceServerClient(_http_url(http_server))
    assert modeltel.current_stage() is None
    handle = client.async_infer("iris", inputs, model_version="2", outputs=outputs)
    assert modeltel.current_stage() is None  # the caller's context does not see the pending stage
    assert (handle.get_result().as_numpy("OUTPUT0") == DATA).all()
    _assert_inference_call(tel, http_server.seen[-1], "http")


def test_http_async_infer_closed_without_get_result(tel: Capture, http_server: Any, instrumented: None) -> None:
    import gevent

    inputs, outputs = _http_inputs()
    handle = httpclient.InferenceServerClient(_http_url(http_server)).async_infer("iris", inputs, outputs=outputs)
    handle._greenlet.join(10)  # the caller never reads the result: the greenlet's link closes the span
    gevent.sleep(0)
    assert len(tel.spans("triton.infer iris")) == 1
    assert tel.stage_counts() == {("iris", "7", "inference"): 1}


async def test_http_aio_infer(tel: Capture, http_server: Any, instrumented: None) -> None:
    inputs, outputs = _http_inputs(httpaio)
    client = httpaio.InferenceServerClient(_http_url(http_server))
    try:
        result = await client.infer("iris", inputs, model_version="2", outputs=outputs)
    finally:
        await client.close()
    assert (result.as_numpy("OUTPUT0") == DATA).all()
    _assert_inference_call(tel, http_server.seen[-1], "http")


def test_http_error_unchanged_and_counted(tel: Capture, http_server: Any, instrumented: None) -> None:
    inputs, outputs = _http_inputs()
    client = httpclient.InferenceServerClient(_http_url(http_server))
    with pytest.raises(InferenceServerException) as info:
        client.infer("broken", inputs, outputs=outputs)
    assert "model 'broken' failed" in info.value.message()
    span = _client_span(tel, "broken")
    assert span.status.status_code is StatusCode.ERROR
    assert tx.ATTR_MODEL_VERSION not in span.attributes  # "" = the server's latest version
    # a stage outside any prediction counts no error (docs/metrics.md); inside one it is counted
    assert tel.count(tx.ERRORS.otel_name) == 0
    with pytest.raises(InferenceServerException), modeltel.prediction("client-app"):
        client.infer("broken", inputs, outputs=outputs)
    assert tel.count(tx.ERRORS.otel_name, model_name="client-app", error_type="InferenceServerException") == 1


def test_http_async_infer_error(tel: Capture, http_server: Any, instrumented: None) -> None:
    inputs, outputs = _http_inputs()
    handle = httpclient.InferenceServerClient(_http_url(http_server)).async_infer("broken", inputs, outputs=outputs)
    with pytest.raises(InferenceServerException):
        handle.get_result()
    assert _client_span(tel, "broken").status.status_code is StatusCode.ERROR
    assert tel.count(tx.ERRORS.otel_name) == 0  # outside any prediction (docs/metrics.md)


def test_inside_active_stage_only_client_span(tel: Capture, http_server: Any, instrumented: None) -> None:
    inputs, outputs = _http_inputs()
    client = httpclient.InferenceServerClient(_http_url(http_server))
    with modeltel.prediction("ensemble"), modeltel.stage("inference") as st:
        client.infer("iris", inputs, outputs=outputs)
    client_span = _client_span(tel)
    assert parent_of(client_span) == st._span.get_span_context().span_id
    assert tel.stage_counts() == {("ensemble", "7", "inference"): 1}  # no second sample
    _assert_propagated(client_span, http_server.seen[-1])


def test_a_client_subclass_calling_super_is_one_call(tel: Capture, http_server: Any, instrumented: None) -> None:
    class Client(httpclient.InferenceServerClient):  # defined after instrument(): wrapped too
        def infer(self, model_name: str, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            return super().infer(model_name, inputs, *args, **kwargs)

    inputs, outputs = _http_inputs()
    Client(_http_url(http_server)).infer("iris", inputs, model_version="2", outputs=outputs)
    assert getattr(Client.__dict__["infer"], "__modeltel_original__", None) is not None
    _assert_inference_call(tel, http_server.seen[-1], "http")  # one client span, one stage sample


def test_not_sampled_propagates_no_span(http_server: Any, instrumented: None, make_captured: Any) -> None:
    c = make_captured(sampler="always_off")
    inputs, outputs = _http_inputs()
    httpclient.InferenceServerClient(_http_url(http_server)).infer("iris", inputs, outputs=outputs)
    assert c.spans() == []
    flags = http_server.seen[-1].get("traceparent", "-00").rsplit("-", 1)[1]
    assert not int(flags, 16) & 1  # sampled flag off, if any context is sent


# --------------------------------------------------------------------------------------------------
# gRPC
# --------------------------------------------------------------------------------------------------
@grpc_only
def test_grpc_infer(tel: Capture, grpc_server: Any, instrumented: None) -> None:
    url, servicer = grpc_server
    client = grpcclient.InferenceServerClient(url)
    result = client.infer("iris", _grpc_inputs(), model_version="2", headers={"x-user": "1"})
    assert (result.as_numpy("OUTPUT0") == DATA).all()
    assert servicer.seen[-1]["x-user"] == "1"
    _assert_inference_call(tel, servicer.seen[-1], "grpc")


@grpc_only
def test_grpc_async_infer_callback(tel: Capture, grpc_server: Any, instrumented: None) -> None:
    url, servicer = grpc_server
    client = grpcclient.InferenceServerClient(url)
    got: list[Any] = []
    done = threading.Event()

    def callback(result: Any, error: Any) -> None:
        got.append((result, error))
        done.set()

    client.async_infer("iris", _grpc_inputs(), callback, model_version="2")
    assert modeltel.current_stage() is None
    assert done.wait(10)
    assert got[0][1] is None and (got[0][0].as_numpy("OUTPUT0") == DATA).all()
    _assert_inference_call(tel, servicer.seen[-1], "grpc")


@grpc_only
def test_grpc_async_infer_error(tel: Capture, grpc_server: Any, instrumented: None) -> None:
    url, _ = grpc_server
    errors: list[Any] = []
    done = threading.Event()

    def callback(result: Any, error: Any) -> None:
        errors.append(error)
        done.set()

    grpcclient.InferenceServerClient(url).async_infer("broken", _grpc_inputs(), callback=callback)
    assert done.wait(10)
    assert isinstance(errors[0], InferenceServerException)
    assert _client_span(tel, "broken").status.status_code is StatusCode.ERROR
    assert tel.count(tx.ERRORS.otel_name) == 0  # outside any prediction (docs/metrics.md)


@grpc_only
async def test_grpc_aio_infer(tel: Capture, grpc_server: Any, instrumented: None) -> None:
    url, servicer = grpc_server
    client = grpcaio.InferenceServerClient(url)
    try:
        result = await client.infer("iris", _grpc_inputs(grpcaio), model_version="2")
    finally:
        await client.close()
    assert (result.as_numpy("OUTPUT0") == DATA).all()
    _assert_inference_call(tel, servicer.seen[-1], "grpc")


@grpc_only
def test_grpc_error_unchanged_and_counted(tel: Capture, grpc_server: Any, instrumented: None) -> None:
    url, _ = grpc_server
    with pytest.raises(InferenceServerException) as info, modeltel.prediction():
        grpcclient.InferenceServerClient(url).infer("broken", _grpc_inputs())
    assert "model 'broken' failed" in info.value.message()
    assert _client_span(tel, "broken").status.status_code is StatusCode.ERROR
    assert tel.count(tx.ERRORS.otel_name, error_type="InferenceServerException") == 1


# --------------------------------------------------------------------------------------------------
# On / off
# --------------------------------------------------------------------------------------------------
def _methods() -> dict[tuple[type, str], Any]:
    from tritonclient.http._client import InferAsyncRequest

    methods = {(c, n): c.__dict__.get(n) for c in CLIENTS for n in ("infer", "async_infer")}
    return {**methods, (InferAsyncRequest, "get_result"): InferAsyncRequest.__dict__["get_result"]}


@pytest.mark.skipif(GRPC_CHILD, reason="run in the parent")
def test_grpc_in_child() -> None:
    from pathlib import Path

    env = {**os.environ, "MODELTEL_TEST_TRITON_GRPC": "1"}
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "grpc or restores"]
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "6 passed" in proc.stdout, proc.stdout[-2000:]


def test_on_then_off_restores_exactly(tel: Capture, http_server: Any) -> None:
    before = _methods()
    TritonInstrumentor().instrument()
    during = _methods()
    assert all(during[k] is not v for k, v in before.items() if v is not None)
    assert len([v for v in before.values() if v is not None]) == (7 if GRPC_CHILD else 4)  # aio: no async_infer
    assert all(during[(c, "infer")].__wrapped__ is before[(c, "infer")] for c in CLIENTS)
    TritonInstrumentor().uninstrument()
    assert _methods() == before
    inputs, outputs = _http_inputs()
    httpclient.InferenceServerClient(_http_url(http_server)).infer("iris", inputs, outputs=outputs)
    assert tel.spans() == []
    assert "traceparent" not in http_server.seen[-1]
    TritonInstrumentor().instrument()  # and on again
    try:
        httpclient.InferenceServerClient(_http_url(http_server)).infer("iris", inputs, outputs=outputs)
        assert len(tel.spans("triton.infer iris")) == 1
    finally:
        TritonInstrumentor().uninstrument()
    assert _methods() == before


def test_patched_on_import_not_before() -> None:
    code = (
        "import sys\n"
        "from modeltel.instrumentors.triton import TritonInstrumentor\n"
        "TritonInstrumentor().instrument()\n"
        "assert not any(m.startswith('tritonclient') for m in sys.modules), 'imported too early'\n"
        "import tritonclient.grpc as g\n"
        "assert g.InferenceServerClient.__dict__['infer'].__modeltel_original__\n"
        "assert 'tritonclient.http' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------------------------------
# Python backend
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def pb_utils(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A stand-in for ``triton_python_backend_utils``, which exists only inside a Triton server."""
    import types

    assert "triton_python_backend_utils" not in sys.modules
    mod = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name: str, array: Any) -> None:
            self.name, self.array = name, array

        def as_numpy(self) -> Any:
            return self.array

    class InferenceRequest:
        def __init__(self, tensors: list[Tensor]) -> None:
            self.tensors = tensors

    class InferenceResponse:
        def __init__(self, output_tensors: list[Tensor]) -> None:
            self.output_tensors = output_tensors

    mod.Tensor, mod.InferenceRequest, mod.InferenceResponse = Tensor, InferenceRequest, InferenceResponse
    mod.get_input_tensor_by_name = lambda request, name: next(t for t in request.tensors if t.name == name)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", mod)
    return mod


def _python_model(pb: Any) -> type:
    from modeltel.instrumentors.triton import instrument_python_model

    @instrument_python_model
    class TritonPythonModel:
        def initialize(self, args: dict[str, str]) -> None:
            self.scale = 2.0

        def execute(self, requests: list[Any]) -> list[Any]:
            responses = []
            for request in requests:
                x = pb.get_input_tensor_by_name(request, "INPUT0").as_numpy()
                if x.shape[1] != 3:
                    raise ValueError("width")
                with modeltel.stage("inference"):
                    responses.append(pb.InferenceResponse([pb.Tensor("OUTPUT0", x * self.scale)]))
            return responses

    return TritonPythonModel


def test_python_model_execute_is_a_prediction(tel: Capture, pb_utils: Any) -> None:
    cls = _python_model(pb_utils)
    model = cls()
    model.initialize({"model_name": "doubler", "model_version": "4", "model_config": "{}"})
    requests = [pb_utils.InferenceRequest([pb_utils.Tensor("INPUT0", DATA)]) for _ in range(3)]
    responses = model.execute(requests)
    assert (responses[0].output_tensors[0].as_numpy() == DATA * 2).all()
    root = tel.spans("predict")[0]
    assert root.attributes[tx.ATTR_MODEL_NAME] == "doubler"
    assert root.attributes[tx.SPAN_ATTR_BATCH_SIZE] == 3
    assert root.attributes[tx.SPAN_ATTR_FRAMEWORK_STAGE] == "execute"
    assert all(parent_of(s) == root.context.span_id for s in tel.spans("inference"))
    assert tel.stage_counts() == {("doubler", "4", "inference"): 3}
    assert tel.count(tx.PREDICTIONS.otel_name, model_name="doubler", status="success") == 1
    assert tel.count(tx.BATCH_SIZE.otel_name, model_name="doubler") == 1


def test_python_model_error_unchanged(tel: Capture, pb_utils: Any) -> None:
    model = _python_model(pb_utils)()
    model.initialize({"model_name": "doubler", "model_version": "4"})
    with pytest.raises(ValueError) as info:
        model.execute([pb_utils.InferenceRequest([pb_utils.Tensor("INPUT0", np.zeros((1, 2)))])])
    assert info.value.args == ("width",)
    assert tel.count(tx.ERRORS.otel_name, error_type="ValueError") == 1
    assert tel.count(tx.PREDICTIONS.otel_name, model_name="doubler", status="error") == 1


async def test_python_model_plain_async_class_without_initialize(tel: Capture) -> None:
    from modeltel.instrumentors.triton import instrument_python_model

    assert "triton_python_backend_utils" not in sys.modules

    class Base:
        async def execute(self, requests: list[Any]) -> list[Any]:
            return [r * 2 for r in requests]

    @instrument_python_model
    class Model(Base):
        pass

    assert instrument_python_model(Model) is Model  # twice: still one wrapper
    assert inspect.iscoroutinefunction(Model.execute)
    assert "execute" not in Base.__dict__ or Base.__dict__["execute"] is not Model.__dict__["execute"]
    assert await Model().execute([1, 2]) == [2, 4]
    root = tel.spans("predict")[0]
    assert root.attributes[tx.ATTR_MODEL_NAME] == "env-model"  # no initialize args: the environment's
    assert root.attributes[tx.SPAN_ATTR_BATCH_SIZE] == 2


# --------------------------------------------------------------------------------------------------
# Registration and zero-code
# --------------------------------------------------------------------------------------------------
def test_entry_point_registered_and_dependencies_met() -> None:
    from importlib.metadata import entry_points

    from opentelemetry.instrumentation.dependencies import get_dependency_conflicts

    eps = {ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor")}
    assert eps["modeltel_triton"].value == "modeltel.instrumentors.triton:TritonInstrumentor"
    assert eps["modeltel_triton"].load() is TritonInstrumentor
    assert get_dependency_conflicts(TritonInstrumentor().instrumentation_dependencies()) is None


CLIENT_SCRIPT = """
import sys
import numpy as np
import tritonclient.http as h

inp = h.InferInput("INPUT0", [4, 3], "FP32")
inp.set_data_from_numpy(np.ones((4, 3), dtype=np.float32), binary_data=False)
h.InferenceServerClient(sys.argv[1]).infer("iris", [inp], model_version="3")
"""


def test_zero_code_client_span_over_otlp(http_server: Any, tmp_path: Any) -> None:
    import os
    from pathlib import Path

    from modeltel.testing import OtlpSink, attributes

    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    with OtlpSink() as sink:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELTEL_"))}
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint,
            OTEL_SERVICE_NAME="triton-client",
            MODELTEL_HOST_METRICS="false",
            MODELTEL_GPU_METRICS="false",
        )
        bin_dir = Path(sys.executable).parent
        cmd = [str(bin_dir / "opentelemetry-instrument"), sys.executable, str(script), _http_url(http_server)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr

        def client_spans(s: OtlpSink) -> list[Any]:
            return [span for _, span in s.spans() if span.name == "triton.infer iris"]

        def stage_points(s: OtlpSink) -> list[Any]:
            return list(s.metric_points(tx.STAGE_LATENCY.otel_name))

        assert sink.wait_for(lambda s: client_spans(s) and stage_points(s))
        (span,) = client_spans(sink)
        assert span.kind == span.SPAN_KIND_CLIENT
        assert attributes(span.attributes)[tx.ATTR_MODEL_VERSION] == "3"
        assert attributes(span.attributes)[tx.SPAN_ATTR_BATCH_SIZE] == 4
        assert http_server.seen[-1]["traceparent"].split("-")[1:3] == [span.trace_id.hex(), span.span_id.hex()]
