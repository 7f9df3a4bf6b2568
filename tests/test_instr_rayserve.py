"""Ray Serve, in Serve's local testing mode (the replica's own UserCallableWrapper, in process, no cluster)."""

from __future__ import annotations

import asyncio
import pickle
import time
import urllib.error
import urllib.request

import pytest
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from modeltel import taxonomy as tx
from modeltel.testing import Capture
from tests.conftest import parent_of
from tests.instr.servers import free_port

serve = pytest.importorskip("ray.serve")
from ray.serve import batching, handle  # noqa: E402
from ray.serve._private.common import RequestMetadata  # noqa: E402
from ray.serve._private.replica import UserCallableWrapper  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse, StreamingResponse  # noqa: E402

from modeltel.instrumentors.rayserve import CARRIER_ATTR, RayServeInstrumentor  # noqa: E402


@serve.deployment
class Doubler:
    def __call__(self, x: int) -> int:
        if x < 0:
            raise KeyError("negative")
        return 2 * x

    async def ping(self) -> str:
        await asyncio.sleep(0.001)
        return "pong"


@serve.deployment(name="batcher")
class Batcher:
    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.2)
    async def __call__(self, xs: list[int]) -> list[int]:
        return [x + 1 for x in xs]


@serve.deployment(name="tokens")
class Tokens:
    def count(self, n: int):
        yield from (f"t{i}" for i in range(n))

    async def acount(self, n: int):
        for i in range(n):
            await asyncio.sleep(0.001)
            yield f"a{i}"


@serve.deployment(name="web")
class Web:
    """A plain HTTP deployment (no ASGI app): ``__call__`` takes Starlette's Request."""

    async def __call__(self, request: Request):
        n = (await request.json())["n"]
        if n < 0:
            raise KeyError("negative")
        if n == 0:
            return PlainTextResponse("nothing", status_code=404)
        if request.url.path == "/stream":
            return StreamingResponse(f"t{i} " for i in range(n))
        if request.url.path == "/stalled":
            return StreamingResponse(_first_then_nothing())
        return {"double": 2 * n}


async def _first_then_nothing():
    yield "t0 "
    await asyncio.Event().wait()


def _replica(handle):
    """The local replica's UserCallableWrapper, switched to a real replica's futures (asyncio ones): local
    testing mode sends streams and HTTP down other paths, so tests call the replica's entry points on it
    (the handle is not used again)."""
    if not handle.is_initialized:
        handle._init()
    wrapper = handle._router._user_callable_wrapper
    wrapper._local_testing_mode = False
    return wrapper


def _replica_stream(handle, method: str, n: int, carrier: dict[str, str] | None = None):
    """The replica's own ``call_user_generator`` (what a real replica iterates for ``stream=True``)."""
    meta = RequestMetadata(request_id="r", internal_request_id="i", call_method=method, is_streaming=True)
    if carrier:
        setattr(meta, CARRIER_ATTR, carrier)
    return _replica(handle).call_user_generator(meta, (n,), {})


async def _replica_http(
    handle, path: str, body: bytes = b"", headers: list | None = None, *, until_body: bool = False
) -> list[dict]:
    """A POST to ``path`` through the replica's own ``call_http_entrypoint`` (what the proxy calls): the ASGI
    messages it sends back. ``receive`` gives the body, then nothing until the response ends (a ``receive``
    that returned the body forever would hang Starlette)."""
    meta = RequestMetadata(request_id="r", internal_request_id="i", is_streaming=True)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST"}
    scope |= {"scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b""}
    scope |= {"root_path": "", "headers": headers or [], "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 1)}
    requests = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()

    entry = _replica(handle).call_http_entrypoint(meta, str, scope, receive)
    if until_body:  # leave after the first body chunk, as a client that goes away (Ray closes the stream)
        try:
            async for batch in entry:
                if any(m.get("body") for m in batch):
                    return batch
        finally:
            await entry.aclose()
    return [m async for batch in entry for m in batch]


def _body(sent: list[dict]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent)


def _status(sent: list[dict]) -> int:
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def _dicts():
    return {
        "call": UserCallableWrapper.__dict__["call_user_method"],
        "stream": UserCallableWrapper.__dict__["call_user_generator"],
        "http": UserCallableWrapper.__dict__["_call_http_entrypoint"],
        "batch": {n: batching._BatchQueue.__dict__.get(n) for n in ("_process_batch_inner", "_process_batch")},
        "meta": handle._DeploymentHandleBase.__dict__["_init_router_and_get_metadata"],
    }


@pytest.fixture
def instrumented():
    RayServeInstrumentor().instrument()
    yield
    RayServeInstrumentor().uninstrument()


def _run(app):
    return serve.run(app, _local_testing_mode=True)


def test_off(tel: Capture) -> None:
    h = _run(Doubler.bind())
    assert h.remote(2).result() == 4
    assert tel.spans() == []


def test_call_is_a_prediction(tel: Capture, instrumented) -> None:
    h = _run(Doubler.bind())
    assert h.remote(3).result() == 6
    assert h.ping.remote().result() == "pong"
    counts = tel.stage_counts()
    assert counts == {("Doubler", "7", "inference"): 2}
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 2
    roots = tel.spans("predict")
    assert {s.attributes[tx.SPAN_ATTR_FRAMEWORK_STAGE] for s in roots} == {"__call__", "ping"}
    for s in tel.spans("inference"):
        assert parent_of(s) in {r.context.span_id for r in roots}


def test_error_counted_once(tel: Capture, instrumented) -> None:
    h = _run(Doubler.bind())
    with pytest.raises(Exception) as info:
        h.remote(-1).result()
    assert "negative" in str(info.value)
    assert tel.count(tx.ERRORS.otel_name, error_type="KeyError") == 1
    assert tel.count(tx.PREDICTIONS.otel_name, status="error") == 1


def test_trace_context_from_the_caller(tel: Capture, instrumented) -> None:
    tracer = tel.pipeline.tracer_provider.get_tracer("test")
    h = _run(Doubler.bind())
    with tracer.start_as_current_span("client") as client:
        assert h.remote(1).result() == 2
    root = tel.spans("predict")[0]
    assert root.context.trace_id == client.get_span_context().trace_id
    assert parent_of(root) == client.get_span_context().span_id


def test_carrier_rides_the_pickled_metadata(instrumented) -> None:
    from modeltel.instrumentors.rayserve import _inject_into

    meta = RequestMetadata(request_id="r", internal_request_id="i")
    provider = trace.get_tracer_provider()
    span = trace.NonRecordingSpan(trace.SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=trace.TraceFlags(1)))
    with trace.use_span(span):
        _inject_into(meta)
    carrier = pickle.loads(pickle.dumps(meta)).__dict__[CARRIER_ATTR]
    assert carrier["traceparent"] == f"00-{0x1234:032x}-{0x5678:016x}-01"
    assert provider is trace.get_tracer_provider()


def test_serve_batch_records_batch_size(tel: Capture, instrumented, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ray's local testing mode sets no replica context, which @serve.batch reads for a warning: skip the warning.
    # (Without a replica context the batch stage takes its deployment from the request that started the loop.)
    monkeypatch.setattr(batching._BatchQueue, "_warn_if_max_batch_size_exceeds_max_ongoing_requests", lambda self: None)
    h = _run(Batcher.bind())
    responses = [h.remote(i) for i in range(4)]
    assert [r.result() for r in responses] == [1, 2, 3, 4]
    batch = [p for p in tel.points(tx.BATCH_SIZE.otel_name) if p.count]
    assert sum(p.sum for p in batch) == 4
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 4
    stages = tel.stage_counts()
    assert stages.get(("batcher", "7", "batch"), 0) >= 1
    assert {model for model, _, _ in stages} == {"batcher"}
    batch_spans = tel.spans("batch")
    assert batch_spans and all(s.parent is None for s in batch_spans)  # a trace of its own
    assert sum(s.attributes[tx.SPAN_ATTR_BATCH_SIZE] for s in batch_spans) == 4
    assert stages[("batcher", "7", "inference")] == 4


async def test_generator_methods_stream_as_generations(tel: Capture, instrumented) -> None:
    h = _run(Tokens.bind())
    parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    assert [t async for t in _replica_stream(h, "count", 3, {"traceparent": parent})] == ["t0", "t1", "t2"]
    assert [t async for t in _replica_stream(h, "acount", 4)] == ["a0", "a1", "a2", "a3"]
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 2
    assert tel.point(tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name).count == 2
    usage = tel.point(tx.GEN_AI_CLIENT_TOKEN_USAGE.otel_name, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "output"})
    assert usage.sum == 7 and usage.attributes[tx.ATTR_MODEL_NAME] == "tokens"  # one token per item
    assert tel.stage_counts() == {("tokens", "7", "inference"): 2}  # the stage spans each stream
    generations = tel.spans("text_completion tokens")
    assert sorted(g.attributes[tx.SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] for g in generations) == [3, 4]
    assert all(g.attributes[tx.SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN] > 0 for g in generations)
    (carried,) = [g for g in generations if g.context.trace_id == int("ab" * 16, 16)]
    assert parent_of(carried) == int("cd" * 8, 16)  # the caller's context
    assert {parent_of(s) for s in tel.stage_spans()} == {g.context.span_id for g in generations}


async def test_stream_left_early_is_cancelled(tel: Capture, instrumented) -> None:
    h = _run(Tokens.bind())
    tokens = _replica_stream(h, "acount", 50)
    assert await tokens.__anext__() == "a0"
    await tokens.aclose()  # what the replica does when the caller cancels or goes away
    assert tel.count(tx.PREDICTIONS.otel_name, status="cancelled") == 1
    assert tel.count(tx.PREDICTIONS.otel_name) == 1
    assert tel.count(tx.ERRORS.otel_name) == 0, [dict(p.attributes) for p in tel.points(tx.ERRORS.otel_name)]
    (generation,) = tel.spans("text_completion tokens")
    assert tx.FINISH_REASON_CANCELLED in generation.attributes[tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS]


async def test_fastapi_ingress_stream_is_a_generation(tel: Capture, instrumented) -> None:
    """A ``@serve.ingress`` FastAPI app's StreamingResponse is a generation through the FastAPI instrumentor in
    the replica, counted once: Ray Serve's HTTP wrapper leaves an ASGI app to it."""
    import fastapi
    from fastapi.responses import StreamingResponse

    from modeltel.instrumentors.fastapi import ModeltelFastAPIInstrumentor

    ModeltelFastAPIInstrumentor().instrument(tracer_provider=tel.pipeline.tracer_provider)
    try:
        app = fastapi.FastAPI()

        @app.post("/generate")
        def generate() -> StreamingResponse:
            return StreamingResponse(f"t{i} " for i in range(3))

        @serve.deployment(name="ingress")
        @serve.ingress(app)
        class Ingress:
            pass

        sent = await _replica_http(_run(Ingress.bind()), "/generate")
    finally:
        ModeltelFastAPIInstrumentor().uninstrument()
    assert _body(sent) == b"t0 t1 t2 "
    assert tel.point(tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name).count == 1
    usage = tel.point(tx.GEN_AI_CLIENT_TOKEN_USAGE.otel_name, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "output"})
    assert usage.sum == 3  # one token per body chunk
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1
    assert tel.count(tx.PREDICTIONS.otel_name) == 1
    assert tel.spans("predict") == [] and tel.stage_counts() == {}  # not Ray Serve's prediction as well


async def test_http_request_is_a_prediction(tel: Capture, instrumented) -> None:
    """A plain HTTP deployment's request (through ``call_http_entrypoint``, as the proxy sends it) is one
    prediction with the inference stage, in the trace of the request's ``traceparent`` header."""
    h = _run(Web.bind())
    parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    sent = await _replica_http(h, "/", b'{"n": 4}', [(b"traceparent", parent.encode())])
    assert (_status(sent), _body(sent)) == (200, b'{"double":8}')
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1
    assert tel.count(tx.PREDICTIONS.otel_name) == 1
    assert tel.stage_counts() == {("web", "7", "inference"): 1}
    (root,) = tel.spans("predict")
    assert root.attributes[tx.ATTR_MODEL_NAME] == "web"
    assert root.attributes[tx.SPAN_ATTR_FRAMEWORK_STAGE] == "__call__"
    assert root.context.trace_id == int("ab" * 16, 16)
    assert parent_of(root) == int("cd" * 8, 16)  # the caller's span, from the header
    assert [parent_of(s) for s in tel.stage_spans()] == [root.context.span_id]
    assert tel.points(tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name) == []  # a whole body: no generation


async def test_http_error_status_and_exception_are_errors(tel: Capture, instrumented) -> None:
    h = _run(Web.bind())
    assert _status(await _replica_http(h, "/", b'{"n": 0}')) == 404
    with pytest.raises(KeyError):
        await _replica_http(h, "/", b'{"n": -1}')
    assert tel.count(tx.PREDICTIONS.otel_name, status="error") == 2
    assert tel.count(tx.PREDICTIONS.otel_name) == 2
    assert tel.count(tx.ERRORS.otel_name, error_type="KeyError") == 1


async def test_http_streaming_response_is_a_generation(tel: Capture, instrumented) -> None:
    """A StreamingResponse returned by a plain HTTP deployment is one generation: time to first token at
    the first body chunk, each chunk a token; the request is counted once, as the generation."""
    h = _run(Web.bind())
    parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    sent = await _replica_http(h, "/stream", b'{"n": 3}', [(b"traceparent", parent.encode())])
    assert _body(sent) == b"t0 t1 t2 "
    assert tel.count(tx.PREDICTIONS.otel_name, status="success") == 1
    assert tel.count(tx.PREDICTIONS.otel_name) == 1
    assert tel.point(tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name).count == 1
    usage = tel.point(tx.GEN_AI_CLIENT_TOKEN_USAGE.otel_name, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "output"})
    assert usage.sum == 3 and usage.attributes[tx.ATTR_MODEL_NAME] == "web"
    (generation,) = tel.spans("text_completion web")
    assert generation.attributes[tx.SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert generation.context.trace_id == int("ab" * 16, 16)
    (root,) = tel.spans("predict")  # taken over by the generation: no longer calls itself a prediction
    assert root.attributes[tx.SPAN_ATTR_KIND] == tx.SPAN_KIND_REQUEST


async def test_http_stream_left_early_is_cancelled(tel: Capture, instrumented) -> None:
    """A client that leaves a streamed response (Ray cancels the user code) makes the generation
    ``cancelled``, not an error."""
    h = _run(Web.bind())
    assert _body(await _replica_http(h, "/stalled", b'{"n": 1}', until_body=True)) == b"t0 "
    deadline = time.monotonic() + 30  # the cancellation reaches the user-code loop's thread asynchronously
    while tel.count(tx.PREDICTIONS.otel_name) == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert tel.count(tx.PREDICTIONS.otel_name, status="cancelled") == 1
    assert tel.count(tx.PREDICTIONS.otel_name) == 1
    assert tel.count(tx.ERRORS.otel_name) == 0, [dict(p.attributes) for p in tel.points(tx.ERRORS.otel_name)]
    (generation,) = tel.spans("text_completion web")
    assert tx.FINISH_REASON_CANCELLED in generation.attributes[tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS]


def test_on_then_off_restores_exactly() -> None:
    before = _dicts()
    RayServeInstrumentor().instrument()
    try:
        assert _dicts() != before
    finally:
        RayServeInstrumentor().uninstrument()
    assert _dicts() == before
    RayServeInstrumentor().instrument()
    RayServeInstrumentor().uninstrument()
    assert _dicts() == before


def test_context_crosses_into_a_real_replica(tel: Capture, instrumented) -> None:
    """serve.run on a local Ray: the replica (another process) instruments itself and reports its spans."""
    import ray

    @serve.deployment(name="remote-doubler", ray_actor_options={"num_cpus": 0})
    class Reporting:
        def __init__(self) -> None:
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            import modeltel
            from modeltel.instrumentors.rayserve import RayServeInstrumentor

            self.exporter = InMemorySpanExporter()
            modeltel.init(
                set_global=False,
                span_processors=[SimpleSpanProcessor(self.exporter)],
                traces_exporter="none",
                metrics_exporter="none",
                host_metrics=False,
                gpu_metrics=False,
                model_version="7",
            )
            RayServeInstrumentor().instrument()

        async def __call__(self, x):
            if isinstance(x, int):  # a handle call
                return 2 * x
            n = int(x.query_params["n"])  # an HTTP request, through Ray's proxy
            return StreamingResponse(f"t{i} " for i in range(n)) if n else {"n": 0}

        def count(self, n: int):
            yield from range(n)

        def spans(self) -> list[tuple[str, int, int | None, dict]]:
            return [
                (s.name, s.context.trace_id, s.parent.span_id if s.parent else None, dict(s.attributes))
                for s in self.exporter.get_finished_spans()
            ]

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        h = serve.run(Reporting.bind(), name="modeltel-test", route_prefix="/reporting")
        tracer = tel.pipeline.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("client") as client:
            assert h.remote(4).result(timeout_s=60) == 8
        with tracer.start_as_current_span("streaming client") as streaming:
            assert list(h.options(stream=True).count.remote(3)) == [0, 1, 2]
        with tracer.start_as_current_span("http client") as http_client:
            assert _get(f"http://127.0.0.1:{port}/reporting?n=0") == b'{"n":0}'
        with tracer.start_as_current_span("http streaming client") as http_streaming:
            assert _get(f"http://127.0.0.1:{port}/reporting?n=3") == b"t0 t1 t2 "
        seen = h.spans.remote().result(timeout_s=60)
    finally:
        serve.shutdown()
        ray.shutdown()
    ctx = client.get_span_context()
    predict = [s for s in seen if s[0] == "predict" and s[1] == ctx.trace_id]
    assert len(predict) == 1, seen
    assert predict[0][2] == ctx.span_id
    assert predict[0][3]["model.name"] == "remote-doubler"
    # The generator method called with stream=True: one generation in the streaming client's trace.
    stream_ctx = streaming.get_span_context()
    in_stream = sorted(s[0] for s in seen if s[1] == stream_ctx.trace_id)
    assert in_stream == ["inference", "text_completion remote-doubler"], seen
    (generation,) = [s for s in seen if s[0] == "text_completion remote-doubler" and s[1] == stream_ctx.trace_id]
    assert generation[2] == stream_ctx.span_id
    assert generation[3][tx.SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert generation[3][tx.SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN] > 0
    # HTTP through Ray's proxy: a prediction in the client's trace (its traceparent header), a streamed
    # response a generation under it.
    http_ctx = http_client.get_span_context()
    assert sorted((s[0], s[2] == http_ctx.span_id) for s in seen if s[1] == http_ctx.trace_id) == [
        ("inference", False),
        ("predict", True),
    ], seen
    http_stream_ctx = http_streaming.get_span_context()
    in_http_stream = {s[0]: s for s in seen if s[1] == http_stream_ctx.trace_id}
    assert sorted(in_http_stream) == ["inference", "predict", "text_completion remote-doubler"], seen
    assert in_http_stream["predict"][2] == http_stream_ctx.span_id
    http_generation = in_http_stream["text_completion remote-doubler"][3]
    assert http_generation[tx.SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert http_generation[tx.SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN] > 0


def _get(url: str) -> bytes:
    """GET ``url`` with the current span's ``traceparent``, retrying until Serve's proxy routes it (60 s)."""
    headers: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(headers)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
                return response.read()
        except (urllib.error.URLError, ConnectionError):  # the proxy is still starting, or has no route yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
