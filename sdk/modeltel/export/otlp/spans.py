"""OTLP ``ExportTraceServiceRequest`` bytes from ``ReadableSpan``s, in one pass and without messages.

Why it is fast: the parts that repeat are encoded once and reused. A resource and a scope are encoded
once per object; a modeltel span's attributes (one shared, read-only dict per model and stage) once per
dict; any other attribute whose value is a string is encoded once per key and value; span names, kinds,
statuses and flags come from small tables. What remains per span is one ``struct.pack`` for the ids, one
``struct.pack`` for the times and one join.

It writes the same fields the upstream ``encode_spans`` writes, with the same choices (flags carry the
parent's is-remote bit, links carry no trace state, an unset status is an empty message), so both decode
to equal messages; ``tests/test_otlp_encoder.py`` checks that over a corpus of span shapes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from ...hotpath.spans import CONTEXT_IS_TUPLE, FastSpan
from . import wire

_CACHE_LIMIT = 4096  # distinct attribute pairs / names kept; cleared (not evicted one by one) beyond it
_TIMES = struct.Struct("<BQBQ").pack  # start_time_unix_nano (7) and end_time_unix_nano (8), fixed64
# trace_id (1, 16 bytes) and span_id (2, 8 bytes), big-endian as int.to_bytes gives them, in one pack; with
# parent_span_id (4) too when no trace_state (3) comes between them (fields are written in number order)
_IDS = struct.Struct(">HQQHQ").pack
_IDS_PARENT = struct.Struct(">HQQHQHQ").pack
_TRACE_TAG, _SPAN_TAG, _PARENT_TAG = 0x0A10, 0x1208, 0x2208  # field tag, then length 16 / 8 / 8
_LOW64 = (1 << 64) - 1
_KIND = [b"\x30" + wire.varint(kind.value + 1) for kind in sorted(SpanKind, key=lambda k: k.value)]  # proto = SDK + 1
_FLAGS_LOCAL = b"\x85\x01" + struct.pack("<I", 0x100)  # field 16, fixed32: SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE
_FLAGS_REMOTE = b"\x85\x01" + struct.pack("<I", 0x300)  # ... and SPAN_FLAGS_CONTEXT_IS_REMOTE
_LINK_FLAGS_LOCAL = b"\x35" + struct.pack("<I", 0x100)  # Link.flags is field 6
_LINK_FLAGS_REMOTE = b"\x35" + struct.pack("<I", 0x300)


class SpanEncoder:
    """Encodes span batches; keeps the caches between batches, one encoder per exporter.

    The caches are plain dicts, bounded by clearing: a race between two threads costs a cache miss, never
    wrong bytes, since every entry is keyed by what it encodes (an identity key holds its object alive).
    """

    def __init__(self) -> None:
        self._attr: dict[tuple[str, str], bytes] = {}
        self._names: dict[str, bytes] = {}
        self._status: dict[Any, bytes] = {}
        self._groups: dict[int, tuple[Any, tuple[bytes, bytes]]] = {}  # id(resource or scope) -> (object, its bytes)
        self._blocks: dict[int, tuple[Mapping[str, Any], bytes]] = {}  # id(shared attributes) -> (them, bytes)
        self._texts: dict[tuple, bytes] = {}  # the (key, value) pairs of a read-only view -> their bytes

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The serialised ``ExportTraceServiceRequest`` for ``spans``, grouped by resource, then scope."""
        tree: dict[tuple[bytes, bytes], dict[tuple[bytes, bytes], list[bytes]]] = {}
        last: tuple[Any, Any, list[bytes]] = (None, None, [])
        for span in spans:
            if type(span) is FastSpan:  # ReadableSpan's properties, which return these fields
                res_obj, sc_obj = span._resource, span._instrumentation_scope or None
            else:
                res_obj, sc_obj = span.resource, span.instrumentation_scope or None
            if res_obj is not last[0] or sc_obj is not last[1]:  # batches are mostly one resource, one scope
                res = self._part(res_obj, _resource_part)
                sc = self._part(sc_obj, _scope_part)
                last = (res_obj, sc_obj, tree.setdefault(res, {}).setdefault(sc, []))
            last[2].append(self.span(span))
        out = []
        for (res_head, res_tail), scopes in tree.items():
            body = [res_head]
            body += [wire.field_bytes(2, b"".join((head, *encoded, tail))) for (head, tail), encoded in scopes.items()]
            body.append(res_tail)
            out.append(wire.field_bytes(1, b"".join(body)))
        return b"".join(out)

    def _part(self, obj: Any, encode: Any) -> tuple[bytes, bytes]:
        entry = self._groups.get(id(obj))
        if entry is None or entry[0] is not obj:
            if len(self._groups) > _CACHE_LIMIT:
                self._groups.clear()
            entry = self._groups[id(obj)] = (obj, encode(obj))
        return entry[1]

    def span(self, span: ReadableSpan) -> bytes:
        """The ``Span`` field (tag, length, payload) for one span."""
        reads_fields = _READS_FIELDS.get(type(span))
        if reads_fields is None:
            reads_fields = _reads_fields(type(span))
        if not reads_fields:
            span = _plain(span)
        parent = span._parent
        if type(span) is FastSpan:  # the fields its context is built from (it is built only when read)
            trace_id, span_id, trace_state = span._trace_id, span._span_id, span._trace_state
        elif CONTEXT_IS_TUPLE:  # its fields without a property call each (hotpath.spans checks the layout)
            trace_id, span_id, _, _, trace_state, _ = span._context
        else:
            ctx = span._context
            trace_id, span_id, trace_state = ctx.trace_id, ctx.span_id, ctx.trace_state
        high, low = trace_id >> 64, trace_id & _LOW64
        if trace_state:
            parts = [_IDS(_TRACE_TAG, high, low, _SPAN_TAG, span_id)]
            parts.append(wire.field_str(3, ",".join(f"{k}={v}" for k, v in trace_state.items())))
            if parent is not None:
                parts.append(_parent_field(parent))
        elif parent is not None:
            parent_id = parent[1] if CONTEXT_IS_TUPLE else parent.span_id
            parts = [_IDS_PARENT(_TRACE_TAG, high, low, _SPAN_TAG, span_id, _PARENT_TAG, parent_id)]
        else:
            parts = [_IDS(_TRACE_TAG, high, low, _SPAN_TAG, span_id)]
        name = self._names.get(span._name)
        if name is None:
            name = self._cached(self._names, span._name, wire.field_str(5, span._name))
        parts += (name, _KIND[span._kind._value_])
        start, end = span._start_time, span._end_time
        if start and end:
            parts.append(_TIMES(0x39, start, 0x41, end))
        else:
            parts += (wire.field_fixed64(7, start), wire.field_fixed64(8, end))
        attrs = span._attributes
        kind = type(attrs)
        if kind is dict and type(span) is FastSpan:  # shared and read-only, by FastSpan's contract
            block = self._blocks.get(id(attrs))
            parts.append(block[1] if block is not None and block[0] is attrs else self._block(attrs))
        elif kind is MappingProxyType:  # a sampler's read-only view (of the shared dict, for modeltel's roots)
            key = tuple(attrs.items())
            block = self._texts.get(key)
            parts.append(block if block is not None else self._text_block(key, attrs))
        elif attrs:
            parts.append(self._attributes(9, attrs))
        if kind is not dict and kind is not MappingProxyType and getattr(attrs, "dropped", 0):
            parts.append(wire.field_varint(10, attrs.dropped))
        events, links = span._events, span._links
        if events:
            parts += [wire.field_bytes(11, self._event(e)) for e in events]
        if type(events) is not tuple and getattr(events, "dropped", 0):
            parts.append(wire.field_varint(12, events.dropped))
        if links:
            parts += [wire.field_bytes(13, self._link(link)) for link in links]
        if type(links) is not tuple and getattr(links, "dropped", 0):
            parts.append(wire.field_varint(14, links.dropped))
        status = span._status
        encoded = self._status.get(status)  # by identity: most spans share the SDK's few Status objects
        parts.append(encoded if encoded is not None else self._status_field(status))
        remote = parent is not None and (parent[2] if CONTEXT_IS_TUPLE else parent.is_remote)
        parts.append(_FLAGS_REMOTE if remote else _FLAGS_LOCAL)
        body = b"".join(parts)
        return b"\x12" + wire.length(len(body)) + body

    def _block(self, attrs: Mapping[str, Any]) -> bytes:
        """Encode a modeltel span's shared attribute dict once; the entry keeps it alive, so its id stays its."""
        block = self._attributes(9, attrs)
        self._cached(self._blocks, id(attrs), (attrs, block))
        return block

    def _text_block(self, key: tuple, attrs: Mapping[str, Any]) -> bytes:
        """Encode a read-only view; remember it by content only when every value is a string, since a
        string never equals a value of another type (``True == 1 == 1.0`` would mix up their bytes)."""
        block = self._attributes(9, attrs)
        if all(type(value) is str for _, value in key):
            self._cached(self._texts, key, block)
        return block

    def _attributes(self, field: int, attrs: Mapping[str, Any]) -> bytes:
        cache = self._attr if field == 9 else None
        out = []
        for key, value in attrs.items():
            if cache is not None and type(value) is str:
                encoded = cache.get((key, value))
                if encoded is None:
                    encoded = self._cached(cache, (key, value), wire.field_bytes(field, wire.key_value(key, value)))
                out.append(encoded)
                continue
            try:
                out.append(wire.field_bytes(field, wire.key_value(key, value)))
            except TypeError:
                continue
        return b"".join(out)

    def _event(self, event: Any) -> bytes:
        return (
            wire.field_fixed64(1, event.timestamp)
            + wire.field_str(2, event.name)
            + self._attributes(3, event.attributes or {})
            + wire.field_varint(4, event.dropped_attributes)
        )

    def _link(self, link: Any) -> bytes:
        ctx = link.context
        return (
            wire.field_bytes(1, ctx.trace_id.to_bytes(16, "big"))
            + wire.field_bytes(2, ctx.span_id.to_bytes(8, "big"))
            + self._attributes(4, link.attributes or {})
            + wire.field_varint(5, link.dropped_attributes)
            + (_LINK_FLAGS_REMOTE if ctx.is_remote else _LINK_FLAGS_LOCAL)
        )

    def _status_field(self, status: Any) -> bytes:
        payload = wire.field_str(2, status.description) + wire.field_varint(3, status.status_code.value)
        return self._cached(self._status, status, wire.field_bytes(15, payload))

    @staticmethod
    def _cached(cache: dict, key: Any, value: Any) -> Any:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value
        return value


def _parent_field(parent: Any) -> bytes:
    """``parent_span_id`` alone (after a trace state)."""
    return b"\x22\x08" + (parent[1] if CONTEXT_IS_TUPLE else parent.span_id).to_bytes(8, "big")


def _resource_part(res: Any) -> tuple[bytes, bytes]:
    """``ResourceSpans.resource`` (always written, even empty) and ``schema_url``: the grouping key."""
    return wire.field_bytes(1, wire.resource(res)), wire.field_str(3, res.schema_url)


def _scope_part(sc: Any) -> tuple[bytes, bytes]:
    """``ScopeSpans.scope`` (always written) and ``schema_url``."""
    return wire.field_bytes(1, wire.scope(sc)), wire.field_str(3, sc.schema_url if sc is not None else None)


_READ = ("name", "kind", "parent", "start_time", "end_time", "status", "resource", "instrumentation_scope")
_READ += ("attributes", "events", "links", "dropped_attributes", "dropped_events", "dropped_links")
_READS_FIELDS: dict[type, bool] = {}


def _reads_fields(cls: type) -> bool:
    """Whether ``cls``'s public span properties are ``ReadableSpan``'s own, which return its fields as
    they are: then the encoder reads the fields (SDK spans, modeltel's FastSpan); decided once per class."""
    plain = _READS_FIELDS[cls] = all(getattr(cls, prop, None) is getattr(ReadableSpan, prop) for prop in _READ)
    return plain


def _plain(span: ReadableSpan) -> ReadableSpan:
    """A span whose class computes its fields differently, copied into a ``ReadableSpan`` through its
    public properties, so the encoder can read ``ReadableSpan``'s own fields for every span."""
    return ReadableSpan(
        name=span.name,
        context=span.get_span_context(),
        parent=span.parent,
        resource=span.resource,
        attributes=_DroppedDict(span.attributes or {}, dropped=span.dropped_attributes),
        events=_DroppedTuple(span.events, dropped=span.dropped_events),
        links=_DroppedTuple(span.links, dropped=span.dropped_links),
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class _DroppedDict(dict):
    def __init__(self, items: Mapping[str, Any], *, dropped: int) -> None:
        super().__init__(items)
        self.dropped = dropped


class _DroppedTuple(tuple):
    dropped = 0

    def __new__(cls, items: Sequence[Any], *, dropped: int) -> _DroppedTuple:
        new = super().__new__(cls, items)
        new.dropped = dropped
        return new
