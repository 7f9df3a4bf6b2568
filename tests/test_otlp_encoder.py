"""modeltel's OTLP encoder decodes to the same messages as the upstream encoder, over a corpus of shapes.

Both outputs are parsed with opentelemetry-proto and compared as messages; the bytes are compared too,
since the encoder writes fields in the order protobuf does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader, MetricsData
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util.types import Attributes

from modeltel.export.otlp.metrics import MetricEncoder
from modeltel.export.otlp.spans import SpanEncoder
from modeltel.testing import capture

RES = Resource.create({"service.name": "svc", "model.name": "iris"}, schema_url="https://opentelemetry.io/schemas/1.21")
OTHER_RES = Resource({"service.name": "other", "n": 1})
SCOPE = InstrumentationScope("modeltel", "0.1", "https://schema", {"scope.attr": "x"})
EVERY_VALUE: Attributes = {
    "str": "iris",
    "empty": "",
    "unicode": "ünï—çødé ✓",
    "long": "x" * 300,
    "huge": "y" * 5000,
    "true": True,
    "false": False,
    "zero": 0,
    "neg": -42,
    "big": 2**62,
    "float": 1.5,
    "float0": 0.0,
    "negfloat": -3.25,
    "inf": float("inf"),
    "strs": ("a", "b"),
    "ints": [1, -2, 3],
    "floats": [0.5, 1.5],
    "bools": [True, False],
    "empty_list": [],
    "bytes": b"\x00\xff",
    "map": {"a": 1, "b": "two"},
    "none": None,
}


def _ctx(trace_id: int, span_id: int, *, remote: bool = False, state: TraceState | None = None) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(1), trace_state=state)


def _span(name: str = "s", **fields: Any) -> ReadableSpan:
    base: dict[str, Any] = {
        "context": _ctx(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331),
        "resource": RES,
        "instrumentation_scope": SCOPE,
        "start_time": 1_700_000_000_000_000_000,
        "end_time": 1_700_000_000_000_123_456,
    }
    return ReadableSpan(name=name, **{**base, **fields})


def _bounded(items: list[Any], maxlen: int) -> BoundedList:
    bounded = BoundedList(maxlen)
    bounded.extend(items)
    return bounded


def span_corpus() -> Iterator[tuple[str, list[ReadableSpan]]]:
    remote_parent = _ctx(1, 2, remote=True)
    yield "every attribute value type", [_span(attributes=EVERY_VALUE)]
    yield "no attributes, unset status", [_span()]
    yield "empty name, no times", [_span("", start_time=0, end_time=None)]
    yield "local parent", [_span(parent=_ctx(1, 3))]
    yield "remote parent", [_span(parent=remote_parent)]
    yield "tracestate", [_span(context=_ctx(5, 6, state=TraceState([("vendor", "v1"), ("x", "y")])))]
    state = TraceState([("k", "v")])
    yield "tracestate and a parent", [_span(context=_ctx(5, 6, state=state), parent=_ctx(5, 7, state=state))]
    top = _ctx(2**128 - 1, 2**64 - 1)  # every bit of the ids (they are packed as two and one 64-bit halves)
    yield "largest ids", [_span(context=top, parent=_ctx(2**128 - 1, 2**63)), _span(context=top)]
    yield "every kind", [_span(kind=kind) for kind in SpanKind]
    yield (
        "statuses",
        [
            _span(status=Status(StatusCode.ERROR, "boom: ✗")),
            _span(status=Status(StatusCode.OK)),
            _span(status=Status(StatusCode.ERROR)),
        ],
    )
    events = [Event("exception", {"exception.type": "ValueError", "n": 3}, 17), Event("bare", None, 0)]
    yield "events", [_span(events=events)]
    links = [Link(_ctx(7, 8, remote=True), {"why": "batch"}), Link(_ctx(9, 10, state=TraceState([("k", "v")])))]
    yield "links", [_span(links=links)]
    yield (
        "dropped counts",
        [
            _span(
                attributes=_bounded_attributes({"a": 1, "b": 2, "c": 3}, 2),
                events=_bounded(events * 3, 2),
                links=_bounded(links * 2, 1),
            )
        ],
    )
    yield (
        "many resources and scopes",
        [
            _span("a"),
            _span("b", resource=OTHER_RES),
            _span("c", instrumentation_scope=None),
            _span("d", instrumentation_scope=InstrumentationScope("other")),
            _span("e", resource=Resource({"service.name": "other", "n": 1})),  # equal to OTHER_RES: same group
            _span("f"),
        ],
    )


def _bounded_attributes(attrs: dict[str, Any], maxlen: int) -> Any:
    from opentelemetry.attributes import BoundedAttributes

    return BoundedAttributes(maxlen=maxlen, attributes=attrs, immutable=False)


class PropertySpan(ReadableSpan):
    """A span class that computes its fields in properties, as a third-party span may."""

    @property
    def name(self) -> str:
        return "computed-" + self._name

    @property
    def dropped_attributes(self) -> int:
        return 5


def _sdk_spans(*, live: bool = False) -> list[ReadableSpan]:
    """Spans of the SDK's tracer: the snapshots processors get, or (``live``) the ended span objects."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RES)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t", "1", schema_url="https://s", attributes={"a": "b"})
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes={"http.method": "POST"}) as root:
        root.add_event("started", {"n": 1})
        with tracer.start_as_current_span("child", links=[Link(_ctx(3, 4))]) as child:
            child.set_status(Status(StatusCode.ERROR, "bad"))
            child.record_exception(ValueError("x"))
    return [child, root] if live else list(exporter.get_finished_spans())


def _modeltel_spans() -> list[ReadableSpan]:
    with capture(model_name="iris", model_version="1.0", sampler="always_on") as c:
        tel = c.pipeline.telemetry

        @tel.monitor_prediction()
        def predict() -> int:
            with tel.stage("preprocess"):
                pass
            with tel.stage("inference"):
                return 1

        predict()
        predict()
        try:
            with tel.prediction(), tel.stage("inference"):  # an error: events, status, copied attributes
                raise ValueError("bad input")
        except ValueError:
            pass
        return c.spans()


def _assert_same_spans(spans: list[ReadableSpan], encoder: SpanEncoder) -> None:
    upstream = encode_spans(spans).SerializeToString()
    ours = encoder.encode(spans)
    assert ExportTraceServiceRequest.FromString(ours) == ExportTraceServiceRequest.FromString(upstream)
    assert ours == upstream


@pytest.mark.parametrize("shape", [name for name, _ in span_corpus()])
def test_span_shapes_decode_like_upstream(shape: str) -> None:
    spans = dict(span_corpus())[shape]
    encoder = SpanEncoder()
    _assert_same_spans(spans, encoder)
    _assert_same_spans(spans, encoder)  # again, from the caches


def test_sdk_modeltel_and_property_spans_decode_like_upstream() -> None:
    encoder = SpanEncoder()
    property_span = PropertySpan(name="p", context=_ctx(1, 1), resource=RES)
    for spans in (_sdk_spans(), _sdk_spans(live=True), _modeltel_spans(), [property_span]):
        assert spans
        _assert_same_spans(spans, encoder)
    mixed = _sdk_spans() + _modeltel_spans() + [_span(attributes=EVERY_VALUE)]
    _assert_same_spans(mixed, encoder)
    _assert_same_spans([_span()] * 300, encoder)  # a request over 4 KiB, over 16 KiB


def test_span_caches_stay_bounded_and_correct() -> None:
    encoder = SpanEncoder()
    spans = [_span(f"name-{i}", attributes={"id": f"value-{i}"}) for i in range(10_000)]
    _assert_same_spans(spans, encoder)
    assert len(encoder._attr) <= 4096 and len(encoder._names) <= 4096


def _collect(**provider: Any) -> MetricsData:
    reader = InMemoryMetricReader(**provider.pop("reader", {}))
    meters = MeterProvider(resource=RES, metric_readers=[reader], exemplar_filter=AlwaysOnExemplarFilter(), **provider)
    meter = meters.get_meter("m", "1", schema_url="https://s", attributes={"scope": "attr"})
    tracer_provider = TracerProvider()
    with tracer_provider.get_tracer("t").start_as_current_span("sampled"):
        meter.create_counter("ints", unit="1", description="int counter").add(3, {"k": "v"})
        meter.create_histogram("latency", unit="s").record(0.25, {"stage": "inference"})
    meter.create_counter("floats").add(1.5, EVERY_VALUE)
    meter.create_up_down_counter("updown").add(-7)
    meter.create_histogram("latency").record(12.5, {"stage": "inference"})
    meter.create_histogram("negatives").record(-3.0)
    meter.create_gauge("gauge_float").set(0.0)
    meter.create_gauge("gauge_int").set(-5, {"k": "v"})
    meter.create_observable_gauge("observed", callbacks=[lambda _o: [_observation(2.5)]])
    meter.create_counter("unused")
    data = reader.get_metrics_data()
    meters.shutdown()
    return data


def _observation(value: float) -> Any:
    from opentelemetry.metrics import Observation

    return Observation(value, {"gpu": "0"})


def _delta() -> MetricsData:
    from opentelemetry.sdk.metrics import Counter, Histogram, UpDownCounter

    delta = {kind: AggregationTemporality.DELTA for kind in (Counter, Histogram, UpDownCounter)}
    return _collect(reader={"preferred_temporality": delta})


def _exponential() -> MetricsData:
    return _collect(views=[View(instrument_name="*", aggregation=ExponentialBucketHistogramAggregation())])


def _modeltel_fast_series() -> MetricsData:
    with capture(model_name="iris", model_version="1.0", sampler="always_on") as c:
        tel = c.pipeline.telemetry
        with tel.prediction():
            with tel.stage("inference"):
                pass
        return c.reader.get_metrics_data()


METRIC_CORPUS = {
    "cumulative, exemplars": _collect,
    "delta": _delta,
    "exponential histograms": _exponential,
    "modeltel fast series": _modeltel_fast_series,
}


@pytest.mark.parametrize("shape", list(METRIC_CORPUS))
def test_metric_shapes_decode_like_upstream(shape: str) -> None:
    data = METRIC_CORPUS[shape]()
    assert data is not None and data.resource_metrics
    upstream = encode_metrics(data).SerializeToString()
    encoder = MetricEncoder()
    for _ in range(2):
        ours = encoder.encode(data)
        assert ExportMetricsServiceRequest.FromString(ours) == ExportMetricsServiceRequest.FromString(upstream)
        assert ours == upstream


def test_metric_corpus_covers_the_shapes_it_claims() -> None:
    """The corpus above is only as good as what it holds: exemplars with a trace, exponential buckets, ..."""
    request = ExportMetricsServiceRequest.FromString(MetricEncoder().encode(_collect()))
    kinds = {m.WhichOneof("data") for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"sum", "gauge", "histogram"} <= kinds
    exemplars = [
        e
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.WhichOneof("data") == "histogram"
        for p in m.histogram.data_points
        for e in p.exemplars
    ]
    assert any(e.trace_id for e in exemplars) and any(not e.trace_id for e in exemplars)
    expo = ExportMetricsServiceRequest.FromString(MetricEncoder().encode(_exponential()))
    points = [
        p
        for rm in expo.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.WhichOneof("data") == "exponential_histogram"
        for p in m.exponential_histogram.data_points
    ]
    assert any(p.positive.bucket_counts for p in points) and any(p.negative.bucket_counts for p in points)
