"""What the light spans' shortcuts must keep: OpenTelemetry's current context as its API would set it, the
processors' hooks in their order (processors added later included), and SpanContexts equal to built ones."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from modeltel import config
from modeltel import taxonomy as tx
from modeltel.hotpath import Telemetry, otelctx
from modeltel.hotpath.recorders import SdkRecorder
from modeltel.hotpath.spans import SpanFactory


class _Calls(SpanProcessor):
    """Records each hook it gets, tagged with its name, into a shared list."""

    def __init__(self, name: str, calls: list[tuple[str, str, str]], *, starts: bool = True) -> None:
        self.name, self.calls = name, calls
        if not starts:  # the base class's empty on_start: the factory may skip it, the result is the same
            self.on_start = SpanProcessor.on_start.__get__(self)  # type: ignore[method-assign]

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.calls.append((self.name, "on_start", span.name))

    def _on_ending(self, span: Any) -> None:
        self.calls.append((self.name, "_on_ending", span.name))

    def on_end(self, span: Any) -> None:
        self.calls.append((self.name, "on_end", span.name))


def _telemetry(provider: TracerProvider) -> Telemetry:
    settings = config.load({}, model_name="m", model_version="1")
    recorder = SdkRecorder(MeterProvider().get_meter(tx.METER_NAME), settings.bucket_overrides)
    factory = SpanFactory.for_provider(provider, InstrumentationScope(tx.TRACER_NAME))
    assert factory is not None
    return Telemetry(settings, recorder, provider, factory)


def test_a_stage_makes_its_span_current_as_opentelemetry_would_and_restores_the_very_context_before() -> None:
    t = _telemetry(TracerProvider())
    token = otel_context.attach(baggage.set_baggage("tenant", "a"))
    try:
        before = otel_context.get_current()
        with t.prediction() as p, t.stage("inference") as st:
            assert trace.get_current_span() is st._span
            assert otelctx.current_span_context() == st._span.get_span_context()
            expected = trace.set_span_in_context(st._span, p._otel_ctx)
            assert otel_context.get_current() == expected  # the same keys and values: baggage kept
            assert baggage.get_baggage("tenant") == "a"
        assert otel_context.get_current() is before
    finally:
        otel_context.detach(token)


def test_detaching_a_foreign_token_is_logged_as_opentelemetry_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    import contextvars

    token = contextvars.ContextVar("other").set(1)
    with caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
        otelctx.detach(token)
    assert "Failed to detach context" in caplog.text


def test_every_processor_gets_its_hooks_in_order_including_one_added_after_spans_were_made() -> None:
    provider, calls = TracerProvider(), []
    provider.add_span_processor(_Calls("a", calls))
    provider.add_span_processor(_Calls("b", calls, starts=False))
    t = _telemetry(provider)
    with t.stage("first"):
        pass
    assert calls == [
        ("a", "on_start", "first"),
        ("a", "_on_ending", "first"),
        ("b", "_on_ending", "first"),
        ("a", "on_end", "first"),
        ("b", "on_end", "first"),
    ]
    calls.clear()
    provider.add_span_processor(_Calls("c", calls))
    with t.stage("second"):
        pass
    assert [(who, hook) for who, hook, _ in calls] == [
        ("a", "on_start"),
        ("c", "on_start"),
        ("a", "_on_ending"),
        ("b", "_on_ending"),
        ("c", "_on_ending"),
        ("a", "on_end"),
        ("b", "on_end"),
        ("c", "on_end"),
    ]


class _NoState(Sampler):
    """Samples everything and says nothing about the trace state (None), as a custom sampler may."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE, None, None)

    def get_description(self) -> str:
        return "no-state"


def test_span_contexts_equal_the_ones_spancontext_builds_and_a_sampler_s_none_state_is_the_default() -> None:
    t = _telemetry(TracerProvider(sampler=_NoState()))
    with t.prediction() as p, t.stage("inference") as st:
        for span in (p._span, st._span):
            ctx = span.get_span_context()
            built = SpanContext(ctx.trace_id, ctx.span_id, False, ctx.trace_flags, ctx.trace_state)
            assert ctx == built and ctx.is_valid and ctx.trace_flags.sampled
            assert ctx.trace_state is DEFAULT_TRACE_STATE
        assert st._span.parent == p._span.get_span_context()
