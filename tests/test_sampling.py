"""Under ratio sampling, metrics stay complete and every exemplar points to a trace that was kept.

A latency exemplar is only useful if the trace it names exists in the trace store: with
``parentbased_traceidratio`` at a few percent, most predictions make no span at all, and the exemplars
must come from the few that do. Across services, the parent's decision wins in both directions.
"""

from __future__ import annotations

import logging
import time

from opentelemetry import context, trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from modeltel import config
from modeltel import taxonomy as tx
from modeltel.hotpath.held import KEPT_ATTRIBUTE
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


def _kept_spans_form_one_trace(spans, reason: str) -> None:
    (root,) = [s for s in spans if s.name == "predict"]
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    assert all(s.context.trace_flags.sampled for s in spans)
    assert all(s.attributes[KEPT_ATTRIBUTE] == reason for s in spans)
    children = [s for s in spans if s is not root]
    assert children and all(s.parent.span_id == root.context.span_id and s.parent.trace_flags.sampled for s in children)


def test_keep_slow_and_failed_keeps_only_errors_and_slow_predictions_under_a_dropping_sampler() -> None:
    with capture(
        model_name="iris",
        model_version="1",
        sampler="parentbased_traceidratio",
        sampler_arg=0.0,
        keep_slow_and_failed=True,
        keep_slow_threshold_s=0.02,
    ) as c:
        tel = c.pipeline.telemetry
        for _ in range(100):
            with tel.prediction(), tel.stage("inference"):
                pass
        assert c.spans() == []  # fast, successful predictions are dropped as before
        try:
            with tel.prediction(), tel.stage("inference"):
                raise ValueError("bad input")
        except ValueError:
            pass
        errors = c.spans()
        _kept_spans_form_one_trace(errors, "error")
        assert next(s for s in errors if s.name == "inference").status.status_code is StatusCode.ERROR
        with tel.prediction() as p, tel.stage("postprocess"):
            p.set_outcome(False)  # failed without an exception
        with tel.prediction(), tel.stage("inference"):
            time.sleep(0.03)
        later = c.spans()[len(errors) :]
        _kept_spans_form_one_trace([s for s in later if s.attributes[KEPT_ATTRIBUTE] == "error"], "error")
        _kept_spans_form_one_trace([s for s in later if s.attributes[KEPT_ATTRIBUTE] == "slow"], "slow")
        assert sum(p.count for p in c.points(tx.PREDICTION_LATENCY.otel_name)) == 103  # every one measured
        kept = {(s.context.trace_id, s.context.span_id) for s in c.spans()}
        exemplars = _exemplar_ids(c, tx.PREDICTION_LATENCY.otel_name) + _exemplar_ids(c, tx.STAGE_LATENCY.otel_name)
        assert exemplars and set(exemplars) <= kept  # no exemplar names a dropped prediction


def test_a_kept_prediction_under_an_unsampled_caller_joins_its_trace_and_propagates_unsampled() -> None:
    with capture(model_name="iris", model_version="1", keep_slow_and_failed=True) as c:
        parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))
        token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
        carrier: dict[str, str] = {}
        try:
            with c.pipeline.telemetry.prediction() as p, c.pipeline.telemetry.stage("inference"):
                TraceContextTextMapPropagator().inject(carrier)
                p.set_outcome(False)
        finally:
            context.detach(token)
        assert carrier["traceparent"].endswith("-00")  # downstream services keep their own decision
        (root,) = [s for s in c.spans() if s.name == "predict"]
        assert root.context.trace_id == 0xABC and root.parent.span_id == 0xDEF  # its parent is upstream, not kept
        assert root.attributes[KEPT_ATTRIBUTE] == "error"


def test_keep_slow_and_failed_reads_the_environment_and_defaults_to_the_latency_warning_threshold() -> None:
    settings = config.load({"MODELTEL_KEEP_SLOW_AND_FAILED": "true"})
    assert settings.keep_slow_and_failed
    assert settings.keep_slow_threshold_s == tx.SLO_LATENCY_THRESHOLD_SECONDS
    assert config.load({"MODELTEL_KEEP_SLOW_THRESHOLD": "0.5"}).keep_slow_threshold_s == 0.5
    assert not config.load({}).keep_slow_and_failed


def test_a_prediction_inside_a_frameworks_adopted_span_is_held_too() -> None:
    with capture(sampler="parentbased_traceidratio", sampler_arg=0.0, keep_slow_and_failed=True) as c:
        tel = c.pipeline.telemetry
        with tel.prediction(own_span=False), tel.prediction("iris") as p, tel.stage("inference"):
            p.set_outcome(False)
        assert sorted(s.name for s in c.spans()) == ["inference", "predict"]
        _kept_spans_form_one_trace(c.spans(), "error")


class _Starts(SpanProcessor):
    """What a processor sees in ``on_start``: the span's name, whether it is recording, its context's flags."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, bool]] = []

    def on_start(self, span, parent_context=None) -> None:
        self.seen.append((span.name, span.is_recording(), span.context.trace_flags.sampled))


def test_a_kept_prediction_is_started_in_the_processors_as_live_spans_and_leaves_the_held_ones_alone(caplog) -> None:
    with capture(model_name="iris", keep_slow_and_failed=True, sampler="parentbased_always_off") as c:
        starts = _Starts()
        c.pipeline.tracer_provider.add_span_processor(starts)
        with caplog.at_level(logging.WARNING, logger="modeltel"):
            with c.pipeline.telemetry.prediction() as p, c.pipeline.telemetry.stage("inference"):
                held = trace.get_current_span()
                p.set_outcome(False)
        assert starts.seen == [("predict", True, True), ("inference", True, True)]  # live, like any span started
        assert not caplog.records  # every span ended once
        assert not held.get_span_context().trace_flags.sampled  # the context it may have propagated is unchanged
        (kept,) = [s for s in c.spans() if s.name == "inference"]
        assert kept.context.span_id == held.get_span_context().span_id and kept.context.trace_flags.sampled
        assert (kept.start_time, kept.end_time) == (held.start_time, held.end_time)
