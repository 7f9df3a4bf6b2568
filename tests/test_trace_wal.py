"""The trace store's WAL stays bounded while reads run back to back (issue 21: a Jaeger search flood kept
SQLite from ever reusing it, and it grew to 7 GiB in the soak, until the disk was full)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

from modeltel_collector.stats import Stats
from modeltel_collector.store.spans import SpanStore, TraceRow

BOUND = 1 << 20


def _batch(n: int, rows: int = 50, payload: int = 4000) -> list[TraceRow]:
    row = TraceRow(b"", "svc", "m", ",predict,", ",SERVER,", "predict", 0, 0, 1000, b"", 1, b"")
    return [
        row._replace(trace_id=os.urandom(16), start_ns=n * rows + i, span_id=os.urandom(8), data=os.urandom(payload))
        for i in range(rows)
    ]


@contextlib.contextmanager
def _store_with_readers(
    tmp_path, stats: Stats, n: int, read: Callable[[SpanStore, threading.Event], None]
) -> Iterator[tuple[SpanStore, list[int]]]:
    """An open store with ``n`` threads calling ``read(store, stop)`` over and over until the block ends
    (then joined, and the store closed); yields the store and each thread's count of reads."""
    store = SpanStore(str(tmp_path / "t.db"), stats=stats, max_queue_bytes=BOUND // 4, max_wal_bytes=BOUND)
    store.start()
    assert store.wait_open(10)
    stop, reads = threading.Event(), [0] * n

    def loop(k: int) -> None:
        while not stop.is_set():
            read(store, stop)
            reads[k] += 1

    threads = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    try:
        yield store, reads
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        store.close()


def test_reads_back_to_back_do_not_let_the_wal_outgrow_its_bound(tmp_path) -> None:
    stats = Stats()
    # a queue of 256 KB: the writer's transactions (queued batches coalesce) stay one batch or so;
    # a search in flight at every moment, as under the soak's Jaeger flood
    with _store_with_readers(tmp_path, stats, 3, lambda store, stop: store.search(limit=1000)) as (store, reads):
        largest = 0
        for n in range(200):  # 200 writes of 200 KB: 40 MB through the WAL
            store.put(_batch(n))
            largest = max(largest, store.wal_bytes())
        store._batches.close()  # wait until all is written (the readers keep reading meanwhile)
        largest = max(largest, store.wal_bytes())
    assert min(reads) > 0, reads
    checkpoints = dict(stats.counters.get("modeltel_collector_trace_wal_checkpoints", {}))
    # one transaction (<= 256 KB of rows, plus index pages) may land past the bound before the checkpoint
    assert largest < BOUND + (1 << 20), (largest, checkpoints, reads)
    assert checkpoints.get("truncated", 0) > 0, checkpoints


def test_slow_reads_one_after_another_cannot_starve_the_checkpoint(tmp_path) -> None:
    # each read outlasts the writer's wait for it (in the soak a Jaeger search of a GB store took seconds),
    # and 4 threads take turns: once the WAL is past its bound no new read may start, so the writer gets
    # its turn when the read in flight ends, while it goes on writing meanwhile
    stats, seen = Stats(), [0]

    def read(store: SpanStore, stop: threading.Event) -> None:
        with store._reading():  # a read that holds the reader connection for 1.5 s
            seen.append(store.wal_bytes())  # what the WAL was when it started
            stop.wait(1.5)

    with _store_with_readers(tmp_path, stats, 4, read) as (store, reads):
        truncated = n = 0
        while truncated < 3:  # on the old code: never (a read always holds the WAL, and the next follows)
            store.put(_batch(n))
            n += 1
            checkpoints = stats.counters.get("modeltel_collector_trace_wal_checkpoints", {})
            truncated = checkpoints.get("truncated", 0)
            assert n < 300, (dict(checkpoints), reads, store.wal_bytes())  # 60 MB written
    assert sum(reads) > 0, reads
    # no read starts while the WAL waits for its checkpoint (a write may commit just before the check)
    assert max(seen) < BOUND + (1 << 20), (max(seen), reads)
