"""Online accuracy from delayed ground truth: remember a prediction, join its label when it arrives.

Labels come seconds to days after the prediction, so each remembered prediction waits in a bounded table
(oldest dropped first, drops counted), keyed by a prediction id that is also put on the prediction's span
(``modeltel.prediction.id``), so a labelling job can find it in the trace store. A label joins at most
once: a repeated id is counted as a duplicate, an id never remembered (or already dropped) as unknown;
neither changes the accuracy. Accuracy is over a sliding window of the last ``window_s`` seconds of
labels per model version, published with ``set_online_accuracy`` as model_online_accuracy.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FeedbackStats:
    joined: int = 0
    unknown: int = 0
    duplicate: int = 0
    dropped: int = 0  # pending predictions evicted to keep memory bounded


@dataclass
class _Pending:
    model: tuple[str, str]
    prediction: Any
    at: float


@dataclass
class _Window:
    labels: deque = field(default_factory=deque)  # (time, 1.0 | 0.0)
    right: float = 0.0


class FeedbackJoiner:
    """The pending-prediction table and per-model accuracy windows; thread-safe."""

    def __init__(self, *, max_pending: int = 100_000, window_s: float = 3600.0, publish=None) -> None:
        self.max_pending, self.window_s, self.publish = max_pending, window_s, publish
        self.pending: OrderedDict[str, _Pending] = OrderedDict()
        self.joined_ids: OrderedDict[str, None] = OrderedDict()  # to tell duplicates from unknown ids
        self.windows: dict[tuple[str, str], _Window] = {}
        self.stats = FeedbackStats()
        self._lock = threading.Lock()

    def remember(self, model: tuple[str, str], prediction: Any = None, prediction_id: str | None = None) -> str:
        pid = prediction_id or uuid.uuid4().hex
        with self._lock:
            self.pending[pid] = _Pending(model, prediction, time.time())
            self.pending.move_to_end(pid)
            while len(self.pending) > self.max_pending:
                self.pending.popitem(last=False)
                self.stats.dropped += 1
        return pid

    def record(self, prediction_id: str, *, correct: bool | None = None, label: Any = None) -> str:
        """Join a label (``correct``, or ``label`` compared with the prediction): 'joined', 'duplicate', 'unknown'."""
        if (correct is None) == (label is None):
            raise TypeError("record_feedback takes exactly one of correct= or label=")
        now = time.time()
        with self._lock:
            entry = self.pending.pop(prediction_id, None)
            if entry is None:
                if prediction_id in self.joined_ids:
                    self.stats.duplicate += 1
                    return "duplicate"
                self.stats.unknown += 1
                return "unknown"
            self.joined_ids[prediction_id] = None
            while len(self.joined_ids) > self.max_pending:
                self.joined_ids.popitem(last=False)
            ok = bool(correct) if correct is not None else label == entry.prediction
            w = self.windows.setdefault(entry.model, _Window())
            w.labels.append((now, 1.0 if ok else 0.0))
            w.right += 1.0 if ok else 0.0
            while w.labels and w.labels[0][0] < now - self.window_s:
                w.right -= w.labels.popleft()[1]
            self.stats.joined += 1
            accuracy, n = w.right / len(w.labels), len(w.labels)
        if self.publish is not None:
            self.publish(entry.model, accuracy, n, ok)
        return "joined"

    def accuracy(self, model: tuple[str, str]) -> tuple[float | None, int]:
        """(accuracy over the window, labelled predictions in it)."""
        with self._lock:
            w = self.windows.get(model)
            return (w.right / len(w.labels), len(w.labels)) if w and w.labels else (None, 0)
