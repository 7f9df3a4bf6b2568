"""Faults that used to wedge the collector for good: a poison span, a full disk, a kill mid-ingest.

Each test checks that the trace store's writer survives, that ingest keeps answering (not 429 for ever),
that /healthz tells the truth, that every dropped span is counted by reason, and that stop() returns.
"""

from __future__ import annotations

import http.client
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time

from modeltel_collector import Collector
from modeltel_collector.store.spans import SpanStore
from tests.collector_helpers import PB, dropped, http_get, http_post, running_collector, trace_request


def _stop_within(c, seconds: float) -> bool:
    t = threading.Thread(target=c.stop, daemon=True)
    t.start()
    t.join(seconds)
    return not t.is_alive()


def _health(c) -> tuple[int, dict]:
    status, _, body = http_get(c.urls["listen"] + "/healthz")
    return status, json.loads(body)


def test_far_future_span_does_not_kill_the_writer() -> None:
    with running_collector() as c:
        url = c.urls["otlp_http"] + "/v1/traces"
        poison = trace_request(1, start_time_unix_nano=2**63 + 5, end_time_unix_nano=2**64 - 1)
        assert http_post(url, poison.SerializeToString(), PB)[0] == 200
        for _ in range(3):
            assert http_post(url, trace_request(5).SerializeToString(), PB)[0] == 200
        assert c.flush(10), "the trace store writer stopped writing"
        assert c.spans.count == 16  # the far-future span is stored (times clamped), the others too
        trace_id = poison.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
        status, _, body = http_get(f"{c.urls['listen']}/api/traces/{trace_id}")
        assert status == 200 and json.loads(body)["spans"][0]["start_time_unix_nano"] == 2**63 + 5
        status, doc = _health(c)
        assert (status, doc["status"], doc["queue_depth"], doc["trace_store"]) == (200, "ok", 0, "ok")
        assert _stop_within(c, 15)


def test_rows_sqlite_cannot_bind_are_dropped_alone_and_counted() -> None:
    with running_collector() as c:
        rows = [r._replace(start_ns=2**64) if i == 1 else r for i, r in enumerate(_rows(c, 3))]
        c.spans.put(rows)
        assert c.flush(10)
        assert c.spans.count == 2
        assert dropped(c) == {"spans_unstorable": 1}


def _rows(c, n: int):
    from modeltel_collector.process.spanmetrics import process_traces

    rows, _ = process_traces(trace_request(n), c.metrics)
    return rows


def test_a_write_of_only_unbindable_rows_leaves_the_count_a_reopened_store_reads(tmp_path) -> None:
    # a reopened store counts its spans from the per-write records: a write that stored nothing must not
    # overwrite the record of the write before it
    db = str(tmp_path / "traces.db")
    with running_collector(trace_db=db) as c:
        for _ in range(2):
            c.spans.put(_rows(c, 2))
            assert c.flush(10)  # one write each, not one for all
        c.spans.put([r._replace(start_ns=2**64) for r in _rows(c, 2)])
        assert c.flush(10) and c.spans.count == 4
    store = SpanStore(db)
    store.open()
    assert store.count == 4
    store.close()


def test_full_disk_sheds_oldest_degrades_health_and_recovers() -> None:
    with running_collector() as c:
        url = c.urls["otlp_http"] + "/v1/traces"
        for _ in range(10):
            assert http_post(url, trace_request(20, payload=2000).SerializeToString(), PB)[0] == 200
        assert c.flush(10) and c.spans.count == 200
        w = c.spans._writer  # idle after flush: cap the database at its current size ("disk full")
        pages = w.execute("PRAGMA page_count").fetchone()[0]
        assert w.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0] == pages

        # a batch larger than the whole store: retried, the oldest spans shed, then it is dropped and counted
        big = trace_request(100, payload=20_000).SerializeToString()
        assert http_post(url, big, PB)[0] == 200
        assert c.flush(15), "the trace store writer wedged on a full disk"
        assert dropped(c).get("spans_store_full") == 100
        assert dropped(c).get("spans_shed_storage_full", 0) > 0
        status, doc = _health(c)
        assert status == 200 and doc["status"] == "degraded" and "full" in doc["trace_store"], doc

        # small writes fit in the room shedding made: ingest never stops, and the store heals by itself
        assert http_post(url, trace_request(5).SerializeToString(), PB)[0] == 200
        assert c.flush(10)
        assert _health(c)[1]["status"] == "ok"
        stored = c.spans.count
        w.execute("PRAGMA max_page_count = 1073741823")  # space is back
        assert http_post(url, big, PB)[0] == 200
        assert c.flush(10) and c.spans.count == stored + 100
        assert _stop_within(c, 15)


def test_sigkill_loses_only_what_was_acknowledged_in_the_last_max_unwritten_s(tmp_path) -> None:
    """Send from several clients, SIGKILL mid-ingest, restart on the same store, count what survived.

    The bound is the configured one: a request is checked (and refused once anything accepted more than
    ``max_unwritten_s`` ago is still unwritten) after its client sent it, so when the last acknowledged
    request was sent at T, everything accepted before T - max_unwritten_s was written. A slow or stalled
    disk must make the collector refuse (429), never stretch that window.
    """
    db, ready = tmp_path / "traces.db", tmp_path / "ready.json"
    cfg = tmp_path / "c.toml"
    max_unwritten_s = 1.0
    cfg.write_text(f'otlp_http = "127.0.0.1:0"\notlp_grpc = ""\nlisten = "127.0.0.1:0"\ntrace_db = "{db}"\n'
                   f"max_unwritten_s = {max_unwritten_s}\n")  # fmt: skip
    proc = _start_cli(cfg, ready)
    url = json.loads(ready.read_text())["urls"]["otlp_http"] + "/v1/traces"
    acks: list[tuple[float, float, int]] = []  # (monotonic time sent, time of its 200, spans)
    stop = threading.Event()

    def send() -> None:
        body = trace_request(200, payload=200).SerializeToString()
        while not stop.is_set():
            sent = time.monotonic()
            try:
                if http_post(url, body, PB)[0] == 200:
                    acks.append((sent, time.monotonic(), 200))
            except (OSError, http.client.HTTPException):  # the kill (or a 429's body cut short by it)
                return

    senders = [threading.Thread(target=send) for _ in range(4)]
    for t in senders:
        t.start()
    time.sleep(4.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    stop.set()
    for t in senders:
        t.join(10)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = conn.execute("SELECT COALESCE(SUM(span_count), 0) FROM traces").fetchone()[0]
    acked = sum(n for *_, n in acks)
    written_before = max(sent for sent, _, _ in acks) - max_unwritten_s  # all accepted before it was written
    window = sum(n for _, acked_at, n in acks if acked_at > written_before)
    assert stored <= acked and acked - window > 0
    assert acked - stored <= window, f"lost {acked - stored} of {acked} acknowledged spans, window {window}"
    proc = _start_cli(cfg, ready)  # restarts on the same store, which keeps what it had
    try:
        url = json.loads(ready.read_text())["urls"]["otlp_http"] + "/v1/traces"
        assert http_post(url, trace_request(5).SerializeToString(), PB)[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT SUM(span_count) FROM traces").fetchone()[0] == stored + 5


def test_unwritten_seconds_count_from_the_acknowledgement_not_from_reaching_the_store() -> None:
    # the SIGKILL bound rests on this age: data that waited in the ingest queue must not look fresh again
    # once it reaches the trace store's queue
    with running_collector() as c:
        moved, writable = threading.Event(), threading.Event()
        process, write = c.pipeline._process, c.spans._batches._write
        c.pipeline._process = lambda *item: (moved.wait(20), process(*item))
        c.spans._batches._write = lambda rows: (writable.wait(20), write(rows))
        assert http_post(c.urls["otlp_http"] + "/v1/traces", trace_request(5).SerializeToString(), PB)[0] == 200
        acked = time.monotonic()
        moved.set()  # only now does the worker hand the rows on to the (stalled) store
        deadline = time.monotonic() + 10
        while not (c.pipeline.idle() and c.spans.pending() == 1) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert c.spans.pending() == 1
        assert c.pipeline.unwritten_s() >= time.monotonic() - acked
        writable.set()
        assert c.flush() and c.pipeline.unwritten_s() == 0.0


def _start_cli(cfg, ready) -> subprocess.Popen:
    if ready.exists():
        ready.unlink()
    proc = subprocess.Popen([sys.executable, "-m", "modeltel_collector", "--config", str(cfg),
                             "--ready-file", str(ready)], stdout=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 20
    while not (ready.exists() and ready.stat().st_size) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


class _GatedConnection(sqlite3.Connection):
    """Holds back the store's span count (the last slow step of opening a store) until ``gate`` is set."""

    gate = threading.Event()

    def execute(self, sql: str, *args):
        if "SUM(" in sql:
            assert self.gate.wait(60), "the test never let the store open"
        return super().execute(sql, *args)


def test_the_collector_answers_while_its_trace_store_is_still_opening(tmp_path, monkeypatch) -> None:
    # after a SIGKILL, opening a soak-sized store (WAL replay, the span count) took seconds, and nothing was
    # bound meanwhile: /healthz, /metrics and ingest now answer first, and the store opens behind them
    db = str(tmp_path / "traces.db")
    with running_collector(trace_db=db) as c:
        assert http_post(c.urls["otlp_http"] + "/v1/traces", trace_request(3).SerializeToString(), PB)[0] == 200
        assert c.flush(10)
    real_connect, gate = sqlite3.connect, threading.Event()
    monkeypatch.setattr(_GatedConnection, "gate", gate)
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, factory=_GatedConnection, **k))
    started: list[Collector] = []
    opts = {"trace_db": db, "otlp_http": "127.0.0.1:0", "listen": "127.0.0.1:0", "otlp_grpc": ""}
    starting = threading.Thread(target=lambda: started.append(Collector(**opts).start()))
    starting.start()
    try:
        starting.join(30)
        assert started, "the collector did not start until its trace store was open"
        c = started[0]
        status, doc = _health(c)
        assert (status, doc["status"], doc["trace_store"]) == (200, "ok", "opening")
        assert http_get(c.urls["listen"] + "/metrics")[0] == 200
        assert http_post(c.urls["otlp_http"] + "/v1/traces", trace_request(4).SerializeToString(), PB)[0] == 200
        assert not c.spans.is_open  # all of the above answered while the store was still opening
        gate.set()
        assert c.flush(10) and c.spans.count == 7  # what was stored before the restart, and what came meanwhile
        assert _health(c)[1]["trace_store"] == "ok"
    finally:
        gate.set()
        starting.join(60)
        for c in started:
            assert _stop_within(c, 15)


def test_a_store_that_cannot_open_degrades_answers_503_and_opens_with_a_later_write(monkeypatch) -> None:
    # a full disk as the store opens after a crash (the soak's tmpfs): queries get a reason, not a 500,
    # and the next write opens it once the disk is back
    from modeltel_collector.store import spanfile

    real_configure, failing = spanfile.configure, [True]

    def configure(conn):
        if failing[0]:
            raise sqlite3.OperationalError("disk I/O error")
        real_configure(conn)

    monkeypatch.setattr(spanfile, "configure", configure)
    with running_collector(otlp_grpc="") as c:
        deadline = time.monotonic() + 10
        while not c.spans.error:  # the writer thread's open failed
            assert time.monotonic() < deadline, "the failed open was not reported"
            time.sleep(0.01)
        status, doc = _health(c)
        assert (status, doc["status"], doc["trace_store"]) == (200, "degraded", "degraded: disk I/O error")
        status, _, body = http_get(c.urls["listen"] + "/api/traces?limit=1")
        assert (status, json.loads(body)["error"]) == (503, "trace store unavailable: disk I/O error")
        failing[0] = False
        assert http_post(c.urls["otlp_http"] + "/v1/traces", trace_request(2).SerializeToString(), PB)[0] == 200
        assert c.flush(10) and c.spans.count == 2 and _health(c)[1]["trace_store"] == "ok"
        assert http_get(c.urls["listen"] + "/api/traces?limit=1")[0] == 200


def test_a_read_in_flight_when_the_store_closes_ends_as_unavailable_not_on_a_closed_connection(tmp_path) -> None:
    """The API server stops after the store (``/metrics`` stays up while the collector drains): a trace
    query in flight at SIGTERM, and one after, are answered 503 by the API, never a 500 from a closed
    connection."""
    from modeltel_collector.store.spans import StoreUnavailable

    store = SpanStore(str(tmp_path / "traces.db"))
    store.open()
    inside, go_on, outcome = threading.Event(), threading.Event(), []

    def read() -> None:
        try:
            with store._reading():  # a search holding the reader connection
                inside.set()
                go_on.wait(10)
                store._reader.execute("SELECT count(*) FROM traces").fetchone()
            outcome.append("answered")
        except StoreUnavailable:
            outcome.append("unavailable")
        except sqlite3.Error as e:
            outcome.append(repr(e))

    reader = threading.Thread(target=read)
    reader.start()
    assert inside.wait(10)
    closer = threading.Thread(target=store.close)
    closer.start()
    go_on.set()
    reader.join(10)
    closer.join(10)
    assert not closer.is_alive() and outcome in (["answered"], ["unavailable"]), outcome
    try:
        store.services()
        late = "answered"
    except StoreUnavailable:
        late = "unavailable"
    assert late == "unavailable"
