"""Under ratio sampling, metrics stay complete and every exemplar points to a trace that was kept.

A latency exemplar is only useful if the trace it names exists in the trace store: with
``parentbased_traceidratio`` at a few percent, most predictions make no span at all, and the exemplars
must come from the few that do. Across services, the parent's decision wins in both directions.
"""

from __future__ import annotations

from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from modeltel import taxonomy as tx
from modeltel.testing import capture

N = 2000


def _exemplar_ids(c, name: str) -> list[tuple[int, int]]:
    return [(e.trace_id, e.span_id) for p in c.points(name) for e in p.exemplars]


def test_ratio_sampling_keeps_every_measurement_and_exemplars_point_to_kept_traces() -> None:
    with capture(model_name="iris", model_version="1", sampler="parentbased_traceidratio", sampler_arg=0.05) as c:
        tel = c.pipeline.telemetry
        for _ in range(N):
            with tel.prediction(), tel.stage("inference"):
                pass
        kept = {(s.context.trace_id, s.context.span_id) for s in c.spans()}
        roots = [s for s in c.spans() if s.name == "predict"]
        assert 0.01 * N < len(roots) < 0.15 * N  # about 5 % of the predictions were traced
        assert sum(p.count for p in c.points(tx.PREDICTION_LATENCY.otel_name)) == N  # every one measured
        assert c.point(tx.STAGE_LATENCY.otel_name, stage="inference").count == N
        for name in (tx.PREDICTION_LATENCY.otel_name, tx.STAGE_LATENCY.otel_name):
            exemplars = _exemplar_ids(c, name)
            assert exemplars, f"{name}: sampled predictions must leave exemplars"
            assert set(exemplars) <= kept, f"{name}: an exemplar names a trace that was not kept"


def _under_remote_parent(c, *, sampled: bool) -> None:
    parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1 if sampled else 0))
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        tel = c.pipeline.telemetry
        for _ in range(50):
            with tel.prediction(), tel.stage("inference"):
                pass
    finally:
        context.detach(token)


def test_the_calling_service_decides_and_metrics_stay_complete_either_way() -> None:
    with capture(model_name="iris", model_version="1", sampler="parentbased_traceidratio", sampler_arg=0.0) as c:
        _under_remote_parent(c, sampled=True)  # upstream sampled: kept although our own ratio is 0
        assert len([s for s in c.spans() if s.name == "predict"]) == 50
        assert all(s.parent is not None and s.parent.span_id == 0xDEF for s in c.spans() if s.name == "predict")
    with capture(model_name="iris", model_version="1", sampler="parentbased_traceidratio", sampler_arg=1.0) as c:
        _under_remote_parent(c, sampled=False)  # upstream dropped: dropped although our own ratio is 1
        assert c.spans() == []
        assert c.point(tx.STAGE_LATENCY.otel_name, stage="inference").count == 50
        assert _exemplar_ids(c, tx.STAGE_LATENCY.otel_name) == []
