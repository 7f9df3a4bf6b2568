"""The trace store's writer thread: a queue bounded in bytes, and a fault policy that never lets it die.

A writer thread that dies wedges the whole collector (the ingest worker blocks on a queue nobody empties,
every request gets 429 and shutdown hangs), so here nothing a row or the disk does can end the thread:

- a row SQLite cannot bind (a poison record) is skipped alone: the batch is retried row by row;
- a storage error (disk full, I/O error) is retried after a short back-off, then the oldest stored spans
  are shed to make room, and only then is the batch dropped, counted by reason;
- while a storage error lasts the store reports itself degraded (``error``), and the next successful write
  clears it, so ingest recovers by itself once space is back.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from modeltel_collector.stats import Stats

_log = logging.getLogger("modeltel_collector")
_SQLITE_FULL = 13
_ROW_OVERHEAD = 128  # bytes a queued row costs beyond its span data (tuple, columns)
_BACKOFF_S = (0.05, 0.25)  # waits before the 2nd and 3rd attempt of a batch, while not already degraded


def is_disk_full(error: Exception) -> bool:
    return getattr(error, "sqlite_errorcode", None) == _SQLITE_FULL or "full" in str(error).lower()


def batch_bytes(rows: Sequence[Any]) -> int:
    return sum(len(r.data) + _ROW_OVERHEAD for r in rows)


class BatchWriter:
    """Runs ``write(rows)`` on its own thread for every batch ``put``; ``put`` blocks while the queue is full.

    ``write_rows(rows)`` writes what it can row by row and returns the rows it could not bind; ``shed()``
    deletes the oldest stored data and returns how much it freed (0: nothing left to free). ``prepare()``
    runs first on the thread (the store's slow open); if it fails, the store is degraded and ``write`` is
    expected to try again. ``idle()`` runs on the thread after each second with nothing to write (the
    store's upkeep that must not wait for the next write).
    """

    def __init__(
        self,
        write: Callable[[list[Any]], None],
        write_rows: Callable[[list[Any]], list[Any]],
        shed: Callable[[], int],
        stats: Stats | None,
        max_queue_bytes: int,
        prepare: Callable[[], None] = lambda: None,
        max_batch_rows: int = 20_000,
        idle: Callable[[], None] = lambda: None,
    ) -> None:
        self._write, self._write_rows, self._shed, self._prepare = write, write_rows, shed, prepare
        self._idle = idle
        self._stats = stats
        self.max_queue_bytes = max_queue_bytes
        self._max_batch_rows = max_batch_rows
        self._queue: deque[tuple[list[Any], int, float]] = deque()  # (rows, bytes, accepted at)
        self._writing_since = 0.0
        self.queued_bytes = 0
        self._unfinished = 0
        self._cond = threading.Condition()
        self._stopping = False
        self.error = ""  # the storage error while degraded, "" when healthy
        self.degraded_since = 0.0
        self._thread = threading.Thread(target=self._run, name="modeltel-spanstore", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, rows: list[Any], *, accepted: float | None = None) -> None:
        """Queue a batch accepted at ``accepted`` (monotonic; now if None); blocks while the queue is full
        (back-pressure: the ingest queue fills, clients get 429)."""
        size = batch_bytes(rows)
        with self._cond:
            while self._queue and self.queued_bytes + size > self.max_queue_bytes and self._thread.is_alive():
                self._cond.wait(0.5)
            self._queue.append((rows, size, time.monotonic() if accepted is None else accepted))
            self.queued_bytes += size
            self._unfinished += 1
            self._cond.notify_all()

    def oldest_pending(self) -> float:
        """When the oldest batch queued or being written was accepted (monotonic); 0.0 when none."""
        with self._cond:
            return self._writing_since or (self._queue[0][2] if self._queue else 0.0)

    def pending(self) -> int:
        """Batches queued or being written."""
        with self._cond:
            return self._unfinished

    def close(self, timeout_s: float | None = None) -> bool:
        """Write everything queued, then stop; False if that did not finish within ``timeout_s``."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _take(self) -> tuple[list[Any], int, int] | None:
        """Coalesce queued batches into one transaction: (rows, batches taken, bytes); None when stopping,
        no rows after a second with nothing queued."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                if not self._cond.wait(1.0) and not self._queue:
                    return [], 0, 0
            rows, taken, size = [], 0, 0
            self._writing_since = self._queue[0][2]
            while self._queue and (not rows or len(rows) + len(self._queue[0][0]) <= self._max_batch_rows):
                batch, n, _ = self._queue.popleft()
                rows.extend(batch)
                taken, size = taken + 1, size + n
            return rows, taken, size

    def _run(self) -> None:
        try:
            self._prepare()
        except sqlite3.DatabaseError as e:
            self._set_error(e)
        except Exception:  # reported; the writes that follow meet the same fault and are dropped, counted
            _log.exception("modeltel collector: trace store did not open")
        while True:
            item = self._take()
            if item is None:
                return
            rows, taken, size = item
            if not rows:
                self._run_idle()
                continue
            try:
                self.write_safely(rows)
            except Exception:  # a bug here must not end the thread: that would wedge ingest for good
                _log.exception("modeltel collector: trace store write failed; %d rows dropped", len(rows))
                self._drop(rows, "spans_store_error")
            finally:
                with self._cond:
                    self.queued_bytes -= size
                    self._unfinished -= taken
                    self._writing_since = 0.0
                    self._cond.notify_all()

    def _run_idle(self) -> None:
        try:
            self._idle()
        except Exception:  # upkeep failing must not end the thread either
            _log.exception("modeltel collector: trace store upkeep failed")

    def write_safely(self, rows: list[Any]) -> None:
        """Write ``rows``; a storage error is retried after a back-off, then after shedding the oldest data.

        Healthy store: fail, wait 50 ms, retry; fail, wait 250 ms and shed, retry; fail: drop the rows.
        Already degraded: no waits (they would only stall ingest), shed before each retry.
        """
        error: Exception | None = None
        degraded = bool(self.error)
        for attempt in range(3):
            if attempt:
                if not degraded:
                    time.sleep(_BACKOFF_S[attempt - 1])
                if attempt == 2 or degraded:
                    self._shed()  # oldest-first: make room for what was acknowledged last
            try:
                self._write(rows)
            except sqlite3.DatabaseError as e:  # disk full, I/O error, corrupt page: the storage, not the rows
                error = e
                self._set_error(e)
                continue
            except (OverflowError, ValueError, TypeError, sqlite3.InterfaceError):  # a row SQLite cannot bind
                bad = self._write_rows(rows)
                self._drop(bad, "spans_unstorable")
            if self.error:
                _log.warning("modeltel collector: trace store recovered after: %s", self.error)
                self.error, self.degraded_since = "", 0.0
            return
        assert error is not None
        self._drop(rows, "spans_store_full" if is_disk_full(error) else "spans_store_error")

    def _set_error(self, error: Exception) -> None:
        if not self.error:
            _log.error("modeltel collector: trace store degraded: %s", error)
            self.degraded_since = time.time()
        self.error = str(error) or type(error).__name__

    def _drop(self, rows: list[Any], reason: str) -> None:
        spans = sum(r.span_count for r in rows)
        if spans and self._stats is not None:
            self._stats.inc("modeltel_collector_dropped", reason, spans)
