"""Protobuf wire-format primitives for OTLP: varints, length-delimited fields, attribute values.

The upstream encoder builds one protobuf message object per attribute, value, span and data point, then
serialises the tree; on the export thread that costs about 30 µs a span, under the application's GIL.
Writing the bytes directly needs only these few primitives. Fields are written in field-number order and
proto3 defaults are left out, as the protobuf runtime does, so the output matches the upstream bytes.
Everything here is a pure function of its arguments; the caches live with the encoders that use them.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

_SMALL = [bytes((i,)) for i in range(128)]
_DOUBLE = struct.Struct("<d").pack
_FIXED64 = struct.Struct("<Q").pack
_SFIXED64 = struct.Struct("<q").pack


def varint(n: int) -> bytes:
    """Base-128 varint; a negative int64 takes ten bytes (two's complement), as protobuf writes it."""
    if n < 0x80:
        if n >= 0:
            return _SMALL[n]
        n += 1 << 64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def zigzag32(n: int) -> int:
    return (n << 1) ^ (n >> 31)


def tag(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def field_bytes(field: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or sub-message): tag, length, payload."""
    return (_SMALL[(field << 3) | 2] if field < 16 else tag(field, 2)) + length(len(payload)) + payload


def field_str(field: int, value: str | None) -> bytes:
    """A proto3 string field, left out when empty (the default)."""
    return field_bytes(field, value.encode()) if value else b""


def field_varint(field: int, value: int | None) -> bytes:
    """A proto3 varint field (uint32/int64/enum/bool), left out when zero (the default)."""
    return tag(field, 0) + varint(int(value)) if value else b""


def field_sint32(field: int, value: int) -> bytes:
    return tag(field, 0) + varint(zigzag32(value)) if value else b""


def field_fixed64(field: int, value: int | None) -> bytes:
    return tag(field, 1) + _FIXED64(value) if value else b""


def field_double(field: int, value: float | None, *, present: bool = False) -> bytes:
    """A double field; ``present`` for proto3 ``optional`` fields, which are written even when zero."""
    if value is None or not (value or present):
        return b""
    return tag(field, 1) + _DOUBLE(value)


def field_sfixed64(field: int, value: int) -> bytes:
    return tag(field, 1) + _SFIXED64(value)


def packed_fixed64(field: int, values: Sequence[int]) -> bytes:
    return field_bytes(field, struct.pack(f"<{len(values)}Q", *values)) if values else b""


def packed_double(field: int, values: Sequence[float]) -> bytes:
    return field_bytes(field, struct.pack(f"<{len(values)}d", *values)) if values else b""


def packed_varint(field: int, values: Sequence[int]) -> bytes:
    return field_bytes(field, b"".join(varint(v) for v in values)) if values else b""


def any_value(value: Any) -> bytes:
    """The payload of an ``AnyValue``; the oneof member is written even when it holds its default.

    The type tests follow the upstream ``_encode_value`` order (bool before int, str before Sequence).
    """
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return field_bytes(1, value.encode())
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return field_bytes(7, value)
    if isinstance(value, Sequence):
        return field_bytes(5, b"".join([field_bytes(1, any_value(v)) for v in value]))
    if isinstance(value, Mapping):
        return field_bytes(6, b"".join([field_bytes(1, key_value(str(k), v)) for k, v in value.items()]))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def key_value(key: str, value: Any) -> bytes:
    """The payload of a ``KeyValue``."""
    return field_str(1, key) + field_bytes(2, any_value(value))


def attributes(field: int, attrs: Mapping[str, Any] | None) -> bytes:
    """Repeated ``KeyValue`` field ``field``; a value of an unsupported type is skipped, as upstream does."""
    if not attrs:
        return b""
    out = []
    for key, value in attrs.items():
        try:
            out.append(field_bytes(field, key_value(key, value)))
        except TypeError:
            continue
    return b"".join(out)


def resource(res: Any) -> bytes:
    """Payload of a ``Resource``: its attributes (upstream writes nothing else)."""
    return attributes(1, res.attributes)


def scope(sc: Any) -> bytes:
    """Payload of an ``InstrumentationScope``; ``None`` gives the empty scope, as upstream."""
    if sc is None:
        return b""
    return field_str(1, sc.name) + field_str(2, sc.version) + attributes(3, sc.attributes)


_LENGTHS = [varint(i) for i in range(4096)]


def length(n: int) -> bytes:
    """The varint length prefix of a length-delimited field (a table look-up below 4 KiB)."""
    return _LENGTHS[n] if n < 4096 else varint(n)
