"""How a trace search picks its traces from the store's rows, read newest first, within its row bound.

Apart from ``spans`` (the store's reads and writes) because this is the search's stopping rule: what
makes a search cost what its answer costs, not what the store holds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any


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
