"""Lightweight recording spans for modeltel's own prediction and stage spans.

An SDK span costs 25-45 µs here (sampler, attribute validation, limits, locks, self-metrics), so four
of them per prediction are most of a small model's budget. modeltel's spans carry a handful of
pre-validated attributes, shared between spans until one is changed, so this span pays for the SDK's
machinery only when it is used. It is a ``ReadableSpan`` and ends into the tracer provider's span
processors: batching, exporters and every backend see exactly what an SDK span would produce. What user
code adds is cleaned and bounded as the SDK does (``BoundedAttributes``, ``BoundedList``, the provider's
``SpanLimits``). Spans of other instrumentations keep using the SDK.

What it must not drop is the SDK's span model (``Tracer.start_span`` and ``Span.end``): the new context
copies the parent's (or the sampler's) ``tracestate`` and the W3C random flag, an explicit OK status is
final, processors see ``_on_ending`` before ``on_end``, a span ends once (whichever thread ends it) and
nothing changes after. ``tests/test_spans.py`` runs scenarios (limits from ``OTEL_SPAN_*_LIMIT``
included) through both span types and compares what they export, field by field. The processor chain is a private
attribute of the SDK's provider: where it is missing, :meth:`SpanFactory.for_provider` says so once and
modeltel starts SDK spans instead.
"""

from __future__ import annotations

import functools
import logging
import random
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from .admission import TraceAdmission

_log = logging.getLogger("modeltel")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SAMPLED_RANDOM = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_UNSET = Status(StatusCode.UNSET)
_RANDOM = TraceFlags.RANDOM_TRACE_ID
_SAMPLED_BIT = TraceFlags.SAMPLED
_tuple_new = tuple.__new__
# A SpanContext is a tuple (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid): the light
# spans read and build it as one, without its properties and its Python __new__ (1-2 µs a span). Checked
# here; an API where it is laid out otherwise gets SDK spans instead (SpanFactory.for_provider).
_probe = SpanContext(3, 5, True, _SAMPLED, TraceState([("k", "v")]))
CONTEXT_IS_TUPLE = (
    tuple(_probe) == (3, 5, True, _SAMPLED, _probe.trace_state, True)
    and _tuple_new(SpanContext, tuple(_probe)) == _probe
)
_fallback_warned = False
# Held by every change of a FastSpan for its check-and-set, and by the end of a changed one (see
# FastSpan.end); re-entrant, as attribute cleaning may log, and a logging handler may write to a span.
_lock = threading.RLock()


class SpanFactory:
    """Starts :class:`FastSpan` objects for one SDK tracer provider and ends them into its processors."""

    @classmethod
    def for_provider(cls, provider: TracerProvider, scope: InstrumentationScope) -> SpanFactory | None:
        """A factory, or None (with one warning per process) when this SDK lacks the private processor
        chain the light spans end into: the caller then starts SDK spans, which are slower but complete."""
        global _fallback_warned
        processor = getattr(provider, "_active_span_processor", None)
        if (
            processor is not None
            and callable(getattr(processor, "_on_ending", None))
            and CONTEXT_IS_TUPLE
            and getattr(provider, "_resource", None) is provider.resource
        ):
            return cls(provider, scope, processor)
        if not _fallback_warned:
            _fallback_warned = True
            _log.warning(
                "modeltel: this OpenTelemetry SDK's TracerProvider has no _active_span_processor with "
                "_on_ending or no _resource, or its SpanContext is not the 6-tuple modeltel reads; modeltel's "
                "spans use the SDK tracer instead (correct, but slower)"
            )
        return None

    def __init__(self, provider: TracerProvider, scope: InstrumentationScope, processor: Any) -> None:
        self.provider = provider
        self.scope = scope
        self._new_span_id = provider.id_generator.generate_span_id
        self._new_trace_id = provider.id_generator.generate_trace_id
        # the default generator's ids are getrandbits(64 / 128), never zero: the C call, without its frame
        default_ids = type(provider.id_generator) is RandomIdGenerator
        self._span_bits = functools.partial(random.getrandbits, 64) if default_ids else self._new_span_id
        self._trace_bits = functools.partial(random.getrandbits, 128) if default_ids else self._new_trace_id
        self._root_flags = _SAMPLED_RANDOM if provider.id_generator.is_trace_id_random() else _SAMPLED
        sampler = provider.sampler
        # Children of a sampled parent are sampled without asking when the sampler is the default
        # parent-based one; anything else (a renamed private attribute included) is asked every time.
        self._trust_parent = isinstance(sampler, ParentBased) and all(
            getattr(sampler, attr, None) is ALWAYS_ON for attr in ("_local_parent_sampled", "_remote_parent_sampled")
        )
        # Likewise a root, under the default parent-based sampler with ALWAYS_ON at the root: ALWAYS_ON samples
        # with the given attributes and the current span's trace state, which an invalid span does not have.
        self._trust_root = isinstance(sampler, ParentBased) and getattr(sampler, "_root", None) is ALWAYS_ON
        self._sampler = sampler
        self._processor = processor  # the provider's own multi-processor: it sees processors added later
        # its processors' hooks, called directly (see _hooks); rebuilt whenever a processor is added
        self._chain = processor if type(processor) is SynchronousMultiSpanProcessor else None
        self._bound: tuple[Any, tuple, tuple] = (None, (), ())
        # the provider's limits (OTEL_SPAN_*_LIMIT); its attribute is private, so else read from the environment
        limits = self.limits = getattr(provider, "_span_limits", None) or SpanLimits()
        # how many start attributes a span shares as they are (more, or a length limit: it bounds a copy)
        self.start_fits = sys.maxsize if limits.max_span_attributes is None else limits.max_span_attributes
        if limits.max_span_attribute_length is not None:
            self.start_fits = -1
        # raised by the span processor when its buffer is past its high-water mark (see .admission)
        self.admission = TraceAdmission()

    def shed_with(self, admission: TraceAdmission) -> None:
        """Shed new traces while ``admission`` says so (the pipeline's span processor owns it)."""
        self.admission = admission

    def start(
        self,
        name: str,
        attributes: Mapping[str, Any],
        parent: SpanContext | None,
        *,
        outermost: bool = False,
        kind: SpanKind = SpanKind.INTERNAL,
        start_time: int | None = None,
    ) -> FastSpan | None:
        """A recording span, or None when the sampler drops it (or only records it: such a span is never
        exported, and modeltel's metrics do not need it), or when it would be the ``outermost`` modeltel
        span of a trace while the span buffer is overloaded (the trace is shed whole, and counted).
        An invalid ``parent`` is the current context's (a root under it); None: a root, whatever is current.
        ``start_time``: unix ns, default now."""
        if parent is not None and parent[5]:  # is_valid (a SpanContext is a tuple: see CONTEXT_IS_TUPLE)
            trace_id, _, _, parent_flags, trace_state, _ = parent
            flags = _SAMPLED_RANDOM if parent_flags & _RANDOM else _SAMPLED
            if not (self._trust_parent and parent_flags & _SAMPLED_BIT):
                result = self._sampler.should_sample(None, trace_id, name, kind, attributes)
                if not result.decision.is_sampled():
                    return None
                attributes, trace_state = result.attributes, result.trace_state
        else:
            trace_id = self._trace_bits() or self._new_trace_id()
            flags = self._root_flags
            if parent is not None and self._trust_root:  # ``parent``: the current context's, and no valid span
                trace_state = DEFAULT_TRACE_STATE  # what ALWAYS_ON answers there: sampled, nothing added
            else:
                result = self._sampler.should_sample(None, trace_id, name, kind, attributes)
                if not result.decision.is_sampled():
                    return None
                attributes, trace_state = result.attributes, result.trace_state
            parent = None
        if outermost and self.admission.shedding:
            self.admission.count("overload")
            return None
        if trace_state is None:  # a sampler's "none": SpanContext's default, as its __new__ gives it
            trace_state = DEFAULT_TRACE_STATE
        span_id = self._span_bits() or self._new_span_id()  # (a zero from the bits: the generator's loop)
        span = FastSpan(self, name, trace_id, span_id, flags, trace_state, parent, attributes, kind, start_time)
        bound = self._bound
        if bound[1] or self._chain is None or self._chain._span_processors is not bound[0]:
            self.started(span)  # (else no processor of the current set has an on_start: nothing to call)
        return span

    def started(self, span: FastSpan) -> None:
        """Hand a started span to the processors' ``on_start``."""
        chain = self._chain
        if chain is None:
            self._processor.on_start(span)
            return
        bound = self._bound
        if chain._span_processors is not bound[0]:
            bound = self._hooks(chain._span_processors)
        for on_start in bound[1]:
            on_start(span, parent_context=None)

    def finish(self, span: FastSpan) -> None:
        """Hand an ended span to the processors: every ``_on_ending``, then every ``on_end``
        (:meth:`FastSpan.end` does the same with the current hooks without calling this)."""
        chain = self._chain
        if chain is None:
            self._processor._on_ending(span)
            self._processor.on_end(span)
            return
        bound = self._bound
        if chain._span_processors is not bound[0]:
            bound = self._hooks(chain._span_processors)
        for hook in bound[2]:
            hook(span)

    def _hooks(self, processors: tuple[SpanProcessor, ...]) -> tuple[Any, tuple, tuple]:
        """Bind the hooks of the provider's synchronous multi-processor once per set of processors (it
        replaces its tuple when one is added), leaving out the base class's empty ``on_start`` and
        ``_on_ending``: what its loops would call, in the same order, less the calls that do nothing.
        (processors, on_start hooks, end hooks: every ``_on_ending``, then every ``on_end``); one tuple,
        replaced whole, so that a thread never reads hooks of two different sets."""
        self._bound = bound = (
            processors,
            tuple(p.on_start for p in processors if _does_something(p.on_start, SpanProcessor.on_start)),
            (
                *(p._on_ending for p in processors if _does_something(p._on_ending, SpanProcessor._on_ending)),
                *(p.on_end for p in processors),
            ),
        )
        return bound


class _BuiltOnRead:
    """``FastSpan._context``, built from the span's fields when first read, then kept in the instance (which
    this non-data descriptor yields to): a span waiting in the export buffer is one object for the garbage
    collector to scan, not two (a ``SpanContext``, a tuple subclass, stays tracked). Built as
    ``SpanContext(trace_id, span_id, False, flags, trace_state)``, without its Python ``__new__`` (our ids
    are valid); two threads reading it first build equal contexts, and either is kept."""

    def __get__(self, span: FastSpan | None, owner: type | None = None) -> Any:
        if span is None:
            return self
        ids = span._trace_id, span._span_id, False, span._flags, span._trace_state, True
        ctx = span._context = _tuple_new(SpanContext, ids)
        return ctx


class FastSpan(trace_api.Span, ReadableSpan):
    """A recording span that is its own ``ReadableSpan`` once ended.

    It fills the fields ``ReadableSpan`` reads (its context when first read), so processors and exporters
    take it as it is. It keeps the SDK span's rules at less cost: the provider's ``SpanLimits`` (applied to
    what is added, and to start attributes only when they exceed a limit), events and links in a
    ``BoundedList`` made on the first one, one end, and nothing changes after it (a change is ignored with
    the SDK's warning). Instead of a lock per span, every change takes one module-wide lock for its
    check-and-set, and ``end`` claims the span atomically (:meth:`end`): two threads ending a span export
    it once, and an attribute set while another thread ends it lands before the end or not at all.
    """

    _changed = False  # set (on the instance) by the first change: see end()
    # what every span starts with, read from the class until a change sets the instance's own (one store
    # less each per span): the kind, no events or links (a BoundedList from the first one), UNSET status,
    # not ended, and the deprecated instrumentation info exporters no longer read
    _kind, _status = SpanKind.INTERNAL, _UNSET
    _events: Sequence[Event] = ()
    _links: Sequence[Link] = ()
    _end_time: int | None = None
    _instrumentation_info = None
    _trace_state = DEFAULT_TRACE_STATE  # (shared; stored when another)
    _context = _BuiltOnRead()  # from the ids, flags and trace state

    def __init__(
        self,
        factory: SpanFactory,
        name: str,
        trace_id: int,
        span_id: int,
        flags: TraceFlags,
        trace_state: TraceState,
        parent: SpanContext | None,
        attributes: Mapping,
        kind: SpanKind = SpanKind.INTERNAL,
        start_time: int | None = None,
    ) -> None:
        self._factory = factory
        self._name = name
        self._trace_id = trace_id
        self._span_id = span_id
        self._flags = flags  # (its own: read for every span, where a class attribute's read is slower)
        if trace_state is not DEFAULT_TRACE_STATE:
            self._trace_state = trace_state
        self._parent = parent
        if kind is not SpanKind.INTERNAL:
            self._kind = kind
        self._attributes = attributes  # shared, read-only until the first set_attribute copies it
        # the provider's current resource (a forked worker's is replaced), without its property's call
        self._resource = factory.provider._resource
        self._instrumentation_scope = factory.scope
        self._open = True  # deleted by the one end() that ends it (see end)
        self._start_time = start_time if start_time is not None else time_ns()
        if len(attributes) > factory.start_fits:
            self._own_attributes()
            self._changed = True

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def _own_attributes(self) -> BoundedAttributes:
        """The span's attributes as its own ``BoundedAttributes`` (the shared start dict is copied once)."""
        attrs = self._attributes
        if type(attrs) is not BoundedAttributes:
            limits = self._factory.limits
            attrs = self._attributes = BoundedAttributes(
                limits.max_span_attributes, attrs, immutable=False, max_value_len=limits.max_span_attribute_length
            )
        return attrs

    def set_attribute(self, key: str, value: Any) -> None:
        with _lock:
            if self._changing():
                self._own_attributes()[key] = value
                return
        _log.warning("Setting attribute on ended span.")

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        with _lock:
            if self._changing():
                attrs = self._own_attributes()
                for key, value in attributes.items():
                    attrs[key] = value
                return
        _log.warning("Setting attribute on ended span.")

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        limits = self._factory.limits
        attrs = BoundedAttributes(
            limits.max_event_attributes, attributes, immutable=True, max_value_len=limits.max_attribute_length
        )
        event = Event(name, attrs, timestamp)
        with _lock:
            if self._changing():
                if type(self._events) is tuple:
                    self._events = BoundedList(limits.max_events)
                self._events.append(event)
                return
        _ended("add_event")

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if not (context and (context.is_valid or attributes or context.trace_state)):  # the SDK's rule
            return
        limits = self._factory.limits
        attrs = BoundedAttributes(
            limits.max_link_attributes, attributes, immutable=True, max_value_len=limits.max_attribute_length
        )
        with _lock:
            if self._changing():
                if type(self._links) is tuple:
                    self._links = BoundedList(limits.max_links)
                self._links.append(Link(context, attrs))
                return
        _ended("add_link")

    def update_name(self, name: str) -> None:
        with _lock:
            if self._changing():
                self._name = name
                return
        _ended("update_name")

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """The SDK's rule: OK is final, UNSET is ignored, and a description goes with a StatusCode only."""
        given = isinstance(status, Status)
        if (status.status_code if given else status) is StatusCode.UNSET:
            new = None
        else:
            new = status if given else Status(status, description)
        with _lock:
            ended = not self._changing()
            if ended or new is None or self._status.status_code is StatusCode.OK:
                new = None
            else:
                self._status = new
        if ended:
            _ended("set_status")
        elif new is not None and given and description is not None:
            _log.warning("Description %s ignored. Use either `Status` or `(StatusCode, Description)`", description)

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

    def _changing(self) -> bool:
        """Under ``_lock``: mark the span changed (so that ``end`` waits for this change) and say whether it
        is still open to changes."""
        self._changed = True
        return self._end_time is None

    def end(self, end_time: int | None = None) -> None:
        """End once, whichever threads call it; then nothing changes.

        The claim is deleting the ``_open`` attribute, not a lock: one C-level store (no Python code runs in
        it, so another thread's delete of the same attribute fails), and no container per span to keep
        for the collector. A span nothing changed (most) ends without a lock. A change marks the span
        under ``_lock`` before it checks the end time, and ``end`` reads that mark after it has set the end
        time, so either the change sees the span ended, or ``end`` sees the mark and waits on the lock for
        the change to finish before freezing and exporting. The processors' hooks are called here, as
        :meth:`SpanFactory.finish` would, while its set of processors is the one they were bound for.
        """
        try:
            del self._open
        except AttributeError:
            _log.warning("Calling end() on an ended span.")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        if self._changed:
            with _lock:
                if type(self._attributes) is BoundedAttributes:
                    self._attributes._immutable = True  # as the SDK's Span.end does
        factory = self._factory
        if type(factory) is SpanFactory:
            chain, bound = factory._chain, factory._bound
            if chain is not None and chain._span_processors is bound[0]:
                for hook in bound[2]:
                    hook(self)
                return
        factory.finish(self)


def _does_something(hook: Any, empty: Any) -> bool:
    """Whether a processor's bound ``hook`` is other than the base class's ``empty`` one."""
    return getattr(hook, "__func__", None) is not empty


def _ended(method: str) -> None:
    _log.warning("Tried calling %s on an ended span.", method)
