"""The trace API under hostile queries: huge traces are capped, bad parameters get 400, slow queries
cannot take the connections /metrics and /healthz need."""

from __future__ import annotations

import json
import os
import threading
import time

from tests.collector_helpers import PB, http_get, http_post, running_collector, trace_request


def test_huge_trace_fetch_is_capped_and_says_so() -> None:
    with running_collector(trace_fetch_max_spans=1000) as c:
        trace_id = os.urandom(16)
        for _ in range(5):
            body = trace_request(500, trace_id=trace_id).SerializeToString()
            assert http_post(c.urls["otlp_http"] + "/v1/traces", body, PB)[0] == 200
        c.flush()
        status, headers, body = http_get(f"{c.urls['listen']}/api/traces/{trace_id.hex()}")
        doc = json.loads(body)
        assert status == 200 and len(doc["spans"]) == 1000
        assert headers["Transfer-Encoding"] == "chunked"  # streamed, never built as one string
        assert doc["truncated"] is True and doc["span_count"] == 2500
        small = os.urandom(16)
        assert http_post(c.urls["otlp_http"] + "/v1/traces", trace_request(3, trace_id=small).SerializeToString(),
                         PB)[0] == 200  # fmt: skip
        c.flush()
        doc = json.loads(http_get(f"{c.urls['listen']}/api/traces/{small.hex()}")[2])
        assert len(doc["spans"]) == 3 and "truncated" not in doc


def test_non_finite_search_parameters_get_400() -> None:
    with running_collector() as c:
        for value in ("inf", "-inf", "nan", "1e400", "abc"):
            status, _, body = http_get(f"{c.urls['listen']}/api/traces?min_duration_ms={value}")
            assert status == 400 and json.loads(body)["error"], value
        assert http_get(f"{c.urls['listen']}/api/traces?min_duration_ms=5")[0] == 200


def test_slow_trace_queries_leave_room_for_scrapes() -> None:
    with running_collector(max_connections=4) as c:
        gate, search = threading.Event(), c.spans.search
        c.spans.search = lambda **kw: (gate.wait(20), search(**kw))[1]
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(http_get(c.urls["listen"] + "/api/traces")[0]))
                   for _ in range(4)]  # fmt: skip
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5  # two queries hold the trace API's half of the connections
        while len(results) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(results) == [429, 429]
        assert http_get(c.urls["listen"] + "/metrics")[0] == 200
        assert http_get(c.urls["listen"] + "/healthz")[0] == 200
        gate.set()
        for t in threads:
            t.join(10)
        assert sorted(results) == [200, 200, 429, 429]


def test_jaeger_and_console_queries_count_against_the_query_share_too() -> None:
    # issue 21 item 5: Jaeger searches were not counted, so 130 of them held every --listen connection and
    # /healthz and /metrics answered 429; now every query endpoint takes a slot of the same half
    with running_collector(max_connections=8) as c:
        gate, spans, detections = threading.Event(), c.spans, c.deps.detections
        search, services = spans.search, spans.services
        spans.search = lambda **kw: (gate.wait(20), search(**kw))[1]
        spans.services = lambda: (gate.wait(20), services())[1]
        c.deps.detections = lambda: (gate.wait(20), detections())[1]
        listen = c.urls["listen"]
        paths = ["/jaeger/api/traces?service=svc", "/jaeger/api/services", "/api/v1/console/alerts"] * 4
        results: list[int] = []
        threads = [threading.Thread(target=lambda p=p: results.append(http_get(listen + p)[0])) for p in paths]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10  # 4 queries hold the query half (8 // 2); the 8 others are refused
        while len(results) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(results) == [429] * 8
        assert http_get(listen + "/metrics")[0] == 200
        assert http_get(listen + "/healthz")[0] == 200
        gate.set()
        for t in threads:
            t.join(10)
        assert sorted(results) == [200] * 4 + [429] * 8
