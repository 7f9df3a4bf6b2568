"""A client's generations (``client=True``): their spans are CLIENT spans; inside a prediction they are its
children, with their own client-side GenAI series, and never a second prediction nor the one that counts
the request; and ``start_time_ns`` backdates a generation's start (its TTFT, duration and span)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import modeltel
from modeltel import taxonomy as tx
from modeltel.hotpath.telemetry import telemetry_for
from modeltel.testing import Capture, capture
from tests.conftest import parent_of

CLIENT_DURATION = tx.GEN_AI_CLIENT_OPERATION_DURATION.otel_name
TTFT = tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name
PREDICTIONS = tx.PREDICTIONS.otel_name
ERRORS = tx.ERRORS.otel_name
SECOND = 1_000_000_000


@pytest.fixture
def tel() -> Iterator[Capture]:
    with capture(model_name="app", model_version="1") as c:
        yield c


def _call(*, fail: bool = False) -> None:
    """What the openai client instrumentor does per call: a client generation on the request model."""
    with modeltel.generation(operation="chat", request_model="gpt-x", client=True) as g:
        g.token(3)
        if fail:
            raise ConnectionError("upstream went away")


def test_a_client_generation_is_a_client_span_and_a_server_one_is_not(tel: Capture) -> None:
    _call()
    with modeltel.generation("llm", operation="chat"):
        pass
    kinds = {s.name: s.kind for s in tel.spans()}
    assert kinds == {"chat gpt-x": SpanKind.CLIENT, "chat llm": SpanKind.INTERNAL}
    # outside any prediction a client's generation is the app's prediction, as before
    assert tel.count(PREDICTIONS, model_name="app", status="success") == 1
    assert tel.count(PREDICTIONS) == 2


def test_two_client_calls_in_one_prediction_are_its_children_and_it_counts_the_request_once(tel: Capture) -> None:
    with modeltel.prediction() as p:
        _call()
        _call()
    assert p.superseded is None  # neither call took the prediction over
    assert tel.count(PREDICTIONS) == 1
    assert tel.count(PREDICTIONS, model_name="app", status="success") == 1
    assert tel.point(CLIENT_DURATION, **{tx.ATTR_GEN_AI_REQUEST_MODEL: "gpt-x"}).count == 2  # their own series
    (root,) = tel.spans("predict")
    calls = tel.spans("chat gpt-x")
    assert len(calls) == 2
    for span in calls:
        assert span.kind == SpanKind.CLIENT and parent_of(span) == root.context.span_id
        assert span.attributes[tx.SPAN_ATTR_KIND] == tx.SPAN_KIND_CLIENT
        assert span.attributes[tx.ATTR_MODEL_NAME] == "app"
    assert root.attributes[tx.SPAN_ATTR_KIND] == tx.SPAN_KIND_PREDICTION


def test_client_calls_inside_an_adopted_server_span_and_a_server_generation(tel: Capture) -> None:
    # an HTTP framework's request (adopting its server span): the calls do not replace it
    tracer = tel.pipeline.tracer_provider.get_tracer("server")
    with tracer.start_as_current_span("POST /chat", kind=SpanKind.SERVER):
        with modeltel.prediction(own_span=False) as request:
            _call()
            _call()
    assert request.superseded is None
    # a streaming server that calls an upstream model while it generates: one prediction, the generation
    with modeltel.prediction(own_span=False) as request, modeltel.generation("llm", operation="chat") as g:
        _call()
        g.token()
    assert request.superseded is g
    assert tel.count(PREDICTIONS, model_name="app") == 1 and tel.count(PREDICTIONS, model_name="llm") == 1
    assert tel.count(PREDICTIONS) == 2
    assert tel.point(CLIENT_DURATION, **{tx.ATTR_MODEL_NAME: "app"}).count == 2
    assert tel.point(CLIENT_DURATION, **{tx.ATTR_MODEL_NAME: "llm"}).count == 1  # the enclosing model's


def test_a_failed_client_call_is_an_error_of_the_prediction_it_ran_in(tel: Capture) -> None:
    with modeltel.prediction():
        with pytest.raises(ConnectionError):
            _call(fail=True)  # the app falls back: the request succeeds
    with pytest.raises(ConnectionError), modeltel.prediction():
        _call(fail=True)  # raised through the request: one error, counted once
    assert tel.count(PREDICTIONS, status="success") == 1 and tel.count(PREDICTIONS, status="error") == 1
    assert tel.count(ERRORS, model_name="app", error_type="ConnectionError") == 2
    assert tel.point(CLIENT_DURATION, **{tx.ATTR_ERROR_TYPE: "ConnectionError"}).count == 2


def test_start_time_ns_backdates_ttft_duration_and_the_span(tel: Capture) -> None:
    start = time.time_ns() - 2 * SECOND
    with modeltel.generation("llm", operation="chat", start_time_ns=start) as g:
        g.token()
    assert 2.0 <= tel.point(TTFT).sum < 3.0
    (span,) = tel.spans()
    assert span.start_time == start
    with modeltel.generation("llm", operation="chat", start_time_ns=time.time_ns() + 60 * SECOND) as g:
        g.token()  # a start in the future: it starts now
    assert tel.point(TTFT).count == 2 and tel.point(TTFT).sum < 3.0


def test_kind_and_start_time_through_the_sdk_tracer_and_a_held_span() -> None:
    # without the light spans (a Telemetry over providers of its own), and a span held by keep_slow_and_failed
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    t = telemetry_for(provider, MeterProvider(metric_readers=[reader]))
    start = time.time_ns() - SECOND
    with t.generation("llm", client=True, start_time_ns=start):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.kind == SpanKind.CLIENT and span.start_time == start
    with capture(sampler="parentbased_traceidratio", sampler_arg=0.0, keep_slow_and_failed=True) as c:
        with pytest.raises(ValueError), c.pipeline.telemetry.generation(client=True, start_time_ns=start):
            raise ValueError("kept: it failed")
        (kept,) = c.spans()
        assert kept.kind == SpanKind.CLIENT and kept.start_time == start
