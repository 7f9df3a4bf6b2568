"""modeltel's light spans keep the SDK's span model: one scenario through FastSpan and through the SDK's
Span must export the same spans, field by field (ids and times aside)."""

from __future__ import annotations

import logging
import threading
import time
import types
from collections import Counter
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.propagate import inject
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from modeltel import __version__, config
from modeltel import taxonomy as tx
from modeltel.hotpath import Telemetry
from modeltel.hotpath import spans as spans_module
from modeltel.hotpath.fastmetrics import BoundHistogram, FastMetrics
from modeltel.hotpath.recorders import FastRecorder, SdkRecorder
from modeltel.hotpath.spans import FastSpan, SpanFactory

UPSTREAM_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
# Flags 01: sampled, and *not* the W3C random-trace-id flag; a vendor's tracestate to carry along.
UPSTREAM = {
    "traceparent": f"00-{UPSTREAM_TRACE:032x}-b7ad6b7169203331-01",
    "tracestate": "vendor=abc,other=1",
}


class _Ending(SpanProcessor):
    """Records what it sees in ``_on_ending`` (the span must still be the live one there)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def _on_ending(self, span: Any) -> None:
        self.seen.append((span.name, span.end_time is not None))


def _telemetry(*, light: bool) -> tuple[Telemetry, InMemorySpanExporter, _Ending]:
    settings = config.load({}, model_name="m", model_version="1")
    provider = TracerProvider(resource=Resource.create({"service.name": "spans-test"}))
    exporter, ending = InMemorySpanExporter(), _Ending()
    provider.add_span_processor(ending)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = SdkRecorder(MeterProvider().get_meter(tx.METER_NAME), settings.bucket_overrides)
    factory = SpanFactory.for_provider(provider, InstrumentationScope(tx.TRACER_NAME, __version__)) if light else None
    return Telemetry(settings, recorder, provider, factory), exporter, ending


def _scenario(t: Telemetry) -> list[dict[str, str]]:
    """An upstream request with a tracestate, stages that set attributes, events, statuses, errors and make
    an outbound call, then a root prediction. Returns the outbound calls' headers."""
    outbound: list[dict[str, str]] = []
    token = otel_context.attach(TraceContextTextMapPropagator().extract(UPSTREAM))
    try:
        with pytest.raises(KeyError), t.prediction(attributes={"request": "r1"}):
            with t.stage("preprocess") as st:
                st.set_attribute("rows", 3)
                trace.get_current_span().add_event("parsed", {"fields": 4}, timestamp=1)
                headers: dict[str, str] = {}
                inject(headers)
                outbound.append(headers)
            try:
                with t.stage("inference"):
                    trace.get_current_span().set_status(Status(StatusCode.OK))
                    raise ValueError("caught by the handler")  # ERROR must not replace the explicit OK
            except ValueError:
                pass
            with t.stage("postprocess"):
                span = trace.get_current_span()
                span.set_status(StatusCode.UNSET)  # ignored
                span.update_name("postprocess-renamed")
                raise KeyError("escapes")
    finally:
        otel_context.detach(token)
    with t.prediction("root-model"), t.stage("inference"):
        pass
    return outbound


def _normalise(spans: tuple[ReadableSpan, ...]) -> list[dict[str, Any]]:
    """Every field a processor or exporter reads, with ids replaced by their order of appearance."""
    ids: dict[int, int] = {}

    def ref(ctx: Any) -> Any:
        if ctx is None:
            return None
        return {
            "trace": ids.setdefault(ctx.trace_id, len(ids)),
            "span": ids.setdefault(ctx.span_id, len(ids)),
            "flags": int(ctx.trace_flags),
            "state": ctx.trace_state.to_header(),
            "remote": ctx.is_remote,
        }

    return [
        {
            "name": s.name,
            "context": ref(s.context),
            "parent": ref(s.parent),
            "kind": s.kind,
            "attributes": dict(s.attributes),
            "events": [(e.name, dict(e.attributes)) for e in s.events],
            "event_times": [e.timestamp for e in s.events if e.timestamp == 1],
            "links": list(s.links),
            "status": (s.status.status_code, s.status.description),
            "resource": s.resource.attributes,
            "scope": s.instrumentation_scope,
            "dropped": (s.dropped_attributes, s.dropped_events, s.dropped_links),
            "timed": s.start_time is not None and s.end_time is not None and s.start_time <= s.end_time,
        }
        for s in spans
    ]


def _otlp(spans: tuple[ReadableSpan, ...]) -> dict[str, Any]:
    """The OTLP request an exporter would send, without ids and times (compared in ``_normalise``)."""
    message = MessageToDict(encode_spans(spans))
    for rs in message["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId", "startTimeUnixNano", "endTimeUnixNano"):
                    span.pop(key, None)
                for event in span.get("events", ()):
                    event.pop("timeUnixNano", None)
    return message


def test_light_spans_export_what_sdk_spans_export():
    light, light_out, light_ending = _telemetry(light=True)
    sdk, sdk_out, sdk_ending = _telemetry(light=False)
    light_headers, sdk_headers = _scenario(light), _scenario(sdk)
    fast, reference = light_out.get_finished_spans(), sdk_out.get_finished_spans()
    assert all(isinstance(s, FastSpan) for s in fast) and not any(isinstance(s, FastSpan) for s in reference)
    assert len(fast) == 6
    assert _normalise(fast) == _normalise(reference)
    assert _otlp(fast) == _otlp(reference)
    assert light_ending.seen == sdk_ending.seen and len(light_ending.seen) == 6
    # what the scenario is about, stated outright
    assert (
        [h.get("tracestate") for h in light_headers]
        == [UPSTREAM["tracestate"]]
        == [h.get("tracestate") for h in sdk_headers]
    )
    upstream = [s for s in fast if s.context.trace_id == UPSTREAM_TRACE]
    assert len(upstream) == 4
    for s in upstream:
        assert s.context.trace_state.to_header() == UPSTREAM["tracestate"]
        assert s.context.trace_flags == trace.TraceFlags.SAMPLED  # not random: the upstream id may not be
    root = [s for s in fast if s.context.trace_id != UPSTREAM_TRACE]
    assert all(s.context.trace_flags.random_trace_id for s in root)  # our own ids are random
    statuses = {s.name: s.status.status_code for s in upstream}
    assert statuses == {
        "preprocess": StatusCode.UNSET,
        "inference": StatusCode.OK,  # set explicitly before the error: final
        "postprocess-renamed": StatusCode.ERROR,
        "predict": StatusCode.ERROR,
    }


def test_without_the_private_processor_chain_spans_use_the_sdk_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(spans_module, "_fallback_warned", False)
    renamed = types.SimpleNamespace(sampler=None, id_generator=None, resource=None)
    scope = InstrumentationScope(tx.TRACER_NAME, __version__)
    with caplog.at_level(logging.WARNING, logger="modeltel"):
        assert SpanFactory.for_provider(renamed, scope) is None
        assert SpanFactory.for_provider(renamed, scope) is None
    assert len([r for r in caplog.records if "_active_span_processor" in r.getMessage()]) == 1


LIMITS = {  # read by the SDK's SpanLimits when a TracerProvider is made
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "3",
    "OTEL_SPAN_EVENT_COUNT_LIMIT": "2",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "5",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "4",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "2",
}


def _limits_scenario(t: Telemetry) -> None:
    """Start attributes over the count limit, long values, more attributes and events than allowed."""
    with t.prediction(attributes={"request": "a-long-request-id", "tenant": "t" * 20}), t.stage("inference") as st:
        for i in range(6):
            st.set_attribute(f"extra.{i}", f"value-{i}")
        span = trace.get_current_span()
        span.set_attributes({"late": "x" * 10, "extra.5": "again"})
        for i in range(5):
            span.add_event(f"event-{i}", {"dropped": 1, "a": "long-event-value", "b": 2})
        span.record_exception(ValueError("a long exception message"))


def test_light_spans_keep_the_span_limits_of_the_environment(monkeypatch):
    for name, value in LIMITS.items():
        monkeypatch.setenv(name, value)
    (light, light_out, _), (sdk, sdk_out, _) = _telemetry(light=True), _telemetry(light=False)
    _limits_scenario(light)
    _limits_scenario(sdk)
    fast, reference = light_out.get_finished_spans(), sdk_out.get_finished_spans()
    assert _normalise(fast) == _normalise(reference)
    assert _otlp(fast) == _otlp(reference)
    inference, predict = fast
    assert len(predict.attributes) == 3 and predict.dropped_attributes > 0
    assert all(len(v) <= 5 for v in predict.attributes.values() if isinstance(v, str))
    assert len(inference.attributes) == 3 and inference.dropped_attributes > 0
    assert [e.name for e in inference.events] == ["event-4", "exception"] and inference.dropped_events == 4
    assert all(len(e.attributes) == 2 for e in inference.events)
    assert inference.events[0].attributes["a"] == "long"  # the general length limit applies to events


def _each_ended_span(t: Telemetry) -> Any:
    with t.prediction(), t.stage("inference"):
        span = trace.get_current_span()
        span.set_attribute("before", 1)
        span.add_event("before")
    return span


def test_an_ended_span_does_not_change_and_says_so(caplog):
    ended = []
    for light in (True, False):
        t, out, _ = _telemetry(light=light)
        span = _each_ended_span(t)
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            span.set_attribute("after", 1)
            span.set_attributes({"after": 2})
            span.add_event("after")
            span.update_name("after")
            span.set_status(StatusCode.ERROR)
            span.end()
        ended.append((_normalise(out.get_finished_spans()), len(caplog.records)))
    assert ended[0] == ended[1]
    (inference, _), warnings = ended[0][0], ended[0][1]
    assert inference["attributes"]["before"] == 1 and "after" not in inference["attributes"]
    assert [e[0] for e in inference["events"]] == ["before"] and inference["name"] == "inference"
    assert warnings == 6


def test_a_span_ended_by_several_threads_at_once_is_exported_once(monkeypatch, caplog):
    """Every thread reads the clock between the check and the set (a slow clock widens that window)."""
    t, out, ending = _telemetry(light=True)
    with t.prediction():
        span = trace.get_current_span()
    out.clear()
    ending.seen.clear()
    span = t._spans.start("contended", {}, None)
    clock = spans_module.time_ns

    def slow_clock() -> int:
        time.sleep(0.01)
        return clock()

    monkeypatch.setattr(spans_module, "time_ns", slow_clock)
    barrier = threading.Barrier(8)

    def end() -> None:
        barrier.wait()
        span.end()

    with caplog.at_level(logging.WARNING, logger="modeltel"):
        threads = [threading.Thread(target=end) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [s.name for s in out.get_finished_spans()] == ["contended"]
    assert ending.seen == [("contended", True)]
    assert len([r for r in caplog.records if "ended span" in r.getMessage()]) == 7


class _SlowList(list):
    """An attribute value whose cleaning (iterating it) takes a while, once it has said so."""

    def __init__(self, *args: Any, started: threading.Event) -> None:
        super().__init__(*args)
        self.started = started

    def __iter__(self) -> Any:
        self.started.set()
        time.sleep(0.05)
        return super().__iter__()


def test_an_attribute_set_while_another_thread_ends_the_span_lands_before_the_export():
    t, out, _ = _telemetry(light=True)
    at_end: list[dict[str, Any]] = []
    ending = types.SimpleNamespace(on_start=lambda *a, **k: None, _on_ending=lambda span: None, shutdown=lambda: None)
    ending.on_end = lambda span: at_end.append(dict(span.attributes))
    t._spans.provider.add_span_processor(ending)
    span = t._spans.start("raced", {"model.name": "m"}, None)
    started = threading.Event()
    setter = threading.Thread(target=span.set_attribute, args=("slow", _SlowList([1, 2], started=started)))
    setter.start()
    assert started.wait(10)
    span.end()  # while the setter is inside set_attribute
    setter.join()
    assert at_end == [{"model.name": "m", "slow": (1, 2)}]
    assert dict(out.get_finished_spans()[0].attributes) == at_end[0]


def test_light_spans_take_their_ids_from_a_custom_id_generator():
    """Only the SDK's own ``RandomIdGenerator`` is bypassed (for its C call); any other generator (X-Ray's, a
    subclass) is asked for every id, as the SDK asks it."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class Counting(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            return 0xABC

        def generate_span_id(self) -> int:
            return 0xDEF

    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=Counting())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    factory = SpanFactory.for_provider(provider, InstrumentationScope("t"))
    factory.start("root", {}, None).end()
    (span,) = exporter.get_finished_spans()
    assert (span.context.trace_id, span.context.span_id) == (0xABC, 0xDEF)


class _Keeping(SpanProcessor):
    """Keeps the ended spans as an export buffer does, reading nothing from them."""

    def __init__(self) -> None:
        self.spans: list[Any] = []

    def on_end(self, span: Any) -> None:
        self.spans.append(span)


def test_a_light_span_waiting_for_export_is_one_object_for_the_garbage_collector():
    """What the collector scans while spans wait in the export buffer: one object per span and the root's
    context its children share, not a ``SpanContext`` more per span (a tuple subclass stays tracked);
    exemplars on (the default), so recording the stage histograms must not build the contexts either.
    The context built when it is read is the span's, and the same object at every read."""
    import gc

    settings = config.load({}, model_name="m", model_version="1")
    assert settings.exemplar_filter != "always_off"
    provider = TracerProvider()
    keeping = _Keeping()
    provider.add_span_processor(keeping)
    recorder = FastRecorder(FastMetrics(settings.bucket_overrides, __version__))  # the pipeline's
    factory = SpanFactory.for_provider(provider, InstrumentationScope(tx.TRACER_NAME, __version__))
    t = Telemetry(settings, recorder, provider, factory)

    def predict() -> None:
        with t.prediction():
            for name in ("preprocess", "inference", "postprocess"):
                with t.stage(name):
                    pass

    predict()  # series bound, exemplar slots taken
    gc.collect()
    before = Counter(type(o) for o in gc.get_objects())
    for _ in range(50):
        predict()
    gc.collect()
    grown = Counter(type(o) for o in gc.get_objects())
    grown.subtract(before)
    assert grown[SpanContext] <= 50 + 5  # the roots' (a context per span was 200)
    # all tracked objects, with room for what another test's leftover thread allocates meanwhile (the
    # spans' own are 5 a prediction: 4 spans and the root's context; with a context each it was 592)
    assert grown.total() <= 6 * 50, grown.most_common(5)
    root, *children = keeping.spans[-1:-5:-1]
    assert all(c.parent is root.get_span_context() for c in children)
    for span in (root, *children):
        ctx = span.get_span_context()
        assert span.context is ctx and span._context is ctx and ctx.is_valid and ctx.trace_flags.sampled
        assert (ctx.trace_id, ctx.span_id, ctx.trace_state) == (span._trace_id, span._span_id, span._trace_state)


def test_an_exemplar_keeps_its_spans_ids_not_the_span():
    """A bucket's exemplar lives as long as the process: holding the span would keep its attributes,
    events and exception stack traces alive for every series and bucket."""
    import gc
    import weakref

    provider = TracerProvider()
    factory = SpanFactory.for_provider(provider, InstrumentationScope(tx.TRACER_NAME, __version__))
    histogram = BoundHistogram([0.01, 1.0], {"model.name": "m"})
    light = factory.start("predict", {}, None)
    sdk = provider.get_tracer("t").start_span("predict")
    ids = set()
    for value, span in ((0.001, light), (10.0, sdk)):
        histogram.record(value, span)
        span.end()
        ids.add((span.get_span_context().trace_id, span.get_span_context().span_id))
    refs = [weakref.ref(light), weakref.ref(sdk)]
    del light, sdk, span
    gc.collect()
    assert [ref() for ref in refs] == [None, None]
    point = histogram.point(0, 1)
    assert {(e.trace_id, e.span_id) for e in point.exemplars} == ids
