"""Held spans: a prediction the sampler dropped, traced anyway and kept only if it failed or was slow.

With ``keep_slow_and_failed`` on, a prediction whose trace is not sampled still starts light spans for
itself and its stages, but they end into a :class:`SpanHold` instead of the span processors. When the
prediction ends, it either releases them (it failed, or took longer than the threshold) or forgets
them. The decision comes after the work, so a head sampler cannot take it; the spans are built anyway,
which is what the option costs (``benchmarks/overhead.py``, variant (f)).

While held, their span context says *not sampled*: context propagated to other services from inside the
prediction stays unsampled, so downstream services keep their own decision, and no exemplar names a
trace that may never be exported. Released spans get the sampled flag (their parent links too) and the
``modeltel.sampling.kept`` attribute (``error`` or ``slow``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanContext, TraceFlags

from .spans import FastSpan

if TYPE_CHECKING:
    from .spans import SpanFactory

KEPT_ATTRIBUTE = "modeltel.sampling.kept"
_NOT_SAMPLED = ~TraceFlags.SAMPLED & 0xFF


class SpanHold:
    """The spans of one held prediction, in the order they ended. It is a ``FastSpan``'s factory."""

    __slots__ = ("_factory", "provider", "scope", "spans")

    def __init__(self, factory: SpanFactory) -> None:
        self._factory = factory
        self.provider = factory.provider
        self.scope = factory.scope
        self.spans: list[FastSpan] = []

    def start(self, name: str, attributes: Mapping[str, Any], parent: SpanContext | None) -> FastSpan:
        """A held span: a child of ``parent`` when it is valid (remote, or a held span), else a new trace's root."""
        factory = self._factory
        if parent is not None and parent.is_valid:
            flags = TraceFlags(parent.trace_flags & _NOT_SAMPLED)
            context = SpanContext(parent.trace_id, factory._new_span_id(), False, flags, parent.trace_state)
        else:
            parent = None
            flags = TraceFlags(factory._root_flags & _NOT_SAMPLED)
            context = SpanContext(factory._new_trace_id(), factory._new_span_id(), False, flags)
        return FastSpan(self, name, context, parent, attributes)  # type: ignore[arg-type]

    def finish(self, span: FastSpan) -> None:
        self.spans.append(span)

    def release(self, reason: str) -> None:
        """Hand the ended spans to the provider's processors as sampled spans marked with ``reason``.

        A span still open now (a stage that outlives its prediction) ends later into a hold that nobody
        reads: it is lost, as its prediction has been decided without it."""
        spans, self.spans = self.spans, []
        sampled = {
            s._context.span_id: SpanContext(
                s._context.trace_id,
                s._context.span_id,
                False,
                TraceFlags(s._context.trace_flags | TraceFlags.SAMPLED),
                s._context.trace_state,
            )
            for s in spans
        }
        processor = self._factory._processor
        for span in sorted(spans, key=lambda s: s._start_time):
            span._context = sampled[span._context.span_id]
            if span._parent is not None and span._parent.span_id in sampled:
                span._parent = sampled[span._parent.span_id]
            span._own_attributes()[KEPT_ATTRIBUTE] = reason
            processor.on_start(span)
        for span in spans:
            processor._on_ending(span)
            processor.on_end(span)
