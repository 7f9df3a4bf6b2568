"""Lightweight recording spans for modeltel's own prediction and stage spans.

An SDK span costs 25-45 µs here (sampler, attribute validation, limits, locks, self-metrics), so four
of them per prediction are most of a small model's budget. modeltel's spans carry a handful of
pre-validated attributes, so this span keeps only what a span needs. It is a ``ReadableSpan`` and
ends into the tracer provider's span processors: batching, exporters and every backend see exactly
what an SDK span would produce. Attributes set later by user code are cleaned
with OpenTelemetry's own validator. Spans of other instrumentations keep using the SDK.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

_SAMPLED = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_UNSET = Status(StatusCode.UNSET)


class SpanFactory:
    """Starts :class:`FastSpan` objects for one SDK tracer provider and ends them into its processors."""

    def __init__(self, provider: TracerProvider, scope: InstrumentationScope) -> None:
        self.provider = provider
        self.scope = scope
        self._new_span_id = provider.id_generator.generate_span_id
        self._new_trace_id = provider.id_generator.generate_trace_id
        sampler = provider.sampler
        # Children of a sampled parent are sampled without asking when the sampler is the default
        # parent-based one; anything else is asked every time, as the SDK would.
        self._trust_parent = isinstance(sampler, ParentBased) and getattr(sampler, "_local_parent_sampled", None) in (
            ALWAYS_ON,
            None,
        )
        self._sampler = sampler
        # The provider's own multi-processor sees processors added at any time; it is private, so fall
        # back to nothing rather than break if a future SDK renames it.
        self._processor = getattr(provider, "_active_span_processor", None)

    def start(self, name: str, attributes: Mapping[str, Any], parent: SpanContext | None) -> FastSpan | None:
        """A recording span, or None when the sampler drops it."""
        if parent is not None and parent.is_valid:
            trace_id = parent.trace_id
            trusted = self._trust_parent and parent.trace_flags.sampled
            if not trusted and not self._sample(trace_id, name, attributes):
                return None
        else:
            parent = None
            trace_id = self._new_trace_id()
            if not self._sample(trace_id, name, attributes):
                return None
        context = SpanContext(trace_id, self._new_span_id(), False, _SAMPLED)
        span = FastSpan(self, name, context, parent, attributes)
        if self._processor is not None:
            self._processor.on_start(span)
        return span

    def _sample(self, trace_id: int, name: str, attributes: Mapping[str, Any]) -> bool:
        result = self._sampler.should_sample(None, trace_id, name, SpanKind.INTERNAL, attributes)
        return result.decision.is_sampled()

    def finish(self, span: FastSpan) -> None:
        if self._processor is not None:
            self._processor.on_end(span)


class FastSpan(trace_api.Span, ReadableSpan):
    """A recording span with no limits machinery that is its own ``ReadableSpan`` once ended.

    It fills the same fields ``ReadableSpan`` reads, so processors and exporters take it as it is.
    """

    def __init__(
        self, factory: SpanFactory, name: str, context: SpanContext, parent: SpanContext | None, attributes: Mapping
    ) -> None:
        self._factory = factory
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = SpanKind.INTERNAL
        self._attributes = attributes  # shared, read-only until the first set_attribute copies it
        self._events: Sequence[Event] = ()
        self._links: Sequence[Link] = ()
        self._status = _UNSET
        self._resource = factory.provider.resource
        self._instrumentation_scope = factory.scope
        self._instrumentation_info = None
        self._end_time: int | None = None
        self._start_time = time_ns()

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def _own_attributes(self) -> BoundedAttributes:
        if not isinstance(self._attributes, BoundedAttributes):
            self._attributes = BoundedAttributes(attributes=self._attributes, immutable=False)
        return self._attributes

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end_time is None:
            self._own_attributes()[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end_time is None:
            attrs = self._own_attributes()
            for key, value in attributes.items():
                attrs[key] = value

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        if self._end_time is None:
            event = Event(name, BoundedAttributes(attributes=attributes), timestamp or time_ns())
            self._events = (*self._events, event)

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if self._end_time is None and context.is_valid:
            self._links = (*self._links, Link(context, BoundedAttributes(attributes=attributes)))

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is None:
            self._status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        cls = type(exception)
        module = cls.__module__
        attrs = {
            "exception.type": f"{module}.{cls.__qualname__}" if module and module != "builtins" else cls.__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
            **(attributes or {}),
        }
        self.add_event("exception", attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            return
        self._end_time = end_time or time_ns()
        self._factory.finish(self)
