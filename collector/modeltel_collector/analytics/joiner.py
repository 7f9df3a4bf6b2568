"""Delayed labels joined in the collector: feedback spans (from a labelling job) meet their prediction spans.

The prediction span carries ``modeltel.prediction.id`` (and the predicted value); the feedback span, sent
later by any process, carries the same id and ``correct`` or the true ``label``. Either may arrive first
(exports from two processes are not ordered), so an early label waits for its prediction in a table of its
own, bounded in entries and in bytes (oldest dropped first, counted in ``stats.dropped_labels``; the text
in it is capped at ingest, ``facts.MAX_TEXT``). The join itself (bounded tables with counted drops, at most
one label per id, no guessing, the sliding accuracy window) is :class:`modeltel.labeljoin.LabelJoin`, the
one the SDK joins with in-process.
"""

from __future__ import annotations

import sys
from collections import OrderedDict

from modeltel.labeljoin import UNKNOWN, AccuracyWindow, JoinStats, LabelJoin

__all__ = ["LabelJoiner"]


class LabelJoiner:
    """Prediction spans and feedback spans, joined whichever comes first; not thread-safe (the analytics
    thread owns it)."""

    def __init__(
        self, *, max_pending: int = 100_000, max_early_bytes: int = 16 << 20, window_s: float = 3600.0
    ) -> None:
        self.max_pending, self.max_early_bytes = max_pending, max_early_bytes
        self.join = LabelJoin(max_pending=max_pending, window_s=window_s)
        self.early: OrderedDict[str, tuple[float, bool | None, str | None]] = OrderedDict()
        self.early_bytes = 0  # what ``early`` holds, by ``_size``

    @property
    def stats(self) -> JoinStats:
        return self.join.stats

    @property
    def accuracy(self) -> dict[tuple[str, str], AccuracyWindow]:
        """Each model version's accuracy window."""
        return self.join.windows

    def prediction(self, pid: str, model: str, version: str, value: str | None) -> tuple | None:
        """Remember a prediction; returns the join (time, model, version, correct) if its label came first."""
        self.join.remember(pid, (model, version), value)
        early = self.early.pop(pid, None)
        if early is None:
            return None
        self.early_bytes -= _size(pid, early[2])
        return self.label(pid, *early)

    def label(self, pid: str, time: float, correct: bool | None, label: str | None) -> tuple | None:
        """A label; returns the join (time, model, version, correct), or None (waiting, a duplicate, or not
        judged: a ``label`` whose prediction span carried no value to compare it with)."""
        outcome, joined = self.join.label(pid, time, correct=correct, label=label)
        if outcome == UNKNOWN:  # its prediction has not come (yet): the label waits for it
            self._wait(pid, (time, correct, label))
        return None if joined is None else (time, *joined.model, joined.correct)

    def _wait(self, pid: str, entry: tuple[float, bool | None, str | None]) -> None:
        """Keep an early label, dropping the oldest (counted) beyond ``max_pending`` or ``max_early_bytes``."""
        old = self.early.pop(pid, None)
        if old is not None:
            self.early_bytes -= _size(pid, old[2])
        self.early[pid] = entry
        self.early_bytes += _size(pid, entry[2])
        while self.early and (len(self.early) > self.max_pending or self.early_bytes > self.max_early_bytes):
            gone, (_, _, label) = self.early.popitem(last=False)
            self.early_bytes -= _size(gone, label)
            self.stats.dropped_labels += 1


def _size(pid: str, label: str | None) -> int:
    """An early label's bytes: its id and label strings, its tuple, float and its slot in the table."""
    return sys.getsizeof(pid) + (0 if label is None else sys.getsizeof(label)) + 200
