"""Delayed labels joined to their predictions, and online accuracy over a sliding window of labels.

The one implementation of the join: the SDK's in-process :class:`modeltel.feedback.FeedbackJoiner` and the
collector's ``LabelJoiner`` (feedback spans meeting prediction spans) both build on :class:`LabelJoin`, so
a label is judged, deduplicated and windowed the same way wherever it is joined. A leaf (standard library
only): the collector imports it without importing the SDK's pipeline.

Rules: a prediction waits in a bounded table (oldest dropped first, counted); a label joins at most once
(a repeat is a duplicate, counted, never used twice); a label for an id not waiting is unknown (the caller
decides what that means: forward it, or hold it until its prediction comes); ``label=`` is compared with
the remembered prediction, and a label with no prediction to compare it with is dropped and counted, not
guessed. Accuracy is per model over the labels of the last ``window_s`` seconds.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DUPLICATE", "JOINED", "NO_VALUE", "UNKNOWN", "AccuracyWindow", "JoinStats", "Joined", "LabelJoin", "bound"]

Model = tuple[str, str]  # (model name, model version)
JOINED, DUPLICATE, UNKNOWN, NO_VALUE = "joined", "duplicate", "unknown", "no_value"


@dataclass
class JoinStats:
    joined: int = 0
    duplicate: int = 0
    unknown: int = 0  # labels whose prediction was not waiting (never remembered, dropped, or not yet come)
    dropped_predictions: int = 0  # remembered predictions evicted to keep memory bounded
    dropped_labels: int = 0  # labels that could not be judged (no prediction to compare) or were evicted


@dataclass
class AccuracyWindow:
    """The labels of the last ``window_s`` seconds of one model: (time, 1.0 right | 0.0 wrong), and their sum."""

    window_s: float
    labels: deque = field(default_factory=deque)
    right: float = 0.0

    def add(self, time: float, *, correct: bool) -> None:
        """Add a label at ``time`` and forget those older than the window before it."""
        self.labels.append((time, 1.0 if correct else 0.0))
        self.right += 1.0 if correct else 0.0
        while self.labels and self.labels[0][0] < time - self.window_s:
            self.right -= self.labels.popleft()[1]

    @property
    def accuracy(self) -> float | None:
        return self.right / len(self.labels) if self.labels else None


@dataclass(frozen=True)
class Joined:
    """A label that joined its prediction, and the model's window after it."""

    model: Model
    correct: bool
    accuracy: float
    labelled: int


@dataclass
class _Waiting:
    model: Model
    value: Any


def bound(table: OrderedDict, size: int, stats: JoinStats | None = None, counter: str = "") -> None:
    """Drop ``table``'s oldest entries beyond ``size``, counting each in ``stats.<counter>``."""
    while len(table) > size:
        table.popitem(last=False)
        if stats is not None:
            setattr(stats, counter, getattr(stats, counter) + 1)


class LabelJoin:
    """Predictions waiting for labels, the ids already joined, and each model's accuracy window.

    Not thread-safe: a caller that shares it across threads holds its own lock.
    """

    def __init__(self, *, max_pending: int = 100_000, window_s: float = 3600.0) -> None:
        self.max_pending, self.window_s = max_pending, window_s
        self.pending: OrderedDict[str, _Waiting] = OrderedDict()
        self.joined_ids: OrderedDict[str, None] = OrderedDict()  # to tell duplicates from unknown ids
        self.windows: dict[Model, AccuracyWindow] = {}
        self.stats = JoinStats()

    def remember(self, pid: str, model: Model, value: Any = None) -> None:
        """Let ``pid``'s label join later; ``value`` is what ``label=`` is compared with (None: ``correct=`` only)."""
        self.pending[pid] = _Waiting(model, value)
        self.pending.move_to_end(pid)
        bound(self.pending, self.max_pending, self.stats, "dropped_predictions")

    def label(self, pid: str, time: float, *, correct: bool | None, label: Any = None) -> tuple[str, Joined | None]:
        """Join a label (``correct``, or ``label`` compared with the prediction) given at ``time``.

        Returns (JOINED, the join), or (DUPLICATE | UNKNOWN | NO_VALUE, None).
        """
        if pid in self.joined_ids:
            self.stats.duplicate += 1
            return DUPLICATE, None
        entry = self.pending.pop(pid, None)
        if entry is None:
            self.stats.unknown += 1
            return UNKNOWN, None
        if correct is None:
            if entry.value is None:  # a label, but no predicted value to compare it with: not guessed
                self.stats.dropped_labels += 1
                return NO_VALUE, None
            correct = label == entry.value
        self.joined_ids[pid] = None
        bound(self.joined_ids, self.max_pending)
        window = self.windows.setdefault(entry.model, AccuracyWindow(self.window_s))
        window.add(time, correct=bool(correct))
        self.stats.joined += 1
        return JOINED, Joined(entry.model, bool(correct), window.right / len(window.labels), len(window.labels))
