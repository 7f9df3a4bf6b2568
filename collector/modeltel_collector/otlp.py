"""OTLP payload decoding shared by the HTTP and gRPC receivers: protobuf, OTLP/JSON (hex ids), gzip, limits."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

TRACES = "traces"
METRICS = "metrics"
REQUEST_TYPES: dict[str, type[Message]] = {TRACES: ExportTraceServiceRequest, METRICS: ExportMetricsServiceRequest}
RESPONSE_TYPES: dict[str, type[Message]] = {TRACES: ExportTraceServiceResponse, METRICS: ExportMetricsServiceResponse}


# what decoding costs in memory per wire byte, for in-flight accounting: upb message trees are compact,
# Python's json objects are not
PROTOBUF_DECODE_FACTOR = 2
JSON_DECODE_FACTOR = 10


class PayloadError(ValueError):
    """A request the client must not retry: malformed, truncated, oversized or of the wrong type."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo Content-Encoding, refusing output beyond ``limit`` bytes so a gzip bomb cannot exhaust memory."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise PayloadError(f"unsupported Content-Encoding {encoding!r}", 415)
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    out, data = bytearray(), body
    while True:  # a gzip body may hold several members (RFC 1952 2.2): their contents concatenate
        d = zlib.decompressobj(wbits)
        try:
            out += d.decompress(data, limit + 1 - len(out))
        except zlib.error as e:
            raise PayloadError(f"invalid {encoding} body: {e}") from e
        if len(out) > limit or d.unconsumed_tail:
            raise PayloadError(f"decompressed body exceeds the {limit}-byte limit", 413)
        if not d.eof:
            raise PayloadError(f"truncated {encoding} body")
        data = d.unused_data
        if not data:
            return bytes(out)
        if encoding != "gzip":
            raise PayloadError(f"trailing data after the {encoding} stream")


def parse_protobuf(signal: str, body: bytes) -> Message:
    msg = REQUEST_TYPES[signal]()
    try:
        msg.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise PayloadError(f"invalid protobuf {REQUEST_TYPES[signal].__name__}: {e}") from e
    return msg


_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP/JSON encodes trace/span ids as hex, protobuf's JSON mapping expects base64: convert in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError as e:
                    raise PayloadError(f"{key} is not hex: {value[:40]!r}") from e
            elif isinstance(value, (dict, list)):
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _hex_ids_to_base64(item)


def parse_json(signal: str, body: bytes) -> Message:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise PayloadError(f"invalid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise PayloadError("OTLP/JSON body must be an object")
    msg = REQUEST_TYPES[signal]()
    try:
        _hex_ids_to_base64(doc)
        json_format.ParseDict(doc, msg, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as e:
        raise PayloadError(f"invalid OTLP/JSON {REQUEST_TYPES[signal].__name__}: {e}") from e
    return msg


def to_json(msg: Message) -> bytes:
    return json_format.MessageToJson(msg, indent=None).encode()


def any_value_str(v: AnyValue) -> str:
    """An attribute value as a label string: scalars as text, arrays and maps as JSON."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        return repr(v.double_value)
    if kind is None:
        return ""
    return json.dumps(any_value_py(v), separators=(",", ":"))


def any_value_py(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value_py(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value_py(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind) if kind else None
