"""The trace store's rows and what its reads make of them: a row's columns, a search hit, a span as JSON.

Apart from ``spans`` (the store's writes, bounds and reads) because this is the format: what a row holds
(written by ``process.spanmetrics``), and how the API sees a row or a span once read back.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from modeltel_collector.otlp import any_value_py

MAX_INT64 = (1 << 63) - 1  # SQLite's INTEGER range: larger OTLP fixed64 times are clamped to it


class TraceRow(NamedTuple):
    """One row per (trace, resource) per export request: the spans of a trace that arrived together.

    Columns are what search filters on; ``data`` is the spans, encoded as a ScopeSpans message (repeated
    field 2). The field names are the table's column names, and ``INSERT`` names them.
    """

    trace_id: bytes
    service: str
    model: str  # the prediction span's model, else the first span's
    stages: str  # ",a,b,": sorted, comma-delimited so instr(stages, ',a,') matches whole values
    kinds: str  # same format
    name: str  # of the longest span (the root, for a complete trace)
    status: int  # the worst span status code
    start_ns: int  # the earliest span start
    duration_ns: int  # the longest span's duration
    span_id: bytes  # the longest span's id
    span_count: int
    data: bytes
    version: str = ""  # the model version of the span that gave ``model``


INSERT = f"INSERT INTO traces ({', '.join(TraceRow._fields)}) VALUES ({','.join('?' * len(TraceRow._fields))})"
HIT_COLUMNS = "trace_id, span_id, service, model, stages, kinds, name, status, start_ns, duration_ns, version"
STATUS_NAMES = {Status.STATUS_CODE_UNSET: "unset", Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}


def hit(rows: list[tuple]) -> dict[str, Any]:
    """One trace's search result from all its stored rows (``HIT_COLUMNS`` columns). A trace whose spans
    arrived in several exports is several rows, each holding only its own spans: the longest row gives the
    span, name, service, model and duration (the root, for a complete trace); stages and kinds are the
    union, the status the worst, the start the earliest."""
    longest = max(rows, key=lambda r: r[9])
    return {
        "trace_id": longest[0].hex(),
        "span_id": longest[1].hex(),
        "service": longest[2],
        "model": longest[3],
        "version": longest[10] or "",
        "stages": _csv_values("".join(r[4] for r in rows)),
        "kinds": _csv_values("".join(r[5] for r in rows)),
        "name": longest[6],
        "status": STATUS_NAMES.get(max(r[7] for r in rows), "unset"),
        "start_time_unix_nano": min(r[8] for r in rows),
        "duration_ms": longest[9] / 1e6,
    }


def csv(values: set[str]) -> str:
    """The ``stages``/``kinds`` column of a row: ',a,b,', so that instr(col, ',a,') matches whole values."""
    return "," + ",".join(sorted(values)) + "," if values else ""


def _csv_values(col: str) -> list[str]:
    """The values of ``stages``/``kinds`` columns, of one row or several concatenated (",a,b,,a," -> ["a", "b"])."""
    return sorted({v for v in col.split(",") if v})


def span_to_dict(span: Span, service: str) -> dict[str, Any]:
    """A span as plain JSON with hex ids (the API's format; OTLP/JSON-like but flat)."""
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "service": service,
        "name": span.name,
        "kind": Span.SpanKind.Name(span.kind),
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "duration_ms": (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
        "status": {"code": STATUS_NAMES.get(span.status.code, "unset"), "message": span.status.message},
        "attributes": {kv.key: any_value_py(kv.value) for kv in span.attributes},
        "events": [
            {
                "name": e.name,
                "time_unix_nano": e.time_unix_nano,
                "attributes": {kv.key: any_value_py(kv.value) for kv in e.attributes},
            }
            for e in span.events
        ],
        "links": [{"trace_id": lk.trace_id.hex(), "span_id": lk.span_id.hex()} for lk in span.links],
    }
