"""Delayed labels joined in the collector: feedback spans (from a labelling job) meet their prediction spans.

The prediction span carries ``modeltel.prediction.id`` (and the predicted value); the feedback span, sent
later by any process, carries the same id and ``correct`` or the true ``label``. Either may arrive first
(exports from two processes are not ordered), so an early label waits for its prediction in a bounded table
of its own. The join itself (bounded tables with counted drops, at most one label per id, no guessing, the
sliding accuracy window) is :class:`modeltel.labeljoin.LabelJoin`, the one the SDK joins with in-process.
"""

from __future__ import annotations

from collections import OrderedDict

from modeltel.labeljoin import UNKNOWN, AccuracyWindow, JoinStats, LabelJoin, bound

__all__ = ["LabelJoiner"]


class LabelJoiner:
    """Prediction spans and feedback spans, joined whichever comes first; not thread-safe (the analytics
    thread owns it)."""

    def __init__(self, *, max_pending: int = 100_000, window_s: float = 3600.0) -> None:
        self.max_pending = max_pending
        self.join = LabelJoin(max_pending=max_pending, window_s=window_s)
        self.early: OrderedDict[str, tuple[float, bool | None, str | None]] = OrderedDict()

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
        return None if early is None else self.label(pid, *early)

    def label(self, pid: str, time: float, correct: bool | None, label: str | None) -> tuple | None:
        """A label; returns the join (time, model, version, correct), or None (waiting, a duplicate, or not
        judged: a ``label`` whose prediction span carried no value to compare it with)."""
        outcome, joined = self.join.label(pid, time, correct=correct, label=label)
        if outcome == UNKNOWN:  # its prediction has not come (yet): the label waits for it
            self.early[pid] = (time, correct, label)
            bound(self.early, self.max_pending, self.stats, "dropped_labels")
        return None if joined is None else (time, *joined.model, joined.correct)
