"""Delayed labels joined in the collector: feedback spans (from a labelling job) meet their prediction spans.

The prediction span carries ``modeltel.prediction.id`` (and the predicted value); the feedback span, sent
later by any process, carries the same id and ``correct`` or the true ``label``. Either may arrive first
(exports from two processes are not ordered), so an early label waits for its prediction. Both tables are
bounded: the oldest entries are dropped and counted. A label joins at most once; a repeat is counted as a
duplicate. The SDK joins in-process the same way (``modeltel/feedback.py``); this is its collector side.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass
class JoinStats:
    joined: int = 0
    duplicate: int = 0
    dropped_predictions: int = 0
    dropped_labels: int = 0  # labels whose prediction never came before they were pushed out


@dataclass
class _Accuracy:
    labels: deque = field(default_factory=deque)  # (time, 1.0 | 0.0)
    right: float = 0.0


class LabelJoiner:
    def __init__(self, *, max_pending: int = 100_000, window_s: float = 3600.0) -> None:
        self.max_pending, self.window_s = max_pending, window_s
        self.predictions: OrderedDict[str, tuple[str, str, str | None]] = OrderedDict()
        self.early: OrderedDict[str, tuple[float, bool | None, str | None]] = OrderedDict()
        self.joined_ids: OrderedDict[str, None] = OrderedDict()
        self.accuracy: dict[tuple[str, str], _Accuracy] = {}
        self.stats = JoinStats()

    def prediction(self, pid: str, model: str, version: str, value: str | None) -> tuple | None:
        """Remember a prediction; returns the join (time, model, version, correct) if its label came first."""
        early = self.early.pop(pid, None)
        if early is not None:
            return self._join(pid, (model, version, value), *early)
        self.predictions[pid] = (model, version, value)
        _bound(self.predictions, self.max_pending, self.stats, "dropped_predictions")
        return None

    def label(self, pid: str, time: float, correct: bool | None, label: str | None) -> tuple | None:
        """A label; returns the join (time, model, version, correct), or None (waiting, or a duplicate)."""
        if pid in self.joined_ids:
            self.stats.duplicate += 1
            return None
        entry = self.predictions.pop(pid, None)
        if entry is None:
            self.early[pid] = (time, correct, label)
            _bound(self.early, self.max_pending, self.stats, "dropped_labels")
            return None
        return self._join(pid, entry, time, correct, label)

    def _join(self, pid: str, entry: tuple, time: float, correct: bool | None, label: str | None) -> tuple | None:
        model, version, value = entry
        if correct is None:
            if value is None:  # a label, but no predicted value to compare it with: not guessed
                self.stats.dropped_labels += 1
                return None
            correct = label == value
        self.joined_ids[pid] = None
        _bound(self.joined_ids, self.max_pending, None, "")
        acc = self.accuracy.setdefault((model, version), _Accuracy())
        acc.labels.append((time, 1.0 if correct else 0.0))
        acc.right += 1.0 if correct else 0.0
        while acc.labels and acc.labels[0][0] < time - self.window_s:
            acc.right -= acc.labels.popleft()[1]
        self.stats.joined += 1
        return time, model, version, correct


def _bound(table: OrderedDict, size: int, stats: JoinStats | None, counter: str) -> None:
    while len(table) > size:
        table.popitem(last=False)
        if stats is not None:
            setattr(stats, counter, getattr(stats, counter) + 1)
