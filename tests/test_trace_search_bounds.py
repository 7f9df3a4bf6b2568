"""A trace search reads what its answer needs, not the whole store (issue 21: a Jaeger search by service
scanned every row of a 2 GiB store for 15 s, and the WAL bound overshot by what was written meanwhile)."""

from __future__ import annotations

import json
import os

from modeltel_collector.serve import jaeger
from modeltel_collector.stats import Stats
from modeltel_collector.store.spans import SpanStore, TraceRow
from tests.collector_helpers import PB, http_get, http_post, running_collector, trace_request

ROW = TraceRow(b"", "busy", "m", ",predict,", ",SERVER,", "predict", 0, 0, 1000, b"", 1, b"")


def _fill(store: SpanStore, n: int, *, service: str = "busy", start: int = 0, **cols) -> list[bytes]:
    ids = [os.urandom(16) for _ in range(n)]
    store.put([ROW._replace(trace_id=t, service=service, start_ns=start + i, span_id=os.urandom(8), **cols)
               for i, t in enumerate(ids)])  # fmt: skip
    return ids


def _steps(store: SpanStore, **search) -> tuple[list, int]:
    """The search's hits and the SQLite VM steps (in thousands) it ran on the reader connection."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    store._reader.set_progress_handler(count, 1000)
    try:
        return store.search(**search), steps[0]
    finally:
        store._reader.set_progress_handler(None, 0)


def test_latest_traces_of_a_service_cost_the_same_in_a_small_and_a_large_store(tmp_path) -> None:
    costs = []
    for n, name in ((5_000, "small"), (50_000, "large")):
        store = SpanStore(str(tmp_path / f"{name}.db"))
        store.start()
        _fill(store, n)  # the busy service's rows, all newer than the quiet one's
        quiet = _fill(store, 30, service="quiet", start=-100)
        _fill(store, n, start=n)
        store.close()
        store = SpanStore(str(tmp_path / f"{name}.db"))
        hits, steps = _steps(store, service="quiet", limit=10)
        assert [bytes.fromhex(h["trace_id"]) for h in hits] == quiet[::-1][:10]  # newest first
        assert not hits.truncated
        costs.append(steps)
        store.close()
    assert costs[1] <= costs[0] + 2, costs  # a full scan would cost ten times more in the large store


def test_a_search_stops_at_its_row_bound_says_so_and_counts_it(tmp_path) -> None:
    stats = Stats()
    store = SpanStore(str(tmp_path / "t.db"), stats=stats, search_max_rows=500)
    store.start()
    old = _fill(store, 5, model="rare")
    _fill(store, 2_000, start=100)
    store.close()
    store = SpanStore(str(tmp_path / "t.db"), stats=stats, search_max_rows=500)
    hits = store.search(service="busy", model="rare")
    assert hits == [] and hits.truncated  # the rare model's traces lie past the newest 500 rows
    for sort in ("recent", "duration"):
        assert store.search(model="rare", sort=sort).truncated
    found = store.search(service="busy", limit=20)
    assert len(found) == 20 and not found.truncated  # found within the bound: the answer is whole
    assert stats.counters["modeltel_collector_truncated"]["trace_search"] == 3
    roomy = SpanStore(str(tmp_path / "t.db"), search_max_rows=10_000)
    hits = roomy.search(service="busy", model="rare")
    assert {bytes.fromhex(h["trace_id"]) for h in hits} == set(old) and not hits.truncated
    roomy.close()
    store.close()


def test_the_apis_mark_a_search_cut_at_its_row_bound() -> None:
    with running_collector(trace_search_max_rows=20) as c:
        assert http_post(c.urls["otlp_http"] + "/v1/traces", trace_request(60).SerializeToString(), PB)[0] == 200
        c.flush()
        base = c.urls["listen"]
        doc = json.loads(http_get(base + "/api/traces?service=raw&name=nomatch")[2])
        assert doc["traces"] == [] and doc["truncated"] is True
        doc = json.loads(http_get(base + "/api/traces?service=raw&limit=5")[2])
        assert len(doc["traces"]) == 5 and "truncated" not in doc  # found within the bound
        traces = json.loads(http_get(base + "/jaeger/api/traces?service=raw&limit=100")[2])["data"]
        assert len(traces) == 20  # the 20 newest rows examined: older traces are not
        assert all(t["warnings"] == [jaeger._SEARCH_TRUNCATED] for t in traces)
        metrics = http_get(base + "/metrics")[2].decode()
        assert 'modeltel_collector_truncated_total{what="trace_search"} 2' in metrics


def _rotate(path, n: int, stats: Stats, **bounds) -> None:
    """``n`` services, 2 rows each, written one store session after another (so each is newer than the last)."""
    for i in range(n):
        store = SpanStore(str(path), stats=stats, **bounds)
        store.start()
        _fill(store, 2, service=f"rot-{i:03}", start=i * 10)
        store.close()


def test_rotating_service_names_cannot_grow_a_search_without_a_service(tmp_path) -> None:
    """A search without a service reads every service in the store's list, one cursor each; a client that
    rotates ``service.name`` grows that list, so it is bounded, least recently written out first."""
    costs = []
    for n in (20, 200):
        stats = Stats()
        path = tmp_path / f"{n}.db"
        store = SpanStore(str(path), stats=stats, max_services=20)
        store.start()
        quiet = _fill(store, 3, service="quiet", start=-100)
        store.close()
        _rotate(path, n, stats, max_services=20)
        store = SpanStore(str(path), stats=stats, max_services=20)
        assert store.services() == [f"rot-{i:03}" for i in range(n - 20, n)]  # the 20 written last
        assert stats.counters["modeltel_collector_truncated"]["trace_services"] == n + 1 - 20
        statements: list[str] = []
        store._reader.set_trace_callback(statements.append)
        hits = store.search(model="rare")  # no match: every listed service's rows are read
        store._reader.set_trace_callback(None)
        assert hits == [] and not hits.truncated
        costs.append(len(statements))
        found = store.search(service="quiet")  # an evicted service's traces are still found by its name
        assert {bytes.fromhex(h["trace_id"]) for h in found} == set(quiet)
        store.close()
    assert costs[0] == costs[1] <= 22, costs  # the list, then a cursor per listed service (not per one ever seen)


def test_a_store_opened_over_its_service_bound_is_brought_within_it(tmp_path) -> None:
    """A store filled by an older collector, or reopened with a smaller ``max_services``, is bounded on
    opening, not only once a new service writes (with a fixed set of services that is never)."""
    stats = Stats()
    path = tmp_path / "t.db"
    _rotate(path, 30, stats)
    assert stats.counters["modeltel_collector_truncated"]["trace_services"] == 0  # 30 fit the default
    store = SpanStore(str(path), stats=stats, max_services=10)
    assert store.services() == [f"rot-{i:03}" for i in range(20, 30)]  # the 10 written last
    assert stats.counters["modeltel_collector_truncated"]["trace_services"] == 20
    store.close()


def test_the_service_list_has_a_byte_bound_and_a_long_name_cannot_empty_it(tmp_path) -> None:
    stats = Stats()
    path = tmp_path / "t.db"
    _rotate(path, 3, stats)
    for name in ("a" * (600 << 10), "b" * (600 << 10), "c" * (2 << 20)):  # 1.2 MiB together; 2 MiB alone
        store = SpanStore(str(path), stats=stats)
        store.start()
        _fill(store, 1, service=name)
        store.close()
    store = SpanStore(str(path), stats=stats)
    assert store.services() == ["b" * (600 << 10), "rot-000", "rot-001", "rot-002"]
    assert stats.counters["modeltel_collector_truncated"]["trace_services"] == 2
    store.close()
