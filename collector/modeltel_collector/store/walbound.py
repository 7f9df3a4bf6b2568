"""The trace store's WAL bound: reads and the writer's checkpoints take turns on the store's file.

SQLite reuses its write-ahead log from the start only when no reader's snapshot still needs it, so reads
back to back (a Jaeger search flood) keep its automatic, passive checkpoints from ever restarting it: the
WAL then grows with every write until the disk is full (7 GiB against a 1.6 GiB store in the soak). A
checkpoint run by a reader competes with the writer and does not help. So once the WAL is past its bound,
no new read starts; the writer goes on writing, and truncates the WAL as soon as the read in flight ends.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator

from modeltel_collector.stats import Stats
from modeltel_collector.store import spanfile

_log = logging.getLogger("modeltel_collector")
# How long the writer waits for the read in flight after each write (then it writes on, and tries again
# after its next write or idle second), and how long reads are held off for a pending checkpoint at most,
# counted from the writer's latest try: a safety net should the writer be stuck. (Counted from each read's
# arrival instead, a queue of slow Jaeger searches always held one that had waited that long, which took
# the connection before the writer came back: the soak's WAL still grew to GiBs.)
CHECKPOINT_WAIT_S = 0.2
READ_HOLD_S = 10.0
CHECKPOINT_BUSY_MS = 200  # another process reading the file (this one's reads are held off)


class WalBound:
    """The turn of the store's one reader connection, and the WAL checkpoint that takes it between writes."""

    def __init__(self, path: str, max_wal_bytes: int, stats: Stats | None) -> None:
        self.path, self.max_wal_bytes, self._stats = path, max_wal_bytes, stats
        self._cond = threading.Condition()
        self._busy = False  # the reader connection (or the checkpoint) is in use
        self._wanted = False  # the WAL is past its bound: no new read starts until it is truncated
        self._tried_at = 0.0  # the writer's latest try at a pending checkpoint

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the reader connection; while a checkpoint is pending, a new read waits for it first."""
        with self._cond:
            while True:
                held_for = self._tried_at + READ_HOLD_S - time.monotonic() if self._wanted else 0.0
                if not self._busy and held_for <= 0:
                    break
                self._cond.wait(held_for if held_for > 0 else None)
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def checkpoint_if_over(self, writer: sqlite3.Connection) -> None:
        """Past ``max_wal_bytes``, copy the WAL into the database and truncate it (on the writer thread,
        between two transactions of ``writer``), counting the outcome.

        New reads are held off from then on; the read in flight is waited for ``CHECKPOINT_WAIT_S`` at most, else the
        writer writes on and tries again after its next write (or after a second idle), so neither a read
        flood nor one slow read can starve the checkpoint, and the writer never stalls on the reads. With
        no read open the checkpoint only copies frames.
        """
        with self._cond:
            if not self._wanted:
                if spanfile.wal_bytes(self.path) <= self.max_wal_bytes:
                    return
                self._wanted = True
            self._tried_at = time.monotonic()
            if not self._cond.wait_for(lambda: not self._busy, CHECKPOINT_WAIT_S):
                return  # a read in flight: new reads stay held off, the next write tries again
            self._busy = True
        try:
            outcome = "truncated" if spanfile.truncate_wal(writer, CHECKPOINT_BUSY_MS) else "busy"
        except sqlite3.Error as e:  # disk full while copying: the store stays usable, the next write retries
            _log.warning("modeltel collector: trace store WAL checkpoint failed: %s", e)
            outcome = "error"
        finally:
            self._release(done=True)
        if self._stats is not None:
            self._stats.inc("modeltel_collector_trace_wal_checkpoints", outcome)

    def cancel(self) -> None:
        """Let reads go on without the pending checkpoint: the writer will not come back to it soon (a
        failed write: the store is degraded; the store is closing); its next write checks the WAL again."""
        self._release(done=True, reading=False)

    def _release(self, *, done: bool = False, reading: bool = True) -> None:
        with self._cond:
            self._busy = self._busy and not reading
            self._wanted = self._wanted and not done
            self._cond.notify_all()
