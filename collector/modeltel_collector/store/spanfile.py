"""The trace store's SQLite file: its schema, connection settings, and what opening it costs.

Apart from ``spans`` (rows, writes, reads) because this is about the file: what a start after a crash has
to do before the store can be used (``SpanStore.open`` runs it on the writer thread), and the size of its
write-ahead log and how to empty it.
"""

from __future__ import annotations

import os
import sqlite3
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    trace_id BLOB NOT NULL, service TEXT, model TEXT, stages TEXT, kinds TEXT, name TEXT, status INTEGER,
    start_ns INTEGER, duration_ns INTEGER, span_id BLOB, span_count INTEGER, data BLOB, version TEXT);
CREATE INDEX IF NOT EXISTS traces_trace ON traces (trace_id);
CREATE INDEX IF NOT EXISTS traces_service_start ON traces (service, start_ns);
CREATE TABLE IF NOT EXISTS writes (max_rowid INTEGER PRIMARY KEY, written_ns INTEGER, spans INTEGER);
CREATE TABLE IF NOT EXISTS services (name TEXT PRIMARY KEY, written_ns INTEGER);
"""


def open_file(writer: sqlite3.Connection, reader: sqlite3.Connection) -> int:
    """Configure both connections, create or upgrade the schema; returns the spans stored.

    The first statement replays the WAL left by a crash: seconds for a WAL of GBs.
    """
    for conn in (writer, reader):
        configure(conn)
    writer.executescript(SCHEMA)
    if "version" not in {col[1] for col in writer.execute("PRAGMA table_info(traces)")}:  # an older store
        writer.execute("ALTER TABLE traces ADD COLUMN version TEXT")
    count = stored_spans(writer)
    if count and not writer.execute("SELECT 1 FROM services LIMIT 1").fetchone():  # an older store
        writer.execute("INSERT INTO services SELECT DISTINCT service, ? FROM traces", (time.time_ns(),))
    return count


def configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode syncs only at checkpoints (cheap), and keeps the store consistent through an OS
    # crash or power loss, where OFF could corrupt it; a process kill loses no committed row either way
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-32768")  # 32 MiB: keeps the trace_id index in memory


def stored_spans(conn: sqlite3.Connection) -> int:
    """Spans in the store, from ``writes`` (one row per write, deleted with its traces): summing
    ``traces.span_count`` reads every page of a GB store, seconds at start-up. An older store without
    ``writes`` rows is summed the slow way."""
    count = conn.execute("SELECT COALESCE(SUM(spans), 0) FROM writes").fetchone()[0]
    if count == 0 and conn.execute("SELECT 1 FROM traces LIMIT 1").fetchone():
        count = conn.execute("SELECT COALESCE(SUM(span_count), 0) FROM traces").fetchone()[0]
    return count


def wal_bytes(path: str) -> int:
    """The size of the write-ahead log of the store at ``path`` (0 without one)."""
    try:
        return os.path.getsize(path + "-wal")
    except OSError:
        return 0


def truncate_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> bool:
    """Copy every frame of the WAL into the database file and truncate the WAL to 0 bytes; False when a
    reader kept it busy for ``busy_timeout_ms`` (frames copied so far stay copied).

    SQLite reuses its WAL from the start only when no reader's snapshot still needs it, so reads back to
    back keep its automatic (passive) checkpoints from ever restarting it: the WAL then grows with every
    write. TRUNCATE waits (through the busy handler) for the readers; the caller keeps ``conn`` from
    writing meanwhile and should hold its own readers off, so that the wait is short.
    """
    before = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    try:
        busy, _frames, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(before)}")
    return not busy
