"""The ``--listen`` server: ``/metrics`` (text or OpenMetrics), ``/healthz``, the trace API and the console.

Trace API (JSON):
  GET /api/traces/<trace_id hex>  -> {"trace_id", "spans": [...]} or 404; a trace over trace_fetch_max_spans
                                     gives its first spans and "truncated": true, "span_count": <stored>
  GET /api/traces?service=&model=&stage=&status=ok|error&kind=prediction|stage&name=&min_duration_ms=
                 &sort=recent|duration&limit=20  -> {"traces": [...], "limit", "capped"} (one row per trace, its
                                     longest match, stages in pipeline order; "capped": true when the search
                                     returned "limit" traces, so more may match;
                                     "truncated": true when it stopped at search_max_rows rows examined)
Jaeger-compatible query API under /jaeger/api/ (serve/jaeger.py), for Grafana's Jaeger datasource.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from modeltel_collector.httpbase import Handler, token_ok
from modeltel_collector.serve.console import serve_console
from modeltel_collector.serve.console.views import stage_order
from modeltel_collector.serve.deps import ServeDeps
from modeltel_collector.serve.exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, render, wants_openmetrics
from modeltel_collector.serve.jaeger import serve_jaeger
from modeltel_collector.serve.params import MAX_MS, number
from modeltel_collector.store.spans import StoreUnavailable
from modeltel_collector.store.spansearch import search_limit

_SEARCH_KEYS = ("service", "model", "stage", "status", "kind", "name")


class ApiHandler(Handler):
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        deps: ServeDeps = self.server.deps
        if path == "/metrics":
            cfg = deps.config
            if cfg.metrics_auth and not token_ok(self.headers.get("Authorization"), cfg.auth_token):
                self.send_json(401, {"error": "missing or invalid bearer token"}, {"WWW-Authenticate": "Bearer"})
                return
            om = wants_openmetrics(self.headers.get("Accept", ""))
            body = render(deps.metrics, deps.stats, om)
            self.send_body(200, body, OPENMETRICS_CONTENT_TYPE if om else TEXT_CONTENT_TYPE)
        elif path == "/healthz":
            self.send_json(*deps.health())
        elif not deps.api_slots.acquire(blocking=False):
            # every query (trace API, Jaeger API, console) takes a slot of the query share, so /metrics and
            # /healthz always have room; the refused connection is closed so it does not hold a slot either
            self.send_json(429, {"error": "too many queries in progress"}, {"Retry-After": "1", "Connection": "close"})
        else:
            try:
                self._query(path, url.query)
            except StoreUnavailable as e:  # e.g. a full disk while the store opens after a crash: it recovers
                self.send_json(503, {"error": f"trace store unavailable: {e}"}, {"Retry-After": "1"})
            finally:
                deps.api_slots.release()

    def _query(self, path: str, query: str) -> None:
        if serve_console(self, path, query) or serve_jaeger(self, path, query):
            return
        if path.startswith("/api/traces"):
            if not token_ok(self.headers.get("Authorization"), self.server.deps.config.auth_token):
                self.send_json(401, {"error": "missing or invalid bearer token"}, {"WWW-Authenticate": "Bearer"})
            elif path == "/api/traces":
                self._search(parse_qs(query))
            else:
                self._get(path[len("/api/traces/") :])
        else:
            self.send_json(404, {"error": "not found", "endpoints": ["/metrics", "/healthz", "/api/traces"]})

    def _get(self, trace_hex: str) -> None:
        try:
            trace_id = bytes.fromhex(trace_hex)
            if len(trace_id) != 16:
                raise ValueError
        except ValueError:
            self.send_json(400, {"error": "trace id must be 32 hex digits"})
            return
        deps: ServeDeps = self.server.deps
        store, cap = deps.spans, deps.config.trace_fetch_max_spans
        spans = store.get_trace(trace_id, cap)
        if not spans:
            self.send_json(404, {"error": f"trace {trace_hex} not found"})
            return
        doc: dict = {"trace_id": trace_hex.lower()}
        if len(spans) >= cap and (stored := store.trace_span_count(trace_id)) > len(spans):
            doc.update(truncated=True, span_count=stored)
            self.server.deps.stats.inc("modeltel_collector_truncated", "trace_read")
        self.send_json_stream(doc, "spans", spans)

    def _search(self, query: dict[str, list[str]]) -> None:
        q = {k: v[-1] for k, v in query.items()}
        try:
            limit = search_limit(int(q.get("limit", 20)))
            traces = self.server.deps.spans.search(
                **{k: q.get(k) for k in _SEARCH_KEYS},
                min_duration_ms=number(q["min_duration_ms"], "min_duration_ms", lo=0, hi=MAX_MS)
                if q.get("min_duration_ms")
                else None,
                sort=q.get("sort", "recent"),
                limit=limit,
            )
        except ValueError as e:
            self.send_json(400, {"error": str(e)})
            return
        for t in traces:
            t["stages"].sort(key=stage_order)
        doc = {"traces": traces, "limit": limit, "capped": len(traces) >= limit}
        self.send_json(200, doc | {"truncated": True} if traces.truncated else doc)
