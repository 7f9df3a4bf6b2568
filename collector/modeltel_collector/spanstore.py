"""Embedded trace store: SQLite in WAL mode, written in batches by one thread, bounded by age and span count.

Only the columns that the search API filters on are stored as columns; the span itself is kept as its
protobuf encoding, which is compact and decoded only when a trace is fetched.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from modeltel_collector.otlp import any_value_py

# trace_id, span_id, parent_span_id, service, model, stage, kind, name, status, start_ns, duration_ns, data
Row = tuple[bytes, bytes, bytes, str, str, str, str, str, int, int, int, bytes]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id BLOB NOT NULL, span_id BLOB NOT NULL, parent_span_id BLOB, service TEXT, model TEXT, stage TEXT,
    kind TEXT, name TEXT, status INTEGER, start_ns INTEGER, duration_ns INTEGER, data BLOB);
CREATE INDEX IF NOT EXISTS spans_trace ON spans (trace_id);
CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns);
"""
_INSERT = "INSERT INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
STATUS_NAMES = {Status.STATUS_CODE_UNSET: "unset", Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}
_STATUS_FILTERS = {"error": [2], "ok": [0, 1], "success": [0, 1], "unset": [0]}
_STOP = object()


class SpanStore:
    """Writes row batches on its own thread (SQLite releases the GIL); ``put`` blocks when it falls behind."""

    def __init__(self, path: str, max_age_s: float = 3600.0, max_spans: int = 1_000_000, queue_batches: int = 64):
        self.path = path
        self.max_age_s = max_age_s
        self.max_spans = max_spans
        self._queue: queue.Queue = queue.Queue(maxsize=queue_batches)
        self._read_lock = threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)
        self.count = self._writer.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
        self._reader = self._connect()
        self._thread = threading.Thread(target=self._run, name="modeltel-spanstore", daemon=True)
        self._last_prune = 0.0

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        return conn

    def start(self) -> None:
        self._thread.start()

    def put(self, rows: list[Row]) -> None:
        """Queue a batch for writing; blocks (back-pressure to the ingest queue) when the writer lags."""
        if rows:
            self._queue.put(rows)

    def pending(self) -> int:
        """Batches queued or being written (``unfinished_tasks`` only drops after the write commits)."""
        return self._queue.unfinished_tasks

    def close(self) -> None:
        """Write everything queued, then close."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._writer.close()
        self._reader.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._queue.task_done()
                return
            batch, taken, stop = list(item), 1, False
            while len(batch) < 20_000:  # coalesce queued batches into one transaction
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                taken += 1
                if more is _STOP:
                    stop = True
                    break
                batch.extend(more)
            self._write(batch)
            for _ in range(taken):
                self._queue.task_done()
            if stop:
                return

    def _write(self, rows: list[Row]) -> None:
        w = self._writer
        w.execute("BEGIN")
        w.executemany(_INSERT, rows)
        w.execute("COMMIT")
        self.count += len(rows)
        now = time.monotonic()
        if self.count > self.max_spans or now - self._last_prune > 5.0:
            self._last_prune = now
            self.prune()

    def prune(self, now_ns: int | None = None) -> int:
        """Delete spans older than max_age and the oldest beyond max_spans; returns rows deleted."""
        w = self._writer
        cutoff = (now_ns or time.time_ns()) - int(self.max_age_s * 1e9)
        deleted = w.execute("DELETE FROM spans WHERE start_ns < ?", (cutoff,)).rowcount
        excess = self.count - deleted - self.max_spans
        if excess > 0:
            # rowids grow with insertion order: drop the oldest ~10% extra so pruning is not per batch
            n = excess + self.max_spans // 10
            deleted += w.execute("DELETE FROM spans WHERE rowid <= (SELECT MIN(rowid) FROM spans) + ?", (n,)).rowcount
        self.count -= deleted
        return deleted

    # ---------------------------------------------------------------- reads (API threads)
    def get_trace(self, trace_id: bytes) -> list[dict[str, Any]]:
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT service, kind, data FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id,)
            ).fetchall()
        return [span_to_dict(Span.FromString(data), service) for service, _kind, data in rows]

    def search(
        self,
        service: str | None = None,
        model: str | None = None,
        stage: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        min_duration_ms: float | None = None,
        since_ns: int | None = None,
        sort: str = "recent",
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Traces having a span that matches every filter, one row per trace (its longest matching span)."""
        where, args = [], []
        for col, val in (("service", service), ("model", model), ("stage", stage), ("kind", kind), ("name", name)):
            if val:
                where.append(f"{col} = ?")
                args.append(val)
        if status:
            codes = _STATUS_FILTERS.get(status.lower())
            if codes is None:
                raise ValueError(f"status must be one of {sorted(_STATUS_FILTERS)}")
            where.append(f"status IN ({','.join('?' * len(codes))})")
            args.extend(codes)
        if min_duration_ms is not None:
            where.append("duration_ns >= ?")
            args.append(int(min_duration_ms * 1e6))
        if since_ns is not None:
            where.append("start_ns >= ?")
            args.append(since_ns)
        order = {"duration": "duration_ns DESC", "recent": "start_ns DESC"}.get(sort)
        if order is None:
            raise ValueError("sort must be 'duration' or 'recent'")
        sql = (
            "SELECT trace_id, span_id, service, model, stage, kind, name, status, start_ns, MAX(duration_ns) "
            f"FROM spans {'WHERE ' + ' AND '.join(where) if where else ''} GROUP BY trace_id "
            f"ORDER BY {order.replace('duration_ns', 'MAX(duration_ns)')} LIMIT ?"
        )
        args.append(max(1, min(int(limit), 1000)))
        with self._read_lock:
            rows = self._reader.execute(sql, args).fetchall()
        return [
            {
                "trace_id": r[0].hex(),
                "span_id": r[1].hex(),
                "service": r[2],
                "model": r[3],
                "stage": r[4],
                "kind": r[5],
                "name": r[6],
                "status": STATUS_NAMES.get(r[7], "unset"),
                "start_time_unix_nano": r[8],
                "duration_ms": r[9] / 1e6,
            }
            for r in rows
        ]


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
