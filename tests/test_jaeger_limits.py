"""The Jaeger API honours ``trace_fetch_max_spans``: a trace fetch, a search and an operations list each read
at most that many spans in all, and a trace cut short says so in Jaeger's ``warnings`` (Grafana's trace
view shows a span's warnings)."""

from __future__ import annotations

import json
import os

import pytest

from tests.collector_helpers import PB, http_get, http_post, running_collector, trace_request

CAP = 1000


@pytest.fixture(scope="module")
def big():
    """A collector holding a 2500-span trace of service ``raw`` and a 3-span one, recording every read."""
    with running_collector(trace_fetch_max_spans=CAP) as c:
        trace_id, small = os.urandom(16), os.urandom(16)
        for _ in range(5):
            body = trace_request(500, trace_id=trace_id).SerializeToString()
            assert http_post(c.urls["otlp_http"] + "/v1/traces", body, PB)[0] == 200
        assert http_post(c.urls["otlp_http"] + "/v1/traces", trace_request(3, trace_id=small).SerializeToString(),
                         PB)[0] == 200  # fmt: skip
        c.flush()
        reads: list[tuple[int, int]] = []  # (max_spans asked, spans returned)
        get_trace = c.spans.get_trace

        def recording(tid: bytes, max_spans: int) -> list:
            spans = get_trace(tid, max_spans)
            reads.append((max_spans, len(spans)))
            return spans

        c.spans.get_trace = recording
        yield c.urls["listen"] + "/jaeger/api/", trace_id.hex(), small.hex(), reads
        c.spans.get_trace = get_trace


def _truncated_reads(base: str) -> float:
    page = http_get(base.replace("/jaeger/api/", "/metrics"))[2].decode()
    line = [ln for ln in page.splitlines() if ln.startswith('modeltel_collector_truncated_total{what="trace_read"}')]
    return float(line[0].split()[-1]) if line else 0.0


def _get(base: str, path: str, reads: list) -> dict:
    reads.clear()
    status, headers, body = http_get(base + path)
    assert status == 200, body[:300]
    if "/operations" not in path:  # traces are streamed a span at a time, never built as one string
        assert headers["Transfer-Encoding"] == "chunked"
    assert reads and sum(n for _, n in reads) <= CAP
    return json.loads(body)


def test_a_huge_trace_fetch_is_capped_and_warns(big) -> None:
    base, trace_hex, small_hex, reads = big
    trace = _get(base, f"traces/{trace_hex}", reads)["data"][0]
    assert len(trace["spans"]) == CAP
    assert trace["warnings"] == [f"trace truncated: {CAP} of 2500 spans shown (trace_fetch_max_spans)"]
    assert trace["spans"][0]["warnings"] == trace["warnings"]
    before = _truncated_reads(base)
    _get(base, f"traces/{trace_hex}", reads)
    assert _truncated_reads(base) == before + 1  # counted on /metrics
    small = _get(base, f"traces/{small_hex}", reads)["data"][0]
    assert len(small["spans"]) == 3 and small["warnings"] is None
    assert all(s["warnings"] is None for s in small["spans"])


def test_search_and_operations_read_at_most_the_cap(big) -> None:
    base, trace_hex, _, reads = big
    found = _get(base, "traces?service=raw&limit=20", reads)["data"]
    assert found and sum(len(t["spans"]) for t in found) <= CAP
    cut = [t for t in found if t["traceID"] == trace_hex]
    assert not cut or cut[0]["warnings"]
    assert _get(base, "services/raw/operations", reads)["data"]
