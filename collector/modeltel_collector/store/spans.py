"""Embedded trace store: SQLite in WAL mode, written in batches by one thread, bounded by age and span count
(and its WAL by bytes: ``walbound``).

Rows hold the spans of one trace that arrived in one request (a modeltel request is a root span plus its
stage spans, so typically one row per request), which divides the B-tree work per span; only the columns
the search API filters on are columns, the spans themselves stay protobuf-encoded until fetched.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans

from modeltel_collector.stats import Stats
from modeltel_collector.store import spanfile, spanservices
from modeltel_collector.store.spanrows import HIT_COLUMNS, INSERT, TraceRow, hit, span_to_dict
from modeltel_collector.store.spansearch import SearchHits, newest_traces, search_filter, search_limit
from modeltel_collector.store.spanwriter import BatchWriter
from modeltel_collector.store.walbound import WalBound

SEARCH_MAX_ROWS = 100_000  # stored rows one search examines at most (0.4 s merged across 50 services)


class StoreUnavailable(Exception):
    """A read while the trace store cannot be opened (a full disk, an I/O error) or is closing; the message
    says why."""


class SpanStore:
    """Writes row batches on its own thread (SQLite releases the GIL); ``put`` blocks when it falls behind.

    The writer's queue is bounded in bytes, and its fault policy (``spanwriter``) keeps it alive through
    poison rows and a full disk; ``error`` is the storage error while the store is degraded.
    """

    def __init__(
        self,
        path: str,
        max_age_s: float = 3600.0,
        max_spans: int = 1_000_000,
        stats: Stats | None = None,
        max_queue_bytes: int = 32 << 20,
        *,
        max_wal_bytes: int = 64 << 20,
        search_max_rows: int = SEARCH_MAX_ROWS,
        max_services: int = spanservices.MAX_SERVICES,
    ):
        self.path = path
        self.max_age_s = max_age_s
        self.max_spans = max_spans
        self.search_max_rows = search_max_rows
        self.max_services = max_services  # listed, and read by a search without a service (``spanservices``)
        self._stats = stats
        self._wal = WalBound(path, max_wal_bytes, stats)  # the reader connection's lock, and the WAL bound
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._writer = self._connect()
        self._reader = self._connect()
        self._closing = False  # reads from then on are answered StoreUnavailable, not a closed connection
        self.count = 0  # spans stored; known once the store is open
        self._open_lock = threading.Lock()
        self._opened = threading.Event()
        self._batches = BatchWriter(
            self._write, self._write_rows, self.shed, stats, max_queue_bytes, prepare=self.open, idle=self._idle
        )
        self._last_prune = 0.0

    @property
    def is_open(self) -> bool:
        """Whether the store has been opened (``open``): WAL recovered, schema checked, spans counted."""
        return self._opened.is_set()

    def open(self) -> None:
        """Recover and check the store: the slow part of opening, run once, by the writer thread at ``start``
        or by the first read or write, whichever comes first (the others wait for it).

        After a SIGKILL, SQLite replays the whole WAL on the first read (seconds for a WAL of GBs, which the
        reads of a busy trace API can keep from being checkpointed), so this is not done in ``__init__``:
        the collector binds /healthz, /metrics and its receivers while it runs. Ingest accepted meanwhile
        waits in the writer's bounded queue, under ``max_unwritten_s``, as any other write does.
        """
        if self._opened.is_set():
            return
        with self._open_lock:
            if self._opened.is_set():
                return
            self.count = spanfile.open_file(self._writer, self._reader)
            self._writer.execute("BEGIN")
            evicted = spanservices.evict(self._writer, self.max_services)  # an older or a roomier store's
            self._writer.execute("COMMIT")
            self._count_evicted(evicted)
            self._opened.set()

    def wait_open(self, timeout_s: float | None = None) -> bool:
        """Wait until the store is open (``open``); False if it was not within ``timeout_s``."""
        return self._opened.wait(timeout_s)

    def _connect(self) -> sqlite3.Connection:
        """A connection to the file: opening it reads nothing yet (``open`` configures it)."""
        return sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)

    def start(self) -> None:
        self._batches.start()

    def put(self, rows: list[TraceRow], *, accepted: float | None = None) -> None:
        """Queue a batch for writing; blocks (back-pressure to the ingest queue) when the writer lags.

        ``accepted``: when the collector acknowledged these rows (monotonic; now if None), so that
        ``oldest_pending`` ages them from their acknowledgement, not from when they reached the store.
        """
        if rows:
            self._batches.put(rows, accepted=accepted)

    def pending(self) -> int:
        """Batches queued or being written (the count only drops once the write committed or was shed)."""
        return self._batches.pending()

    @property
    def error(self) -> str:
        """The storage error while the store is degraded (disk full, I/O error); '' when healthy."""
        return self._batches.error

    def oldest_pending(self) -> float:
        """When the oldest row not yet written was queued (monotonic), 0.0 when all is written."""
        return self._batches.oldest_pending()

    @property
    def queued_bytes(self) -> int:
        return self._batches.queued_bytes

    def close(self, timeout_s: float | None = None) -> None:
        """Write everything queued, then close. A read in flight is interrupted and a later one refused,
        both as ``StoreUnavailable`` (the API answers 503): the API server stops after the store does."""
        self._closing = True
        if self._batches.close(timeout_s):
            self._writer.close()
        self._wal.cancel()
        self._reader.interrupt()
        with self._wal.reading():  # the reader connection's turn: never closed under a read
            self._reader.close()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Hold the reader connection (opening the store first if nobody has); ``StoreUnavailable`` while the
        store cannot be opened (the writer retries the open with each write) or is closing."""
        if self._closing:
            raise StoreUnavailable("the collector is stopping")
        try:
            self.open()
        except sqlite3.Error as e:
            raise StoreUnavailable(str(e) or type(e).__name__) from None
        with self._wal.reading():
            if self._closing:
                raise StoreUnavailable("the collector is stopping")
            try:
                yield
            except sqlite3.OperationalError:
                if self._closing:  # interrupted by close()
                    raise StoreUnavailable("the collector is stopping") from None
                raise

    def wal_bytes(self) -> int:
        """The size of the store's write-ahead log (0 without one)."""
        return spanfile.wal_bytes(self.path)

    def _write(self, rows: list[TraceRow]) -> None:
        self.open()
        w = self._writer
        spans = sum(r.span_count for r in rows)
        try:
            w.execute("BEGIN")
            # exact tuples: sqlite3 binds a tuple subclass ~0.9 us/row slower, more than this copy costs
            w.executemany(INSERT, map(tuple, rows))
            self._commit(spans, {r.service for r in rows})
        except BaseException:
            self._rollback()
            self._wal.cancel()  # held reads must not wait for a degraded store
            raise
        now = time.monotonic()
        if self.count > self.max_spans or now - self._last_prune > 5.0:
            self._last_prune = now
            try:  # the rows are committed: a failed prune must not make the caller write them again
                self.prune()
            except sqlite3.Error:
                self._rollback()
        self._wal.checkpoint_if_over(w)  # the reads back to back would keep SQLite from reusing the WAL

    def _idle(self) -> None:
        """A checkpoint the last write left pending (a read was in flight) must not wait for more writes."""
        if self.is_open:
            self._wal.checkpoint_if_over(self._writer)

    def _write_rows(self, rows: list[TraceRow]) -> list[TraceRow]:
        """Insert row by row, skipping rows SQLite cannot bind; returns the skipped rows."""
        self.open()
        w, bad, spans, services = self._writer, [], 0, set()
        w.execute("BEGIN")
        try:
            for r in rows:
                try:
                    w.execute(INSERT, tuple(r))
                    spans += r.span_count
                    services.add(r.service)
                except (OverflowError, ValueError, TypeError, sqlite3.InterfaceError):
                    bad.append(r)
            self._commit(spans, services)
        except BaseException:
            self._rollback()
            raise
        return bad

    def _commit(self, spans: int, services: set[str]) -> None:
        w, now_ns = self._writer, time.time_ns()
        if spans:  # nothing written (every row unbindable): the last write's record stays as it is
            last = w.execute("SELECT MAX(rowid) FROM traces").fetchone()[0]
            w.execute("INSERT OR REPLACE INTO writes VALUES (?, ?, ?)", (last, now_ns, spans))
        evicted = spanservices.record(w, services, now_ns, self.max_services)
        w.execute("COMMIT")
        self.count += spans
        self._count_evicted(evicted)

    def _count_evicted(self, services: int) -> None:
        if services and self._stats is not None:
            self._stats.inc("modeltel_collector_truncated", "trace_services", services)

    def _rollback(self) -> None:
        if self._writer.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._writer.execute("ROLLBACK")

    def shed(self) -> int:
        """Delete the oldest tenth of the stored spans (at least one write) to make room; returns spans deleted."""
        try:
            deleted = self.prune(shed=max(1, self.count // 10))
        except sqlite3.Error:
            self._rollback()
            return 0
        if deleted and self._stats is not None:
            self._stats.inc("modeltel_collector_dropped", "spans_shed_storage_full", deleted)
        return deleted

    def prune(self, now_ns: int | None = None, shed: int = 0) -> int:
        """Delete writes received before max_age, the oldest beyond max_spans and ``shed`` more; returns spans deleted.

        Rowids grow with arrival and ``writes`` records each write's last rowid, time and span count, so
        both bounds become one range delete on the rowid, with no per-row time index to maintain.
        """
        self.open()
        w = self._writer
        cutoff = (now_ns or time.time_ns()) - int(self.max_age_s * 1e9)
        excess = self.count - self.max_spans
        if excess > 0:
            excess += self.max_spans // 10  # go ~10% under the bound, so pruning is not per batch
        excess = max(excess, shed)
        upto, deleted = 0, 0
        for max_rowid, written_ns, spans in w.execute("SELECT * FROM writes ORDER BY max_rowid").fetchall():
            if written_ns >= cutoff and deleted >= excess:
                break
            upto, deleted = max_rowid, deleted + spans
        if not upto:
            return 0
        w.execute("BEGIN")
        w.execute("DELETE FROM traces WHERE rowid <= ?", (upto,))
        w.execute("DELETE FROM writes WHERE max_rowid <= ?", (upto,))
        w.execute("DELETE FROM services WHERE written_ns < ?", (cutoff,))  # silent for max_age: gone
        w.execute("COMMIT")
        self.count -= deleted
        return deleted

    # ---------------------------------------------------------------- reads (API threads)
    def get_trace(self, trace_id: bytes, max_spans: int) -> list[dict[str, Any]]:
        """The trace's spans by start time: the first that arrived, at most ``max_spans`` (every read is
        bounded: callers pass ``trace_fetch_max_spans`` or what is left of it).

        Rows are decoded one at a time and reading stops at the cap, so a trace of 300k spans costs what
        ``max_spans`` costs, in time, memory and in how long the read lock is held against other searches.
        """
        spans: list[dict[str, Any]] = []
        with self._reading():
            cursor = self._reader.execute(
                "SELECT service, data FROM traces WHERE trace_id = ? ORDER BY rowid", (trace_id,)
            )
            for service, data in cursor:
                row = ScopeSpans.FromString(data).spans
                spans.extend(span_to_dict(sp, service) for sp in itertools.islice(row, max_spans - len(spans)))
                if len(spans) >= max_spans:
                    break
            cursor.close()
        return sorted(spans, key=lambda s: s["start_time_unix_nano"])

    def services(self) -> list[str]:
        """Every service with a trace written within ``max_age_s``, up to the ``max_services`` written last
        (``spanservices``)."""
        with self._reading():
            return [name for (name,) in self._reader.execute("SELECT name FROM services ORDER BY name")]

    def trace_span_count(self, trace_id: bytes) -> int:
        """How many spans of the trace are stored (cheap: the span_count column, by the trace_id index)."""
        with self._reading():
            sql = "SELECT COALESCE(SUM(span_count), 0) FROM traces WHERE trace_id = ?"
            return self._reader.execute(sql, (trace_id,)).fetchone()[0]

    def search(
        self,
        service: str | None = None,
        model: str | None = None,
        stage: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        min_duration_ms: float | None = None,
        sort: str = "recent",
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Traces matching every filter, one row per trace, with its longest span's id and duration.

        Reads each service's rows newest first by the (service, start_ns) index (merged across the listed
        services, ``max_services`` at most, when ``service`` is None) and examines at most
        ``search_max_rows`` of them: a search costs what its answer costs, not what the store holds, and
        holds the WAL bound off for a bounded time.

        ``stage``/``kind`` match any span of the trace, ``status=error`` a trace with a failed span, and
        ``min_duration_ms`` the trace's longest span (its root, for complete traces).
        """
        match, args = search_filter(
            model=model, name=name, stage=stage, kind=kind, status=status, min_duration_ms=min_duration_ms
        )
        if sort not in ("duration", "recent"):
            raise ValueError("sort must be 'duration' or 'recent'")
        sql = f"SELECT start_ns, trace_id, duration_ns, {match} FROM traces WHERE service = ? ORDER BY start_ns DESC"
        with self._reading():
            names = [service] if service else [n for (n,) in self._reader.execute("SELECT name FROM services")]
            cursors = [self._reader.execute(sql, [*args, n]) for n in names]
            try:
                newest = heapq.merge(*cursors, reverse=True)
                ids, truncated = newest_traces(newest, sort, search_limit(limit), self.search_max_rows)
            finally:
                for cursor in cursors:  # a cursor left open would keep its read snapshot (and the WAL)
                    cursor.close()
            rows: dict[bytes, list[tuple]] = {i: [] for i in ids}
            for chunk in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
                part = ids[chunk : chunk + 500]
                sql = f"SELECT {HIT_COLUMNS} FROM traces WHERE trace_id IN ({','.join('?' * len(part))})"
                for row in self._reader.execute(sql, part):
                    rows[row[0]].append(row)
        if truncated and self._stats is not None:
            self._stats.inc("modeltel_collector_truncated", "trace_search")
        return SearchHits((hit(rows[i]) for i in ids), truncated=truncated)
