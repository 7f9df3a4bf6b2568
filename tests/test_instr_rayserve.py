"""Ray Serve, in Serve's local testing mode (the replica's own UserCallableWrapper, in process, no cluster)."""

from __future__ import annotations

import asyncio
import pickle

import pytest
from opentelemetry import trace

from modeltel import taxonomy as tx
from modeltel.testing import Capture
from tests.conftest import parent_of

serve = pytest.importorskip("ray.serve")
from ray.serve import batching, handle  # noqa: E402
from ray.serve._private.common import RequestMetadata  # noqa: E402
from ray.serve._private.replica import UserCallableWrapper  # noqa: E402

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


def _dicts():
    return {
        "call": UserCallableWrapper.__dict__["call_user_method"],
        "stream": UserCallableWrapper.__dict__["call_user_generator"],
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

        def __call__(self, x: int) -> int:
            return 2 * x

        def count(self, n: int):
            yield from range(n)

        def spans(self) -> list[tuple[str, int, int | None, str | None]]:
            return [
                (s.name, s.context.trace_id, s.parent.span_id if s.parent else None, s.attributes.get("model.name"))
                for s in self.exporter.get_finished_spans()
            ]

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        h = serve.run(Reporting.bind(), name="modeltel-test", route_prefix=None)
        tracer = tel.pipeline.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("client") as client:
            assert h.remote(4).result(timeout_s=30) == 8
        assert list(h.options(stream=True).count.remote(3)) == [0, 1, 2]
        seen = h.spans.remote().result(timeout_s=30)
    finally:
        serve.shutdown()
        ray.shutdown()
    ctx = client.get_span_context()
    predict = [s for s in seen if s[0] == "predict" and s[1] == ctx.trace_id]
    assert len(predict) == 1, seen
    assert predict[0][2] == ctx.span_id
    assert predict[0][3] == "remote-doubler"
    streamed = [s for s in seen if s[0] == "predict" and s[1] != ctx.trace_id]
    assert len(streamed) == 1 and streamed[0][3] == "remote-doubler"
