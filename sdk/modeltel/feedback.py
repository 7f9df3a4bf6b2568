"""Online accuracy from delayed ground truth: remember a prediction, join its label when it arrives.

Labels come seconds to days after the prediction, so each remembered prediction waits in a bounded table,
keyed by a prediction id that is also put on the prediction's span (``modeltel.prediction.id``), so a
labelling job elsewhere can send its label to the collector instead. The join itself (bounded tables, at
most one label per id, no guessing, the sliding accuracy window per model version) is
:class:`modeltel.labeljoin.LabelJoin`, the same one the collector joins with; this adds the process's lock,
generated ids, the wall clock, and publishing each new accuracy (``set_online_accuracy``, as
model_online_accuracy).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .labeljoin import JOINED, JoinStats, LabelJoin, Model

__all__ = ["FeedbackJoiner"]


class FeedbackJoiner:
    """The process's pending predictions and per-model accuracy windows; thread-safe."""

    def __init__(
        self,
        *,
        max_pending: int = 100_000,
        window_s: float = 3600.0,
        publish: Callable[[Model, float, int, bool], None] | None = None,
        max_pending_bytes: int = 64 << 20,
        max_window_bytes: int = 16 << 20,
    ) -> None:
        self.join = LabelJoin(
            max_pending=max_pending,
            window_s=window_s,
            max_pending_bytes=max_pending_bytes,
            max_window_bytes=max_window_bytes,
        )
        self.publish = publish
        self._lock = threading.Lock()

    @property
    def stats(self) -> JoinStats:
        return self.join.stats

    def remember(self, model: Model, prediction: Any = None, prediction_id: str | None = None) -> str:
        pid = prediction_id or uuid.uuid4().hex
        with self._lock:
            self.join.remember(pid, model, prediction)
        return pid

    def record(self, prediction_id: str, *, correct: bool | None = None, label: Any = None) -> str:
        """Join a label (``correct``, or ``label`` compared with the prediction): 'joined', 'duplicate',
        'unknown', or 'no_value' (a ``label`` for a prediction remembered without its value: not guessed)."""
        if (correct is None) == (label is None):
            raise TypeError("record_feedback takes exactly one of correct= or label=")
        with self._lock:
            outcome, joined = self.join.label(prediction_id, time.time(), correct=correct, label=label)
        if outcome == JOINED and joined is not None and self.publish is not None:
            self.publish(joined.model, joined.accuracy, joined.labelled, joined.correct)
        return outcome

    def accuracy(self, model: Model) -> tuple[float | None, int]:
        """(accuracy over the window, labelled predictions in it)."""
        with self._lock:
            w = self.join.windows.get(model)
            return (w.accuracy, len(w.labels)) if w is not None else (None, 0)
