"""The trace store's WAL stays bounded while reads run back to back (issue 21: a Jaeger search flood kept
SQLite from ever reusing it, and it grew to 7 GiB in the soak, until the disk was full)."""

from __future__ import annotations

import os
import threading

from modeltel_collector.stats import Stats
from modeltel_collector.store.spans import SpanStore, TraceRow

BOUND = 1 << 20


def _batch(n: int, rows: int = 50, payload: int = 4000) -> list[TraceRow]:
    row = TraceRow(b"", "svc", "m", ",predict,", ",SERVER,", "predict", 0, 0, 1000, b"", 1, b"")
    return [
        row._replace(trace_id=os.urandom(16), start_ns=n * rows + i, span_id=os.urandom(8), data=os.urandom(payload))
        for i in range(rows)
    ]


def test_reads_back_to_back_do_not_let_the_wal_outgrow_its_bound(tmp_path) -> None:
    stats = Stats()
    # a queue of 256 KB: the writer's transactions (queued batches coalesce) stay one batch or so
    store = SpanStore(str(tmp_path / "t.db"), stats=stats, max_queue_bytes=BOUND // 4, max_wal_bytes=BOUND)
    store.start()
    assert store.wait_open(10)
    stop, reads = threading.Event(), [0] * 3

    def read(k: int) -> None:  # a search in flight at every moment, as under the soak's Jaeger flood
        while not stop.is_set():
            store.search(limit=1000)
            reads[k] += 1

    readers = [threading.Thread(target=read, args=(k,), daemon=True) for k in range(len(reads))]
    for t in readers:
        t.start()
    largest = 0
    try:
        for n in range(200):  # 200 writes of 200 KB: 40 MB through the WAL
            store.put(_batch(n))
            largest = max(largest, store.wal_bytes())
        store._batches.close()  # wait until all is written (the readers keep reading meanwhile)
        largest = max(largest, store.wal_bytes())
    finally:
        stop.set()
        for t in readers:
            t.join(30)
        store.close()
    assert min(reads) > 0, reads
    checkpoints = dict(stats.counters.get("modeltel_collector_trace_wal_checkpoints", {}))
    # one transaction (<= 256 KB of rows, plus index pages) may land past the bound before the checkpoint
    assert largest < BOUND + (1 << 20), (largest, checkpoints, reads)
    assert checkpoints.get("truncated", 0) > 0, checkpoints


def test_slow_reads_one_after_another_cannot_starve_the_checkpoint(tmp_path) -> None:
    # each read outlasts the writer's wait for it (in the soak a Jaeger search of a GB store took seconds),
    # and 4 threads take turns: once the WAL is past its bound no new read may start, so the writer gets
    # its turn when the read in flight ends, while it goes on writing meanwhile
    stats = Stats()
    store = SpanStore(str(tmp_path / "t.db"), stats=stats, max_queue_bytes=BOUND // 4, max_wal_bytes=BOUND)
    store.start()
    assert store.wait_open(10)
    stop, reads, seen = threading.Event(), [0] * 4, [0]

    def read(k: int) -> None:
        while not stop.is_set():
            with store._reading():  # a read that holds the reader connection for 1.5 s
                seen.append(store.wal_bytes())  # what the WAL was when it started
                stop.wait(1.5)
            reads[k] += 1

    readers = [threading.Thread(target=read, args=(k,), daemon=True) for k in range(len(reads))]
    for t in readers:
        t.start()
    truncated = 0
    try:
        n = 0
        while truncated < 3:  # on the old code: never (a read always holds the WAL, and the next follows)
            store.put(_batch(n))
            n += 1
            checkpoints = stats.counters.get("modeltel_collector_trace_wal_checkpoints", {})
            truncated = checkpoints.get("truncated", 0)
            assert n < 300, (dict(checkpoints), reads, store.wal_bytes())  # 60 MB written
    finally:
        stop.set()
        for t in readers:
            t.join(30)
        store.close()
    assert sum(reads) > 0, reads
    # no read starts while the WAL waits for its checkpoint (a write may commit just before the check)
    assert max(seen) < BOUND + (1 << 20), (max(seen), reads)
