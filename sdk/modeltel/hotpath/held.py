"""Held spans: a prediction the sampler dropped, traced anyway and kept only if it failed or was slow.

With ``keep_slow_and_failed`` on, a prediction whose trace is not sampled still starts light spans for
itself and its stages, but they end into a :class:`SpanHold` instead of the span processors. When the
prediction ends, it either releases them (it failed, or took longer than the threshold) or forgets
them. The decision comes after the work, so a head sampler cannot take it; the spans are built anyway,
which is what the option costs (``benchmarks/overhead.py``, variant (f)).

While held, their span context says *not sampled*: context propagated to other services from inside the
prediction stays unsampled, so downstream services keep their own decision, and no exemplar names a
trace that may never be exported. A released prediction's spans reach the processors as sampled copies
(same ids, times and content; parent links sampled too) with the ``modeltel.sampling.kept`` attribute
(``error`` or ``slow``); the held spans themselves stay as they ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from .spans import FastSpan

if TYPE_CHECKING:
    from .spans import SpanFactory

KEPT_ATTRIBUTE = "modeltel.sampling.kept"
_NOT_SAMPLED = ~TraceFlags.SAMPLED & 0xFF


class SpanHold:
    """The spans of one held prediction, in the order they ended. It is a ``FastSpan``'s factory."""

    __slots__ = ("_factory", "limits", "provider", "scope", "spans", "start_fits")

    def __init__(self, factory: SpanFactory) -> None:
        self._factory = factory
        self.provider = factory.provider
        self.scope = factory.scope
        self.limits = factory.limits
        self.start_fits = factory.start_fits
        self.spans: list[FastSpan] = []

    def start(
        self,
        name: str,
        attributes: Mapping[str, Any],
        parent: SpanContext | None,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        start_time: int | None = None,
    ) -> FastSpan:
        """A held span: a child of ``parent`` when it is valid (remote, or a held span), else a new trace's root."""
        factory = self._factory
        if parent is not None and parent.is_valid:
            flags = TraceFlags(parent.trace_flags & _NOT_SAMPLED)
            trace_id, trace_state = parent.trace_id, parent.trace_state
        else:
            parent = None
            flags = TraceFlags(factory._root_flags & _NOT_SAMPLED)
            trace_id, trace_state = factory._new_trace_id(), DEFAULT_TRACE_STATE
        ids = trace_id, factory._new_span_id(), flags, trace_state
        return FastSpan(self, name, *ids, parent, attributes, kind, start_time)  # type: ignore[arg-type]

    def finish(self, span: FastSpan) -> None:
        self.spans.append(span)

    def release(self, reason: str) -> dict[FastSpan, FastSpan]:
        """Start and end, in the provider's processors, a sampled copy of each ended span, marked with
        ``reason``; each held span's copy.

        Copies, because the held spans have ended (their attributes are frozen) and their unsampled
        context may have been propagated already; each copy is started (``on_start`` sees a recording span,
        as for any span) in start order, and ended at its original's end time in end order. A span still
        open now (a stage that outlives its prediction) ends later into a hold that nobody reads: it is
        lost, as its prediction has been decided without it."""
        spans, self.spans = self.spans, []
        contexts = {s._context.span_id: _sampled(s._context) for s in spans}
        copies: dict[FastSpan, FastSpan] = {}
        for span in sorted(spans, key=lambda s: s._start_time):
            parent = span._parent
            if parent is not None:
                parent = contexts.get(parent.span_id, parent)
            copies[span] = copy = _copy(span, self._factory, contexts[span._context.span_id], parent)
            copy.set_attribute(KEPT_ATTRIBUTE, reason)
            self._factory.started(copy)
        for span in spans:
            copies[span].end(span._end_time)
        return copies


def _sampled(context: SpanContext) -> SpanContext:
    flags = TraceFlags(context.trace_flags | TraceFlags.SAMPLED)
    return SpanContext(context.trace_id, context.span_id, False, flags, context.trace_state)


def _copy(span: FastSpan, factory: SpanFactory, context: SpanContext, parent: SpanContext | None) -> FastSpan:
    """A recording span of ``factory`` with ``span``'s name, start time, attributes, events, links and status.

    The ended original's events and links (no longer appended to) are shared; its attributes are copied,
    with their dropped count."""
    limits = factory.limits
    attributes = BoundedAttributes(
        limits.max_span_attributes, span._attributes, immutable=False, max_value_len=limits.max_span_attribute_length
    )
    attributes.dropped += getattr(span._attributes, "dropped", 0)
    ids = context.trace_id, context.span_id, context.trace_flags, context.trace_state
    copy = FastSpan(factory, span._name, *ids, parent, attributes, span._kind, span._start_time)
    copy._events, copy._links, copy._status = span._events, span._links, span._status
    return copy
