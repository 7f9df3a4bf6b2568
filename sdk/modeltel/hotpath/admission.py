"""Whether a new trace may start: the hot path's side of shedding whole traces under overload.

When the application makes spans faster than they can be exported, something must be left out. A
batch processor that refuses single spans as they arrive leaves broken traces (a prediction without
its stages, stages without their parent) and pays for every span it refuses. Deciding at the root
instead keeps every trace whole: the span processor (:mod:`modeltel.export.shedding`) raises
:attr:`TraceAdmission.shedding` when its buffer passes a high-water mark, and while it is up a new
modeltel trace root (a prediction, or a stage outside any) starts no span at all, which is cheaper than
a traced one; spans of traces already under way still end into the buffer and complete their trace.
A prediction shed this way is still held and kept if it fails or is slow, where ``keep_slow_and_failed``
is on (:mod:`.held`).

The flag is a plain attribute read once per root; only a shed prediction takes a lock, to count it.
"""

from __future__ import annotations

import threading

from .. import taxonomy as tx


class TraceAdmission:
    """The shedding flag one span processor raises and lowers, and the count of what it left out, by
    reason (``overload``: a trace not started; ``buffer_full``: a span of a trace under way refused at
    the buffer's hard bound, which leaves that trace partial)."""

    def __init__(self) -> None:
        self.shedding = False
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(tx.SHED_REASONS, 0)

    def count(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._counts[reason] += n

    def counts(self) -> dict[str, int]:
        """A copy of the counts by reason (every reason present, zero included)."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Forget the counts and lower the flag (a forked child starts with an empty buffer)."""
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(tx.SHED_REASONS, 0)
        self.shedding = False
