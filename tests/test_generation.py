"""Generations: ``modeltel.generation()`` and ``modeltel.stream()`` record a prediction plus the GenAI
metrics, once per generation, with exact values under a clock the test drives."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Iterator

import pytest

import modeltel
from modeltel import taxonomy as tx
from modeltel.hotpath import generation as generation_module
from modeltel.hotpath import stage as stage_module
from modeltel.testing import Capture, capture
from tests.conftest import parent_of

TTFT = tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name
TPOT = tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN.otel_name
DURATION = tx.GEN_AI_SERVER_REQUEST_DURATION.otel_name
USAGE = tx.GEN_AI_CLIENT_TOKEN_USAGE.otel_name
PREDICTIONS = tx.PREDICTIONS.otel_name


class Clock:
    """perf_counter for the hot path: time moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    for module in (stage_module, generation_module):
        monkeypatch.setattr(module, "perf_counter", c)
    return c


@pytest.fixture
def tel() -> Iterator[Capture]:
    with capture(model_name="llm", model_version="2") as c:
        yield c


def tokens(clock: Clock, gaps: list[float], closed: list[bool] | None = None) -> Iterator[str]:
    """Yields one token after each gap (seconds on ``clock``); notes in ``closed`` whether it was closed early."""
    try:
        for i, gap in enumerate(gaps):
            clock.now += gap
            yield f"t{i}"
    except GeneratorExit:
        if closed is not None:
            closed.append(True)
        raise


def value(c: Capture, name: str, **attrs: str) -> tuple[int, float]:
    p = c.point(name, **attrs)
    return p.count, p.sum


def test_stream_records_ttft_tpot_duration_and_tokens(tel: Capture, clock: Clock) -> None:
    out = list(modeltel.stream(tokens(clock, [0.5, 0.1, 0.2, 0.3]), operation="chat", request_model="llm-7b"))
    assert out == ["t0", "t1", "t2", "t3"]
    labels = {tx.ATTR_GEN_AI_OPERATION_NAME: "chat", tx.ATTR_GEN_AI_REQUEST_MODEL: "llm-7b"}
    assert value(tel, TTFT, **labels) == (1, pytest.approx(0.5))
    assert value(tel, TPOT, **labels) == (1, pytest.approx(0.2))  # (0.1 + 0.2 + 0.3) / 3, once per response
    assert value(tel, DURATION, **labels) == (1, pytest.approx(1.1))
    assert value(tel, USAGE, **labels, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "output"}) == (1, 4)
    assert tel.point(DURATION).attributes[tx.ATTR_GEN_AI_RESPONSE_MODEL] == "llm-7b"  # default: the request's
    assert tel.count(PREDICTIONS, status="success") == 1
    assert tel.count(tx.PREDICTION_LATENCY.otel_name) == 1
    (span,) = tel.spans()
    assert span.name == "chat llm-7b"
    assert span.attributes[tx.SPAN_ATTR_KIND] == tx.SPAN_KIND_PREDICTION
    assert span.attributes[tx.SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] == 4
    assert span.attributes[tx.SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN] == pytest.approx(0.5)
    assert span.attributes[tx.SPAN_ATTR_GEN_AI_MAX_TOKEN_GAP] == pytest.approx(0.3)
    (event,) = span.events
    assert event.name == tx.SPAN_EVENT_GEN_AI_FIRST_TOKEN
    assert span.start_time <= event.timestamp <= span.end_time


def test_async_stream(tel: Capture, clock: Clock) -> None:
    async def agen():
        for gap in (0.25, 0.05, 0.05):
            clock.now += gap
            await asyncio.sleep(0)
            yield "x"

    async def main() -> list[str]:
        return [item async for item in modeltel.stream(agen())]

    assert asyncio.run(main()) == ["x", "x", "x"]
    assert value(tel, TTFT) == (1, pytest.approx(0.25))
    assert value(tel, TPOT) == (1, pytest.approx(0.05))
    assert tel.count(PREDICTIONS, status="success") == 1


def test_early_close_is_cancelled_not_an_error(tel: Capture, clock: Clock) -> None:
    closed: list[bool] = []
    stream = modeltel.stream(tokens(clock, [0.1] * 10, closed))
    assert [next(stream), next(stream)] == ["t0", "t1"]
    stream.close()  # the client disconnected
    assert closed == [True]  # the model's generator was closed too
    assert tel.count(PREDICTIONS, status=tx.STATUS_CANCELLED) == 1
    assert tel.count(PREDICTIONS, status="success") == tel.count(PREDICTIONS, status="error") == 0
    assert tel.count(tx.ERRORS.otel_name) == 0
    assert tel.points(TTFT) == [] and tel.points(TPOT) == []  # successful responses only (semconv)
    assert value(tel, DURATION, error_type=tx.ERROR_TYPE_CANCELLED) == (1, pytest.approx(0.2))
    assert value(tel, USAGE) == (1, 2)  # the tokens it did produce
    (span,) = tel.spans()
    assert span.attributes[tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS] == (tx.FINISH_REASON_CANCELLED,)
    assert span.status.is_unset


def test_abandoned_stream_is_cancelled(tel: Capture, clock: Clock) -> None:
    stream = modeltel.stream(tokens(clock, [0.1] * 3))
    next(stream)
    del stream
    gc.collect()
    assert tel.count(PREDICTIONS, status=tx.STATUS_CANCELLED) == 1


def test_async_task_cancelled_mid_stream(tel: Capture, clock: Clock) -> None:
    async def slow():
        yield "first"
        await asyncio.Event().wait()  # never comes
        yield "never"

    async def main() -> None:
        got = asyncio.Event()

        async def consume() -> None:
            async for _ in modeltel.stream(slow()):
                got.set()

        task = asyncio.create_task(consume())
        await got.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert tel.count(PREDICTIONS, status=tx.STATUS_CANCELLED) == 1
    assert tel.count(PREDICTIONS, status="error") == 0


def test_raise_is_an_error(tel: Capture, clock: Clock) -> None:
    def broken():
        clock.now += 0.3
        yield "a"
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        list(modeltel.stream(broken()))
    assert tel.count(PREDICTIONS, status="error") == 1
    assert tel.count(tx.ERRORS.otel_name, error_type="RuntimeError") == 1
    assert value(tel, DURATION, error_type="RuntimeError") == (1, pytest.approx(0.3))
    assert tel.points(TTFT) == [] and tel.points(TPOT) == []
    (span,) = tel.spans()
    assert not span.status.is_ok and not span.status.is_unset


def test_tokens_of_counts_chunks_and_skips_empty_ones(tel: Capture, clock: Clock) -> None:
    def chunks():
        for gap, n in ((0.1, 0), (0.2, 3), (0.3, 2), (0.3, 1), (0.5, 0)):  # role chunk first, usage chunk last
            clock.now += gap
            yield {"n": n}

    list(modeltel.stream(chunks(), tokens_of=lambda c: c["n"]))
    assert value(tel, TTFT) == (1, pytest.approx(0.3))  # the first chunk holding a token
    assert value(tel, TPOT) == (1, pytest.approx(0.6 / 5))  # (last token - first) / (6 tokens - 1)
    assert value(tel, USAGE) == (1, 6)
    assert value(tel, DURATION) == (1, pytest.approx(1.4))


def test_context_manager_usage_finish_and_first_token(tel: Capture, clock: Clock) -> None:
    with modeltel.generation(operation="chat", response_model="llm-7b-0613", input_tokens=12) as g:
        clock.now += 0.4
        g.first_token()
        clock.now += 0.6
        g.usage(output_tokens=11)  # the server reports usage at the end, no per-token calls
        g.finish("stop", "length")
    assert value(tel, TTFT) == (1, pytest.approx(0.4))
    assert value(tel, TPOT) == (1, pytest.approx(0.06))  # (duration - TTFT) / (11 - 1)
    assert value(tel, USAGE, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "input"}) == (1, 12)
    assert value(tel, USAGE, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "output"}) == (1, 11)
    assert tel.point(TTFT).attributes[tx.ATTR_GEN_AI_RESPONSE_MODEL] == "llm-7b-0613"
    (span,) = tel.spans()
    assert span.attributes[tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS] == ("stop", "length")
    assert span.attributes[tx.SPAN_ATTR_GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert span.attributes[tx.ATTR_GEN_AI_RESPONSE_MODEL] == "llm-7b-0613"


def test_cancel_without_exception(tel: Capture, clock: Clock) -> None:
    with modeltel.generation() as g:
        g.token()
        g.cancel()  # the server noticed the disconnect and stopped generating
    assert tel.count(PREDICTIONS, status=tx.STATUS_CANCELLED) == 1


def test_stages_are_children_on_the_stage_histogram(tel: Capture, clock: Clock) -> None:
    def served():
        with modeltel.stage(tx.STAGE_QUEUE):
            clock.now += 0.05
        with modeltel.stage(tx.STAGE_PREFILL):
            clock.now += 0.2
        with modeltel.stage(tx.STAGE_DECODE):
            for _ in range(3):
                clock.now += 0.01
                yield "tok"

    list(modeltel.stream(served()))
    assert tel.stage_counts() == {("llm", "2", s): 1 for s in tx.GENERATION_STAGES}
    assert value(tel, tx.STAGE_LATENCY.otel_name, stage="prefill") == (1, pytest.approx(0.2))
    assert value(tel, TTFT) == (1, pytest.approx(0.26))
    root = next(s for s in tel.spans() if s.attributes[tx.SPAN_ATTR_KIND] == tx.SPAN_KIND_PREDICTION)
    assert all(parent_of(s) == root.context.span_id for s in tel.stage_spans())


def test_generation_inside_a_prediction_is_counted_once(tel: Capture, clock: Clock) -> None:
    with modeltel.prediction("router", "1"):
        list(modeltel.stream(tokens(clock, [0.1, 0.1]), "llm", "2"))
    assert tel.count(PREDICTIONS) == 1
    assert tel.count(PREDICTIONS, model_name="llm", status="success") == 1
    assert value(tel, TTFT) == (1, pytest.approx(0.1))


def test_stream_with_a_generation_made_first(tel: Capture, clock: Clock) -> None:
    g = modeltel.generation(operation="chat")
    for _ in g.stream(tokens(clock, [0.1, 0.1, 0.1])):
        g.usage(input_tokens=7)
    assert value(tel, USAGE, **{tx.ATTR_GEN_AI_TOKEN_TYPE: "input"}) == (1, 7)
    assert modeltel.current_generation() is None


def test_current_generation_inside_the_stream(tel: Capture) -> None:
    seen = []

    def inner():
        seen.append(modeltel.current_generation())
        yield "a"

    g = modeltel.generation()
    for _ in modeltel.stream(inner(), generation=g):
        seen.append(modeltel.current_generation())  # the consumer's code is outside the generation
    assert seen == [g, None]


def test_not_a_decorator() -> None:
    with pytest.raises(TypeError, match="not a decorator"):
        modeltel.generation()(lambda: None)


def _stream_peak(n: int) -> int:
    """Peak traced memory of streaming ``n`` tokens (the same object each time: only the SDK allocates)."""
    item = "tok"

    def source():
        for _ in range(n):
            yield item

    gc.collect()
    tracemalloc.start()
    try:
        for _ in modeltel.stream(source()):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_constant_in_the_stream_length(tel: Capture) -> None:
    _stream_peak(100)  # first use binds the series
    short, long = _stream_peak(1_000), _stream_peak(100_000)
    assert long - short < 4096, (short, long)  # 99,000 more tokens, no more memory


@pytest.mark.parametrize("settings", [{"metrics_temporality": "delta"}, {}], ids=["sdk-instruments", "fast-path"])
def test_both_recorders_use_the_taxonomy_buckets(clock: Clock, settings: dict) -> None:
    with capture(model_name="llm", model_version="2", **settings) as c:
        list(modeltel.stream(tokens(clock, [0.5, 0.1])))
        assert tuple(c.point(TTFT).explicit_bounds) == tx.TTFT_BUCKETS_SECONDS
        assert tuple(c.point(TPOT).explicit_bounds) == tx.TPOT_BUCKETS_SECONDS
        assert c.point(TTFT).sum == pytest.approx(0.5)


def test_async_early_close_is_cancelled(tel: Capture, clock: Clock) -> None:
    closed = []

    async def agen():
        try:
            for _ in range(10):
                yield "x"
        finally:
            closed.append(True)

    async def main() -> None:
        stream = modeltel.stream(agen())
        assert await stream.__anext__() == "x"
        await stream.aclose()

    asyncio.run(main())
    assert closed == [True]
    assert tel.count(PREDICTIONS, status=tx.STATUS_CANCELLED) == 1


def test_model_names_past_the_cap_collapse(tel: Capture) -> None:
    for i in range(generation_module._MAX_GENAI_MODELS + 6):
        list(modeltel.stream(iter("ab"), request_model=f"user-supplied-{i}"))
    requested = {p.attributes[tx.ATTR_GEN_AI_REQUEST_MODEL] for p in tel.points(DURATION)}
    assert len(requested) == generation_module._MAX_GENAI_MODELS + 1 and tx.OVERFLOW_VALUE in requested
    assert tel.count(DURATION) == generation_module._MAX_GENAI_MODELS + 6  # none lost


def test_client_side_generation(tel: Capture, clock: Clock) -> None:
    list(modeltel.stream(tokens(clock, [0.3, 0.1]), client=True))
    assert value(tel, tx.GEN_AI_CLIENT_OPERATION_DURATION.otel_name) == (1, pytest.approx(0.4))
    assert tel.points(TTFT) == [] and tel.points(TPOT) == [] and tel.points(DURATION) == []  # server-side names
    (span,) = tel.spans()
    assert span.attributes[tx.SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN] == pytest.approx(0.3)  # still on the span


def test_disabled_streams_pass_everything_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELTEL_DISABLED", "true")
    modeltel.shutdown()
    from modeltel.hotpath.telemetry import telemetry_for

    telemetry_for.cache_clear()
    try:
        assert not modeltel.telemetry().enabled
        g = modeltel.generation()
        assert list(modeltel.stream(iter("abc"), generation=g)) == ["a", "b", "c"]
        with modeltel.generation() as manual:
            manual.token()
            manual.usage(output_tokens=1)
    finally:
        telemetry_for.cache_clear()
