"""The trace store's list of services (``services`` table): what the Jaeger services list shows, and
which services a search without one reads, one cursor each.

Apart from ``spans`` because a client grows it: each new ``service.name`` is a row, so a client rotating
the name would grow the list, and every search without a service with it. It is bounded by a count and by
bytes of names; past either, the least recently written services leave the list (their traces stay in the
store, found by a search that names their service), counted in ``truncated_total{what="trace_services"}``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

MAX_SERVICES = 1_000  # a search without a service merges this many cursors at most: ~65 ms in all
MAX_BYTES = 1 << 20  # of names; a name longer than this alone never stays in the list


def record(conn: sqlite3.Connection, names: Iterable[str], now_ns: int, max_services: int) -> int:
    """Mark ``names`` written at ``now_ns``, then evict past the bounds; returns the services evicted.
    Runs inside the writer's transaction.

    The bounds are checked only when a name is new (the list cannot grow otherwise: a write of known
    services costs one insert attempt and one update each); a store opened over them is bounded by
    :func:`evict` on opening.
    """
    names = list(names)
    before = conn.total_changes
    conn.executemany("INSERT OR IGNORE INTO services VALUES (?, ?)", ((s, now_ns) for s in names))
    new = conn.total_changes - before
    conn.executemany("UPDATE services SET written_ns = ? WHERE name = ?", ((now_ns, s) for s in names))
    return evict(conn, max_services) if new else 0


def evict(conn: sqlite3.Connection, max_services: int) -> int:
    """Evict the least recently written services past ``max_services`` or ``MAX_BYTES`` of names; returns
    how many. The list is kept newest first, by ``written_ns`` then by insertion, and a name that does not
    fit in what is left of the bytes is evicted alone (a long one must not push out every other)."""
    count, size = conn.execute("SELECT COUNT(*), TOTAL(length(CAST(name AS BLOB))) FROM services").fetchone()
    if count <= max_services and size <= MAX_BYTES:
        return 0
    kept, size, evicted = 0, 0, []
    newest_first = "SELECT rowid, length(CAST(name AS BLOB)) FROM services ORDER BY written_ns DESC, rowid DESC"
    for rowid, n in conn.execute(newest_first):
        if kept < max_services and size + n <= MAX_BYTES:
            kept, size = kept + 1, size + n
        else:
            evicted.append((rowid,))
    conn.executemany("DELETE FROM services WHERE rowid = ?", evicted)
    return len(evicted)
