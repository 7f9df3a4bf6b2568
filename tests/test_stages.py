"""The stage and prediction API: spans, histograms, counters, errors, async, decorators, cardinality."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import StatusCode

import modeltel
from modeltel import config
from modeltel import taxonomy as tx
from modeltel.hotpath.telemetry import telemetry_for

STAGE = tx.STAGE_LATENCY.otel_name
LATENCY = tx.PREDICTION_LATENCY.otel_name
PREDICTIONS = tx.PREDICTIONS.otel_name
ERRORS = tx.ERRORS.otel_name


def _three_stage() -> str:
    with modeltel.prediction():
        with modeltel.stage("preprocess"):
            pass
        with modeltel.stage("inference"):
            pass
        with modeltel.stage("postprocess"):
            return "done"


def test_stage_spans_nest_under_the_prediction_with_model_attributes(captured):
    assert _three_stage() == "done"
    spans = {s.name: s for s in captured.spans()}
    root = spans["predict"]
    assert root.parent is None
    assert root.attributes[tx.SPAN_ATTR_KIND] == tx.SPAN_KIND_PREDICTION
    for stage in tx.CANONICAL_STAGES:
        span = spans[stage]
        assert span.parent.span_id == root.context.span_id
        assert span.context.trace_id == root.context.trace_id
        assert span.attributes[tx.SPAN_ATTR_STAGE] == stage
        assert span.attributes[tx.ATTR_MODEL_NAME] == "iris"
        assert span.attributes[tx.ATTR_MODEL_VERSION] == "1.0"
        assert span.resource.attributes["service.name"] == "iris"
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time


def test_histograms_and_counters_carry_model_and_stage_labels(captured):
    for _ in range(3):
        _three_stage()
    for stage in tx.CANONICAL_STAGES:
        point = captured.point(STAGE, stage=stage)
        assert point.count == 3
        assert dict(point.attributes) == {"model.name": "iris", "model.version": "1.0", "stage": stage}
        assert list(point.explicit_bounds) == list(tx.LATENCY_BUCKETS_SECONDS)
        assert sum(point.bucket_counts) == 3
    assert captured.point(LATENCY).count == 3
    assert captured.point(PREDICTIONS, status="success").value == 3
    assert captured.point(PREDICTIONS, status="error").value == 0


def test_nested_custom_stage_inherits_model_and_explicit_model_wins(captured):
    with modeltel.prediction("fraud", "2"), modeltel.stage("feature_lookup"):
        with modeltel.stage("cache", model_name="other"):
            pass
    lookup = captured.point(STAGE, stage="feature_lookup")
    assert lookup.attributes["model.name"] == "fraud" and lookup.attributes["model.version"] == "2"
    cache = captured.point(STAGE, stage="cache")
    assert cache.attributes["model.name"] == "other"
    spans = {s.name: s for s in captured.spans()}
    assert spans["cache"].parent.span_id == spans["feature_lookup"].context.span_id


def test_a_stage_naming_its_predictions_model_records_under_the_model_it_names(captured):
    # a wrapper names the model on every call: the parent's series only when it is that model, of this telemetry
    with modeltel.prediction("fraud", "2"):
        with modeltel.stage("a", model_name="fraud"):  # no version: the configured one, not the parent's
            pass
        with modeltel.stage("b", model_name="fraud", model_version="2"):
            pass
    with modeltel.prediction("fraud"), modeltel.stage("c", model_name="fraud"), modeltel.stage("d", model_version="3"):
        pass
    labels = {s: captured.point(STAGE, stage=s).attributes for s in "abcd"}
    assert {s: (a["model.name"], a["model.version"]) for s, a in labels.items()} == {
        "a": ("fraud", "1.0"),
        "b": ("fraud", "2"),
        "c": ("fraud", "1.0"),
        "d": ("fraud", "3"),
    }
    reader = InMemoryMetricReader()
    other = telemetry_for(TracerProvider(), MeterProvider(metric_readers=[reader]), config.Settings(model_name="iris"))
    with modeltel.prediction(), other.stage("elsewhere", model_name="iris", model_version="1.0"):
        pass  # a stage of another telemetry inside this one's prediction of the same model: recorded by its own
    assert captured.points(STAGE, stage="elsewhere") == []
    data = reader.get_metrics_data()
    (point,) = [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == STAGE
        for p in m.data.data_points
        if p.attributes.get("stage") == "elsewhere"
    ]
    assert point.count == 1 and point.attributes["model.name"] == "iris"


def test_an_error_is_recorded_counted_once_and_propagates_unchanged(captured):
    boom = KeyError("missing feature")
    with pytest.raises(KeyError) as raised, modeltel.prediction(), modeltel.stage("preprocess"):
        with modeltel.stage("lookup"):
            raise boom
    assert raised.value is boom
    assert captured.point(ERRORS, **{"error.type": "KeyError"}).value == 1
    assert captured.point(PREDICTIONS, status="error").value == 1
    assert captured.point(PREDICTIONS, status="success").value == 0
    spans = {s.name: s for s in captured.spans()}
    for name in ("lookup", "preprocess", "predict"):
        assert spans[name].status.status_code is StatusCode.ERROR
        events = [e for e in spans[name].events if e.name == "exception"]
        assert events and events[0].attributes["exception.type"] == "KeyError"
    # the failing stage still has its latency sample
    assert captured.point(STAGE, stage="lookup").count == 1


def test_error_in_a_stage_without_prediction_marks_its_span_and_counts_no_error(captured):
    """Every counted error belongs to a counted prediction (docs/metrics.md): errors per prediction stays
    defined. The failed stage still has its ERROR span and its latency sample."""
    with pytest.raises(ValueError), modeltel.stage("inference"):
        raise ValueError("bad input")
    assert captured.points(ERRORS) == []
    (span,) = captured.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert captured.point(STAGE, stage="inference").count == 1


def test_errors_are_counted_with_their_predictions_labels(captured):
    with modeltel.prediction("ensemble", "2"):
        with pytest.raises(KeyError), modeltel.stage("inference", model_name="bert"):
            raise KeyError("caught by the handler")
        with modeltel.stage("inference", model_name="xgb"):
            pass
    with pytest.raises(ValueError), modeltel.prediction("ensemble", "2"), modeltel.stage("inference", model_name="xgb"):
        raise ValueError("escapes")
    errors = {(p.attributes["model.name"], p.attributes["error.type"]): p.value for p in captured.points(ERRORS)}
    assert errors == {("ensemble", "KeyError"): 1, ("ensemble", "ValueError"): 1}
    predictions = {p.attributes["status"]: p.value for p in captured.points(PREDICTIONS, model_name="ensemble")}
    assert predictions == {"success": 1, "error": 1}


def test_an_error_after_the_applications_prediction_counts_with_it(captured):
    """An adopting (HTTP) prediction gives way to the application's; an error raised in the request after
    that belongs to the prediction that was counted."""
    with pytest.raises(RuntimeError), modeltel.prediction(own_span=False):
        with modeltel.prediction("app-model"):
            pass
        raise RuntimeError("serialising the response failed")
    assert captured.point(ERRORS, model_name="app-model", **{"error.type": "RuntimeError"}).value == 1
    assert captured.point(PREDICTIONS, model_name="app-model", status="success").value == 1
    assert [p.attributes["model.name"] for p in captured.points(ERRORS)] == ["app-model"]


def test_decorators_keep_signature_kind_and_return_value(captured):
    @modeltel.stage("preprocess")
    def prep(x: int, *, scale: float = 2.0) -> float:
        """Scale x."""
        return x * scale

    @modeltel.stage("inference")
    async def infer(x: float) -> float:
        await asyncio.sleep(0)
        return x + 1

    assert prep(3) == 6.0
    assert prep.__name__ == "prep" and prep.__doc__ == "Scale x."
    assert inspect.signature(prep) == inspect.signature(prep.__wrapped__)
    assert inspect.iscoroutinefunction(infer) and not inspect.iscoroutinefunction(prep)
    assert asyncio.run(infer(1.0)) == 2.0
    assert captured.point(STAGE, stage="preprocess").count == 1
    assert captured.point(STAGE, stage="inference").count == 1


def test_generator_stages_time_the_whole_stream(captured):
    @modeltel.stage("postprocess")
    def stream(n: int):
        yield from range(n)

    @modeltel.stage("decode")
    async def astream(n: int):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    assert inspect.isgeneratorfunction(stream) and inspect.isasyncgenfunction(astream)
    assert list(stream(3)) == [0, 1, 2]

    async def consume() -> list[int]:
        return [i async for i in astream(4)]

    assert asyncio.run(consume()) == [0, 1, 2, 3]
    assert captured.point(STAGE, stage="postprocess").count == 1
    assert captured.point(STAGE, stage="decode").count == 1


def test_monitor_prediction_takes_confidence_from_the_result(captured):
    class Result:
        confidence = 0.93

    class Scored(list):  # a built-in type's subclass can carry one
        confidence = 0.25

    results = [Result(), {"confidence": 0.42}, Scored([1]), [1], 3, None]

    @modeltel.monitor_prediction("fraud_detector", "v1.2.0")
    def predict(x):
        return results[x]

    assert [predict(i) for i in range(len(results))] == results
    point = captured.point(tx.PREDICTION_CONFIDENCE.otel_name)
    assert point.count == 3 and point.sum == pytest.approx(1.6)
    assert point.attributes["model.name"] == "fraud_detector"
    assert captured.point(PREDICTIONS, status="success").value == 6


def test_async_monitor_prediction_and_async_with(captured):
    @modeltel.monitor_prediction()
    async def predict(x):
        async with modeltel.stage("inference"):
            await asyncio.sleep(0.001)
        if x < 0:
            raise ValueError("negative")
        return x

    assert asyncio.run(predict(2)) == 2
    with pytest.raises(ValueError):
        asyncio.run(predict(-1))
    assert captured.point(PREDICTIONS, status="success").value == 1
    assert captured.point(PREDICTIONS, status="error").value == 1
    assert captured.point(STAGE, stage="inference").count == 2
    assert captured.point(STAGE, stage="inference").sum >= 0.002


def test_concurrent_async_predictions_keep_their_own_stage_spans(captured):
    @modeltel.monitor_prediction()
    async def predict(i: int) -> int:
        for stage in tx.CANONICAL_STAGES:
            async with modeltel.stage(stage):
                await asyncio.sleep(0.001 * (i % 3))
        return i

    async def main() -> list[int]:
        return await asyncio.gather(*(predict(i) for i in range(100)))

    assert asyncio.run(main()) == list(range(100))
    spans = captured.spans()
    roots = {s.context.span_id: s for s in spans if s.name == "predict"}
    assert len(roots) == 100
    children: dict[int, list[str]] = {}
    for s in spans:
        if s.name != "predict":
            root = roots[s.parent.span_id]
            assert root.context.trace_id == s.context.trace_id
            children.setdefault(root.context.span_id, []).append(s.name)
    assert all(sorted(c) == sorted(tx.CANONICAL_STAGES) for c in children.values())
    assert len(children) == 100


def test_record_confidence_and_batch_size_use_the_active_model(captured):
    with modeltel.prediction("ranker", "7"):
        modeltel.record_batch_size(16)
        modeltel.record_confidence(0.8)
    modeltel.set_online_accuracy(0.91)
    assert captured.point(tx.BATCH_SIZE.otel_name).attributes["model.name"] == "ranker"
    assert captured.point(tx.BATCH_SIZE.otel_name).sum == 16
    assert captured.point(tx.PREDICTION_CONFIDENCE.otel_name).attributes["model.version"] == "7"
    assert captured.point(tx.ONLINE_ACCURACY.otel_name).value == pytest.approx(0.91)


def test_a_confidence_goes_on_its_prediction_span_for_the_collectors_calibration(captured):
    @modeltel.monitor_prediction("fraud_detector", "v1")
    def predict(x):
        return {"confidence": x}

    predict(0.42)
    with modeltel.prediction("ranker", "7"), modeltel.stage("inference"):
        modeltel.record_confidence(0.3)
        modeltel.record_confidence(0.8)  # a batch's last stays
        modeltel.record_confidence(0.1, "other_model")  # another model's: not this prediction's
    key = tx.SPAN_ATTR_PREDICTION_CONFIDENCE
    on = sorted(s.attributes[key] for s in captured.spans() if key in s.attributes)
    assert on == [0.42, 0.8] and len(captured.spans()) == 3  # on the two predictions' spans, not on the stage's


def test_cardinality_is_bounded_with_one_warning(make_captured, caplog):
    c = make_captured(max_stages=3, max_error_types=2)
    with caplog.at_level(logging.WARNING, logger="modeltel"):
        for i in range(10):
            with modeltel.stage(f"custom_{i}"):
                pass
        with modeltel.stage("inference"):  # canonical stages never overflow
            pass
        for exc in (KeyError, ValueError, TypeError, IndexError):
            with pytest.raises(exc), modeltel.prediction(), modeltel.stage("inference"):
                raise exc()
    stages = sorted(p.attributes["stage"] for p in c.points(STAGE))
    assert stages == ["_other", "custom_0", "custom_1", "custom_2", "inference"]
    assert c.point(STAGE, stage="_other").count == 7
    errors = {p.attributes["error.type"]: p.value for p in c.points(ERRORS)}
    assert errors == {"KeyError": 1, "ValueError": 1, "_other": 2}
    warnings = [r for r in caplog.records if "distinct" in r.getMessage()]
    assert len(warnings) == 2  # one for stages, one for error types


def test_exemplars_link_latency_buckets_to_the_exported_spans(captured):
    for _ in range(5):
        _three_stage()
    span_ids = {(s.context.trace_id, s.context.span_id) for s in captured.spans()}
    point = captured.point(STAGE, stage="inference")
    assert point.exemplars, "a sampled stage must leave an exemplar"
    for exemplar in point.exemplars:
        assert (exemplar.trace_id, exemplar.span_id) in span_ids
    root_exemplar = captured.point(LATENCY).exemplars[0]
    roots = {s.context.span_id for s in captured.spans() if s.name == "predict"}
    assert root_exemplar.span_id in roots


def test_exemplar_filter_always_off_drops_exemplars(make_captured):
    c = make_captured(exemplar_filter="always_off")
    _three_stage()
    assert len(c.spans()) == 4
    assert c.point(STAGE, stage="inference").exemplars == []


def test_unsampled_traces_create_no_spans_but_keep_metrics(make_captured):
    c = make_captured(sampler="parentbased_always_off")
    for _ in range(4):
        _three_stage()
    assert c.spans() == []
    assert c.point(STAGE, stage="inference").count == 4
    assert c.point(STAGE, stage="inference").exemplars == []
    assert c.point(PREDICTIONS, status="success").value == 4


def test_ratio_sampling_samples_whole_traces(make_captured):
    c = make_captured(sampler="parentbased_traceidratio", sampler_arg=0.5)
    for _ in range(200):
        _three_stage()
    spans = c.spans()
    roots = [s for s in spans if s.name == "predict"]
    assert 40 < len(roots) < 160
    assert len(spans) == 4 * len(roots)  # a sampled root keeps all its stages; a dropped one none
    assert c.point(LATENCY).count == 200


def test_stage_is_a_child_of_a_foreign_server_span(captured):
    tracer = captured.pipeline.tracer_provider.get_tracer("http.server")
    with tracer.start_as_current_span("POST /predict") as server, modeltel.stage("inference"):
        pass
    spans = {s.name: s for s in captured.spans()}
    assert spans["inference"].parent.span_id == server.get_span_context().span_id


def test_unsampled_foreign_parent_suppresses_stage_spans(captured):
    unsampled = TracerProvider(sampler=ALWAYS_OFF)
    with unsampled.get_tracer("t").start_as_current_span("server"), modeltel.stage("inference"):
        pass
    assert [s.name for s in captured.spans()] == []
    assert captured.point(STAGE, stage="inference").count == 1


def test_sdk_path_with_exponential_histograms(make_captured):
    c = make_captured(histogram="exponential")
    assert c.pipeline.fast is None
    for _ in range(3):
        _three_stage()
    point = c.point(STAGE, stage="preprocess")
    assert point.count == 3 and hasattr(point, "scale")
    assert c.point(PREDICTIONS, status="success").value == 3
    spans = {s.name for s in c.spans()}
    assert spans == {"predict", *tx.CANONICAL_STAGES}


def test_sdk_path_with_delta_temporality_keeps_explicit_buckets(make_captured):
    c = make_captured(metrics_temporality="delta")
    assert c.pipeline.fast is None
    _three_stage()
    assert list(c.point(STAGE, stage="inference").explicit_bounds) == list(tx.LATENCY_BUCKETS_SECONDS)


def test_disabled_pipeline_is_a_no_op(monkeypatch):
    modeltel.shutdown()
    monkeypatch.setenv("MODELTEL_DISABLED", "true")
    assert modeltel.init(set_global=False) is None
    t = modeltel.Telemetry(config.load(disabled=True), recorder=None, tracer_provider=None)
    with t.stage("inference"):
        pass

    @t.monitor_prediction()
    def f():
        return {"confidence": 0.5}

    assert f() == {"confidence": 0.5}


def test_init_is_idempotent(captured):
    assert modeltel.init(model_name="other") is captured.pipeline
    assert modeltel.telemetry().settings.model_name == "iris"


def test_a_monitoring_failure_never_reaches_the_request(captured, caplog):
    class Broken:
        def record(self, *args):
            raise RuntimeError("exporter bug")

    model = modeltel.telemetry().model()
    model.latency = Broken()

    @modeltel.monitor_prediction()
    def predict():
        with modeltel.stage("inference"):
            return 42

    with caplog.at_level(logging.ERROR, logger="modeltel"):
        assert predict() == 42
        assert predict() == 42
        with pytest.raises(KeyError):  # the application's own errors still propagate unchanged
            with modeltel.prediction():
                raise KeyError("k")
    assert len([r for r in caplog.records if "recording failed" in r.getMessage()]) == 1
    assert captured.point(STAGE, stage="inference").count == 2  # what could be recorded was
    assert modeltel.current_stage() is None  # context restored


def test_adopting_prediction_uses_the_current_span_and_its_outcome(captured):
    tracer = captured.pipeline.tracer_provider.get_tracer("http.server")
    with tracer.start_as_current_span("POST /predict") as server:
        with modeltel.prediction(own_span=False) as prediction:
            with modeltel.stage("inference"):
                pass
            prediction.set_outcome(False)  # e.g. the framework answered 422
    spans = {s.name: s for s in captured.spans()}
    assert set(spans) == {"POST /predict", "inference"}  # no span of its own
    assert spans["inference"].parent.span_id == server.get_span_context().span_id
    assert spans["POST /predict"].attributes[tx.ATTR_MODEL_NAME] == "iris"
    assert captured.point(PREDICTIONS, status="error").value == 1
    assert captured.point(LATENCY).count == 1


def test_adopting_prediction_gives_way_to_the_applications_own(captured):
    with modeltel.prediction(own_span=False):
        with modeltel.prediction("app-model"):
            with modeltel.stage("inference"):
                pass
    assert captured.point(PREDICTIONS, **{"model.name": "app-model", "status": "success"}).value == 1
    assert [p.count for p in captured.points(LATENCY)] == [1]  # the request is counted once
    assert all(p.value == 0 for p in captured.points(PREDICTIONS) if p.attributes["model.name"] == "iris")


def test_a_streaming_stage_is_not_active_in_the_consumers_code(captured):
    seen_inside: list[str | None] = []

    @modeltel.stage("decode")
    def tokens(n: int):
        for i in range(n):
            seen_inside.append(modeltel.current_stage())
            yield i

    @modeltel.stage("decode")
    async def atokens(n: int):
        for i in range(n):
            seen_inside.append(modeltel.current_stage())
            yield i

    seen_outside = []
    for _ in tokens(3):
        seen_outside.append(modeltel.current_stage())

    async def consume() -> None:
        async for _ in atokens(2):
            seen_outside.append(modeltel.current_stage())

    asyncio.run(consume())
    assert seen_inside == ["decode"] * 5
    assert seen_outside == [None] * 5
    assert captured.point(STAGE, stage="decode").count == 2


def test_a_stream_closed_early_is_not_an_error_and_a_thrown_one_is(captured):
    @modeltel.stage("decode")
    def tokens():
        yield from range(100)

    stream = tokens()
    assert next(stream) == 0
    stream.close()
    assert all(p.value == 0 for p in captured.points(ERRORS))
    assert captured.point(STAGE, stage="decode").count == 1

    with modeltel.prediction():
        stream = tokens()
        next(stream)
        with pytest.raises(TimeoutError):
            stream.throw(TimeoutError())
    assert captured.point(ERRORS, **{"error.type": "TimeoutError"}).value == 1
    assert modeltel.current_stage() is None
