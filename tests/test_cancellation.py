"""A client that leaves (``asyncio.CancelledError``, ``GeneratorExit``) or a process that stops
(``KeyboardInterrupt``, ``SystemExit``) while a stage or a prediction is open is a cancellation: never a
model error (no ``status="error"``, no ``model_errors_total`` sample), ``status="cancelled"`` for the
prediction, and spans as OpenTelemetry's ``use_span`` leaves them (status unset), with the exception
recorded as an event so the trace still says why the span ended early."""

from __future__ import annotations

import asyncio
import time

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.trace import StatusCode

import modeltel
from modeltel import taxonomy as tx
from modeltel_collector.process.spanmetrics import process_traces
from modeltel_collector.store.metrics import MetricStore

PREDICTIONS = tx.PREDICTIONS.otel_name
ERRORS = tx.ERRORS.otel_name
STAGE = tx.STAGE_LATENCY.otel_name


def _cancelled_span(span) -> None:
    assert span.status.status_code is StatusCode.UNSET
    assert [e.name for e in span.events if e.name == "exception"] == ["exception"]


def _run_and_cancel(body) -> None:
    """Run coroutine function ``body(started)`` as a task and cancel it once it set ``started``."""

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(body(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_stage_open_when_a_generations_client_leaves_is_not_an_error(captured):
    """Ray Serve's streamed call: the inference stage spans the stream inside the generation."""

    async def model():
        yield "first"
        await asyncio.Event().wait()  # the client leaves while the model works on the next item
        yield "never"

    async def consume(started: asyncio.Event) -> None:
        stage = modeltel.stage(tx.STAGE_INFERENCE)
        async for _ in modeltel.stream(stage.stream_async(model())):
            started.set()

    _run_and_cancel(consume)
    assert captured.count(PREDICTIONS, status=tx.STATUS_CANCELLED) == 1
    assert captured.count(PREDICTIONS, status=tx.STATUS_ERROR) == 0
    assert captured.count(ERRORS) == 0
    assert captured.point(STAGE, stage=tx.STAGE_INFERENCE).count == 1  # its latency is still recorded
    spans = {s.name: s for s in captured.spans()}
    _cancelled_span(spans[tx.STAGE_INFERENCE])


def test_a_stage_open_when_a_generator_is_closed_early_is_not_an_error(captured):
    def tokens():
        with modeltel.generation(), modeltel.stage("decode"):
            yield from range(10)

    stream = tokens()
    next(stream)
    stream.close()  # GeneratorExit inside the stage
    assert captured.count(PREDICTIONS, status=tx.STATUS_CANCELLED) == 1
    assert captured.count(ERRORS) == 0
    _cancelled_span({s.name: s for s in captured.spans()}["decode"])


def test_a_plain_prediction_whose_task_is_cancelled_counts_cancelled(captured):
    async def serve(started: asyncio.Event) -> None:
        with modeltel.prediction(), modeltel.stage(tx.STAGE_INFERENCE):
            started.set()
            await asyncio.Event().wait()

    _run_and_cancel(serve)
    assert captured.count(PREDICTIONS, status=tx.STATUS_CANCELLED) == 1
    assert captured.count(PREDICTIONS, status=tx.STATUS_ERROR) == 0
    assert captured.count(PREDICTIONS, status=tx.STATUS_SUCCESS) == 0
    assert captured.count(ERRORS) == 0
    assert captured.count(tx.PREDICTION_LATENCY.otel_name) == 1
    for span in captured.spans():
        _cancelled_span(span)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_process_stopping_mid_prediction_is_a_cancellation(captured, stop):
    with pytest.raises(stop), modeltel.prediction(), modeltel.stage(tx.STAGE_INFERENCE):
        raise stop()
    assert captured.count(PREDICTIONS, status=tx.STATUS_CANCELLED) == 1
    assert captured.count(ERRORS) == 0


def test_an_error_beside_a_cancellation_still_counts(captured):
    """A stage that failed before the client left is still the prediction's error."""

    async def serve(started: asyncio.Event) -> None:
        with modeltel.prediction():
            with pytest.raises(ValueError), modeltel.stage("preprocess"):
                raise ValueError("bad input")
            with modeltel.stage(tx.STAGE_INFERENCE):
                started.set()
                await asyncio.Event().wait()

    _run_and_cancel(serve)
    assert captured.point(ERRORS, **{"error.type": "ValueError"}).value == 1
    assert captured.count(ERRORS) == 1
    assert captured.count(PREDICTIONS, status=tx.STATUS_CANCELLED) == 1


def test_a_decorated_prediction_stream_closed_early_is_cancelled_as_a_generation_is(captured):
    @modeltel.prediction()
    def tokens():
        yield from range(10)

    stream = tokens()
    next(stream)
    stream.close()
    assert captured.count(PREDICTIONS, status=tx.STATUS_CANCELLED) == 1
    assert captured.count(PREDICTIONS, status=tx.STATUS_SUCCESS) == 0
    (span,) = captured.spans()
    _cancelled_span(span)


def test_the_collector_counts_a_cancelled_prediction_from_its_span_as_the_sdk_does(captured):
    """An app that sends only traces: the collector derives ``model_predictions_total`` from its spans, so
    the span must say cancelled (``error.type``) where the SDK counted it so."""

    async def serve(started: asyncio.Event) -> None:
        with modeltel.prediction():
            started.set()
            await asyncio.Event().wait()

    with modeltel.prediction():
        pass
    with pytest.raises(ValueError), modeltel.prediction():
        raise ValueError("bad input")
    _run_and_cancel(serve)
    store = MetricStore()
    process_traces(encode_spans(captured.spans()), store, now=time.time())
    family = store.families[tx.PREDICTIONS.prometheus_name]
    derived = {dict(labels)["status"]: s.value for labels, s in family.series.items()}
    sdk = {p.attributes["status"]: p.value for p in captured.points(PREDICTIONS)}
    assert derived == sdk == {tx.STATUS_SUCCESS: 1, tx.STATUS_ERROR: 1, tx.STATUS_CANCELLED: 1}
