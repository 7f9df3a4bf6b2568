"""How a trace search picks its traces from the store's rows, read newest first, within its row bound.

Apart from ``spans`` (the store's reads and writes) because this is the search's own rules: which rows
match its filters, how many traces it returns, and its stopping rule, what makes a search cost what its
answer costs, not what the store holds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

MAX_SEARCH_LIMIT = 1000  # traces per search: each is a row to decode and send
_STATUS_FILTERS = {"error": [2], "ok": [0, 1], "success": [0, 1], "unset": [0]}


class SearchHits(list):
    """A search's traces; ``truncated`` when the search stopped at ``search_max_rows`` rows examined, so
    older (``sort=recent``) or longer (``sort=duration``) matches may have been left unread."""

    def __init__(self, hits: Iterable[dict[str, Any]], *, truncated: bool) -> None:
        super().__init__(hits)
        self.truncated = truncated


def newest_traces(
    rows: Iterator[tuple[int, bytes, int, int]], sort: str, limit: int, max_rows: int
) -> tuple[list[bytes], bool]:
    """The ids of the ``limit`` traces first in ``sort`` order among ``rows`` (start_ns, trace_id,
    duration_ns, matches), newest first; True when ``max_rows`` rows were read before the answer was known.

    Newest first, a trace's first matching row has its latest matching start (what ``recent`` orders by),
    so a ``recent`` search stops at its ``limit``-th trace: a range of the (service, start_ns) index.
    """
    longest: dict[bytes, int] = {}  # trace -> its longest matching row's duration (insertion: newest first)
    for _start, trace_id, duration_ns, matches in itertools.islice(rows, max_rows):
        if matches:
            longest[trace_id] = max(duration_ns, longest.get(trace_id, 0))
            if sort == "recent" and len(longest) >= limit:
                return list(longest), False
    truncated = next(rows, None) is not None
    if sort == "duration":
        return sorted(longest, key=longest.__getitem__, reverse=True)[:limit], truncated
    return list(longest), truncated


def search_filter(
    *,
    model: str | None,
    name: str | None,
    stage: str | None,
    kind: str | None,
    status: str | None,
    min_duration_ms: float | None,
) -> tuple[str, list[Any]]:
    """The SQL expression true for a row that matches every filter given, and its arguments; ValueError
    for an unknown ``status``. None of these filters has an index: they are checked on the rows read."""
    where, args = [], []
    for col, val in (("model", model), ("name", name)):
        if val:
            where.append(f"{col} = ?")
            args.append(val)
    for col, val in (("stages", stage), ("kinds", kind)):
        if val:
            where.append(f"instr({col}, ?) > 0")
            args.append(f",{val},")
    if status:
        codes = _STATUS_FILTERS.get(status.lower())
        if codes is None:
            raise ValueError(f"status must be one of {sorted(_STATUS_FILTERS)}")
        where.append(f"status IN ({','.join('?' * len(codes))})")
        args.extend(codes)
    if min_duration_ms is not None:
        where.append("duration_ns >= ?")
        args.append(int(min_duration_ms * 1e6))
    return " AND ".join(where) or "1", args


def search_limit(limit: int) -> int:
    """The number of traces a search returns at most: ``limit`` within 1..MAX_SEARCH_LIMIT."""
    return max(1, min(int(limit), MAX_SEARCH_LIMIT))
