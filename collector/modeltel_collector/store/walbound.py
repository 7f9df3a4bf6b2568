"""The trace store's WAL bound: reads and the writer's checkpoints take turns on the store's file.

SQLite reuses its write-ahead log from the start only when no reader's snapshot still needs it, so reads
back to back (a Jaeger search flood) keep its automatic, passive checkpoints from ever restarting it: the
WAL then grows with every write until the disk is full (7 GiB against a 1.6 GiB store in the soak). A
checkpoint run by a reader competes with the writer and does not help. So the writer, between two of its
transactions, holds new reads off, waits for the read in flight, and truncates the WAL with no read open.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator

from modeltel_collector.stats import Stats
from modeltel_collector.store import spanfile

_log = logging.getLogger("modeltel_collector")
# How long the writer waits for the read in flight (then its next write tries again), and how long a new
# read waits for a checkpoint at most: both well within max_unwritten_s (5 s by default).
CHECKPOINT_WAIT_S = 1.0
READ_HOLD_S = 5.0
CHECKPOINT_BUSY_MS = 200  # another process reading the file (this one's reads are held off)


class WalBound:
    """The lock of the store's reader connection, and the WAL checkpoint that takes it between writes."""

    def __init__(self, path: str, max_wal_bytes: int, stats: Stats | None) -> None:
        self.path, self.max_wal_bytes, self._stats = path, max_wal_bytes, stats
        self._read_lock = threading.Lock()
        self._reads_open = threading.Event()  # cleared while the writer waits to truncate the WAL
        self._reads_open.set()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the reader connection; a new read first waits (``READ_HOLD_S`` at most) for a checkpoint."""
        self._reads_open.wait(READ_HOLD_S)
        with self._read_lock:
            yield

    def checkpoint_if_over(self, writer: sqlite3.Connection) -> None:
        """Past ``max_wal_bytes``, copy the WAL into the database and truncate it (on the writer thread,
        between two transactions of ``writer``), counting the outcome.

        New reads are held off, then the read in flight is waited for (``CHECKPOINT_WAIT_S`` at most; if
        it runs longer, the next write tries again while new reads are still held off, so no flood can
        starve the checkpoint). With no read open the checkpoint only copies frames: the writer stalls for
        that copy and the read in flight, never for a stream of reads.
        """
        if self._reads_open.is_set() and spanfile.wal_bytes(self.path) <= self.max_wal_bytes:
            return
        self._reads_open.clear()
        if not self._read_lock.acquire(timeout=CHECKPOINT_WAIT_S):
            self._count("busy")
            return
        try:
            outcome = "truncated" if spanfile.truncate_wal(writer, CHECKPOINT_BUSY_MS) else "busy"
        except sqlite3.Error as e:  # disk full while copying: the store stays usable, the next write retries
            _log.warning("modeltel collector: trace store WAL checkpoint failed: %s", e)
            outcome = "error"
        finally:
            self._read_lock.release()
            self._reads_open.set()
        self._count(outcome)

    def _count(self, outcome: str) -> None:
        if self._stats is not None:
            self._stats.inc("modeltel_collector_trace_wal_checkpoints", outcome)
