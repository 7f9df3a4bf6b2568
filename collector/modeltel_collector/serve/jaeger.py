"""A Jaeger-compatible query API over the span store, so Grafana's stock Jaeger datasource shows modeltel's
traces (and a latency exemplar opens its span tree) without Tempo or Jaeger.

Served under ``/jaeger`` on the ``--listen`` address, with the JSON shapes of jaeger-query's HTTP API
(``cmd/query/app/http_handler.go``: ``{data, total, limit, offset, errors}``; spans as in ``model/json``)
that Grafana's Jaeger datasource reads (``public/app/plugins/datasource/jaeger``):

  GET /jaeger/api/services                       -> {"data": [service, ...]}
  GET /jaeger/api/services/<service>/operations  -> {"data": [operation, ...]}
  GET /jaeger/api/traces?service=&operation=&tags={"k":"v"}|tag=k:v&minDuration=10ms&maxDuration=1s
                        &start=<unix us>&end=<unix us>&limit=20   -> {"data": [trace, ...]}
  GET /jaeger/api/traces/<trace id>              -> {"data": [trace]} or 404

It reads spans only through :class:`SpanStore`'s public ``search`` and ``get_trace``. A trace matches a search
when one of its spans has the operation, every tag (as text), a duration within [min, max] and a start
within [start, end], as in Jaeger. Services and operations come from the most recent traces (the store's
search returns at most ``_SCAN`` of them), which is what a trace store bounded by age holds anyway. Each
request reads at most ``trace_fetch_max_spans`` spans in all (``_Reader``); a trace cut short says so in
Jaeger's ``warnings``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote

from modeltel.plainjson import dumps
from modeltel_collector.httpbase import Handler, json_list_parts, token_ok
from modeltel_collector.serve.deps import ServeDeps
from modeltel_collector.serve.params import MAX_US, integer
from modeltel_collector.stats import Stats

__all__ = ["PREFIX", "jaeger_trace_json", "parse_duration_us", "serve_jaeger"]

PREFIX = "/jaeger/api/"
_SEARCH_TRUNCATED = "search truncated: older traces not examined (trace_search_max_rows)"
_SCAN = 1000  # the most traces one search reads from the store (SpanStore.search's own cap)
_OPERATION_TRACES = 50  # recent traces read in full to list a service's operations (stage spans included)
_DEFAULT_LIMIT = 20
_MAX_TAGS_BYTES = 4096  # a 'tags' JSON object longer than this is refused (a search names a few tags)
_UNITS_US = {"ns": 1e-3, "us": 1.0, "µs": 1.0, "μs": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_SPAN_KINDS = {"SPAN_KIND_SERVER": "server", "SPAN_KIND_CLIENT": "client", "SPAN_KIND_PRODUCER": "producer",
               "SPAN_KIND_CONSUMER": "consumer", "SPAN_KIND_INTERNAL": "internal"}  # fmt: skip


def parse_duration_us(text: str) -> float:
    """A Go duration string (``"1.5s"``, ``"100ms"``, ``"1h30m"``, as jaeger-query parses) in microseconds."""
    if text == "0":
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text[:40]!r}: use e.g. 100ms, 1.5s, 2m")
    us = sum(float(n) * _UNITS_US[u] for n, u in parts)
    if us > MAX_US:  # past int64 nanoseconds: the store holds no such span
        raise ValueError(f"duration {text[:40]!r} is out of range (at most {int(MAX_US // 3600e6)}h)")
    return us


def _tag(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if not isinstance(value, str):
        value = json.dumps(value, separators=(",", ":"))
    return {"key": key, "type": "string", "value": value}


def _span_tags(span: dict[str, Any]) -> list[dict[str, Any]]:
    """Attributes, plus the tags Jaeger's OTLP translator adds: span.kind, otel.status_code, error."""
    tags = [_tag(k, v) for k, v in span["attributes"].items()]
    if span["kind"] in _SPAN_KINDS:
        tags.append(_tag("span.kind", _SPAN_KINDS[span["kind"]]))
    status = span["status"]
    if status["code"] != "unset":
        tags.append(_tag("otel.status_code", status["code"].upper()))
    if status["message"]:
        tags.append(_tag("otel.status_description", status["message"]))
    if status["code"] == "error":
        tags.append(_tag("error", True))
    return tags


def jaeger_trace_json(spans: list[dict[str, Any]], unread: int = 0, *, search_truncated: bool = False) -> Iterator[str]:
    """The span store's spans of one trace as a Jaeger JSON trace (times and durations in microseconds), in
    pieces of JSON text, a span at a time, so that a large trace is never one string.

    ``unread``: spans of the trace left out by the read bound; the answer says so in Jaeger's
    ``warnings``, on the trace and on its first span (Grafana's trace view shows a span's warnings).
    ``search_truncated``: the search that found it stopped at the store's ``search_max_rows``, said the same way.
    """
    processes: dict[str, str] = {}  # service -> process id
    for s in spans:
        processes.setdefault(s["service"], f"p{len(processes) + 1}")
    warnings = []
    if unread:
        warnings.append(f"trace truncated: {len(spans)} of {len(spans) + unread} spans shown (trace_fetch_max_spans)")
    if search_truncated:
        warnings.append(_SEARCH_TRUNCATED)
    head = {
        "traceID": spans[0]["trace_id"],
        "processes": {pid: {"serviceName": svc, "tags": []} for svc, pid in processes.items()},
        "warnings": warnings or None,
    }
    rows = (_span(s, processes[s["service"]], (warnings or None) if i == 0 else None) for i, s in enumerate(spans))
    return json_list_parts(head, "spans", ((dumps(row),) for row in rows))


def _span(s: dict[str, Any], pid: str, warnings: list[str] | None) -> dict[str, Any]:
    """One span in Jaeger's model/json."""
    refs = []
    if s["parent_span_id"]:
        refs.append({"refType": "CHILD_OF", "traceID": s["trace_id"], "spanID": s["parent_span_id"]})
    refs += [{"refType": "FOLLOWS_FROM", "traceID": lk["trace_id"], "spanID": lk["span_id"]} for lk in s["links"]]
    logs = [
        {
            "timestamp": e["time_unix_nano"] // 1000,
            "fields": [_tag("event", e["name"]), *(_tag(k, v) for k, v in e["attributes"].items())],
        }
        for e in s["events"]
    ]
    return {
        "traceID": s["trace_id"], "spanID": s["span_id"], "flags": 1, "operationName": s["name"],
        "references": refs, "startTime": s["start_time_unix_nano"] // 1000,
        "duration": (s["end_time_unix_nano"] - s["start_time_unix_nano"]) // 1000,
        "tags": _span_tags(s), "logs": logs, "processID": pid, "warnings": warnings,
    }  # fmt: skip


class _Reader:
    """Reads the traces one request needs, at most ``max_spans`` spans in all (``trace_fetch_max_spans``):
    a fetch, a search or an operations list costs what one capped trace fetch costs, however large the
    stored traces are. A search that spends the bound returns the traces found so far."""

    def __init__(self, store: Any, max_spans: int, stats: Stats) -> None:
        self.store, self.left, self.stats = store, max_spans, stats

    def trace(self, trace_id: bytes) -> tuple[list[dict[str, Any]], int]:
        """(the trace's spans read, how many of its stored spans were left unread)."""
        if self.left <= 0:
            return [], 0
        spans = self.store.get_trace(trace_id, self.left)
        self.left -= len(spans)
        unread = self.store.trace_span_count(trace_id) - len(spans) if self.left <= 0 else 0
        if unread > 0:
            self.stats.inc("modeltel_collector_truncated", "trace_read")
        return spans, max(unread, 0)


def _respond(handler: Handler, status: int, data: Any = None, error: str = "", headers: dict | None = None) -> None:
    errors = [{"code": status, "msg": error}] if error else None
    total = len(data) if isinstance(data, list) else 0
    doc = {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}
    handler.send_json(status, doc, {"Cache-Control": "no-store", **(headers or {})})


def _respond_traces(
    handler: Handler, found: list[tuple[list[dict[str, Any]], int]], *, search_truncated: bool = False
) -> None:
    """200 with the traces read, streamed a span at a time (their spans are already bounded by ``_Reader``)."""
    doc = {"total": len(found), "limit": 0, "offset": 0, "errors": None}
    traces = (jaeger_trace_json(spans, unread, search_truncated=search_truncated) for spans, unread in found)
    handler.send_json_parts(json_list_parts(doc, "data", traces), {"Cache-Control": "no-store"})


def serve_jaeger(handler: Handler, path: str, query_string: str) -> bool:
    """Answer ``path`` if it is under ``/jaeger/api/``; False leaves it to the caller."""
    if not path.startswith(PREFIX):
        return False
    deps: ServeDeps = handler.server.deps
    if not token_ok(handler.headers.get("Authorization"), deps.config.auth_token):
        _respond(handler, 401, error="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        return True
    store, rest = deps.spans, path[len(PREFIX) :]
    reader = _Reader(store, deps.config.trace_fetch_max_spans, deps.stats)
    query = parse_qs(query_string)
    try:
        if rest == "services":
            _respond(handler, 200, store.services())
        elif rest.startswith("services/") and rest.endswith("/operations"):
            _respond(handler, 200, _operations(reader, unquote(rest[len("services/") : -len("/operations")])))
        elif rest == "traces":
            found, truncated = _search(reader, query)
            _respond_traces(handler, found, search_truncated=truncated)
        elif rest.startswith("traces/"):
            _get(handler, reader, rest[len("traces/") :])
        else:
            _respond(handler, 404, error=f"no such endpoint: {path}")
    except ValueError as e:
        _respond(handler, 400, error=str(e))
    return True


def _operations(reader: _Reader, service: str) -> list[str]:
    hits = reader.store.search(service=service, limit=_SCAN)
    names = {h["name"] for h in hits}
    for hit in hits[:_OPERATION_TRACES]:
        names |= {s["name"] for s in reader.trace(bytes.fromhex(hit["trace_id"]))[0] if s["service"] == service}
    return sorted(names)


def _get(handler: Handler, reader: _Reader, trace_hex: str) -> None:
    try:
        trace_id = bytes.fromhex(trace_hex.rjust(32, "0"))  # Jaeger ids may drop leading zeros
        if len(trace_id) != 16:
            raise ValueError
    except ValueError:
        _respond(handler, 400, error="trace id must be up to 32 hex digits")
        return
    spans, unread = reader.trace(trace_id)
    if not spans:
        _respond(handler, 404, error="trace not found")
    else:
        _respond_traces(handler, [(spans, unread)])


def _tags(query: dict[str, list[str]]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for kv in query.get("tag", []):
        key, sep, value = kv.partition(":")
        if not sep:
            raise ValueError(f"malformed 'tag' parameter, expecting key:value, received: {kv}")
        tags[key] = value
    for doc in query.get("tags", []):
        if len(doc) > _MAX_TAGS_BYTES:
            raise ValueError(f"malformed 'tags' parameter: longer than {_MAX_TAGS_BYTES} characters")
        try:
            parsed = json.loads(doc)
        except RecursionError:
            raise ValueError("malformed 'tags' parameter: nested too deeply") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"malformed 'tags' parameter, cannot unmarshal JSON: {e}") from None
        if not isinstance(parsed, dict):
            raise ValueError("malformed 'tags' parameter: expecting a JSON object")
        tags.update({str(k): str(v) for k, v in parsed.items()})
    return tags


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _search(reader: _Reader, query: dict[str, list[str]]) -> tuple[list[tuple[list[dict[str, Any]], int]], bool]:
    """The matching traces, as (spans read, spans left unread) each, and whether the store's search stopped
    at its row bound (``SpanStore.search_max_rows``: older matches may have been left unread)."""
    q = {k: v[-1] for k, v in query.items()}
    if not q.get("service"):
        raise ValueError("parameter 'service' is required")
    lo = parse_duration_us(q["minDuration"]) if q.get("minDuration") else 0.0
    hi = parse_duration_us(q["maxDuration"]) if q.get("maxDuration") else float("inf")
    if hi < lo:
        raise ValueError("'maxDuration' should be greater than 'minDuration'")
    start = integer(q["start"], "start", lo=0, hi=int(MAX_US)) * 1000 if q.get("start") else 0
    end = integer(q["end"], "end", lo=0, hi=int(MAX_US)) * 1000 if q.get("end") else None
    limit = max(1, min(integer(q.get("limit") or str(_DEFAULT_LIMIT), "limit", lo=-(1 << 63), hi=1 << 63), _SCAN))
    operation, tags = q.get("operation", ""), _tags(query)

    def matches(s: dict[str, Any]) -> bool:
        duration_us = (s["end_time_unix_nano"] - s["start_time_unix_nano"]) / 1000
        if (operation and s["name"] != operation) or not lo <= duration_us <= hi:
            return False
        if s["start_time_unix_nano"] < start or (end is not None and s["start_time_unix_nano"] > end):
            return False
        values = {t["key"]: _text(t["value"]) for t in _span_tags(s)}
        return all(values.get(k) == v for k, v in tags.items())

    # the store's min_duration filters on a trace's longest span, a bound on any of its spans
    hits = reader.store.search(service=q["service"], min_duration_ms=lo / 1000 or None, limit=_SCAN)
    traces = []
    for hit in hits:
        if end is not None and hit["start_time_unix_nano"] > end:
            continue
        spans, unread = reader.trace(bytes.fromhex(hit["trace_id"]))
        if any(s["service"] == q["service"] and matches(s) for s in spans):
            traces.append((spans, unread))
            if len(traces) >= limit:
                break
        if reader.left <= 0:
            break
    return traces, hits.truncated
