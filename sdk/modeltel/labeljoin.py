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

Memory is bounded in bytes as well as in entries: a remembered prediction may be a 4 KB string (100 000 of
them held 433 MB), and an hour of labels at a high rate held 132 MB per million. Each table's entries are
estimated (key and value sizes, see ``entry_bytes``), the oldest go first past either bound, and each
eviction is counted in ``JoinStats``.
"""

from __future__ import annotations

import sys
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DUPLICATE",
    "JOINED",
    "NO_VALUE",
    "UNKNOWN",
    "AccuracyWindow",
    "JoinStats",
    "Joined",
    "LabelJoin",
    "SizedTable",
    "bound",
    "entry_bytes",
]

Model = tuple[str, str]  # (model name, model version)
JOINED, DUPLICATE, UNKNOWN, NO_VALUE = "joined", "duplicate", "unknown", "no_value"


@dataclass
class JoinStats:
    joined: int = 0
    duplicate: int = 0
    unknown: int = 0  # labels whose prediction was not waiting (never remembered, dropped, or not yet come)
    dropped_predictions: int = 0  # remembered predictions evicted to keep memory bounded
    dropped_labels: int = 0  # labels that could not be judged (no prediction to compare) or were evicted
    forgotten_ids: int = 0  # joined ids evicted: a repeat of one is then 'unknown', not 'duplicate'
    window_evicted: int = 0  # labels dropped from an accuracy window before their time, to bound its bytes


LABEL_BYTES = 120  # one (time, 1.0 | 0.0) label in a window: a tuple, a float and a deque slot


@dataclass
class AccuracyWindow:
    """The labels of the last ``window_s`` seconds of one model: (time, 1.0 right | 0.0 wrong), and their sum;
    at most ``max_bytes`` of them (``LABEL_BYTES`` each): past it the oldest go, counted in ``stats``."""

    window_s: float
    labels: deque = field(default_factory=deque)
    right: float = 0.0
    max_bytes: int = 16 << 20
    stats: JoinStats | None = None

    def add(self, time: float, *, correct: bool) -> None:
        """Add a label at ``time`` and forget those older than the window before it, and the oldest beyond
        the byte bound."""
        self.labels.append((time, 1.0 if correct else 0.0))
        self.right += 1.0 if correct else 0.0
        while self.labels and self.labels[0][0] < time - self.window_s:
            self.right -= self.labels.popleft()[1]
        while len(self.labels) * LABEL_BYTES > self.max_bytes and len(self.labels) > 1:
            self.right -= self.labels.popleft()[1]
            if self.stats is not None:
                self.stats.window_evicted += 1

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


_ENTRY_BYTES = 200  # an entry's own cost besides key and value: dict slot, tuple, its (model, version)


def entry_bytes(key: str, value: Any = None) -> int:
    """Estimated bytes one table entry holds: its key, its value (one level into a list, tuple or dict;
    ``nbytes`` for arrays) and a fixed overhead. An estimate: cheap enough to run per prediction."""
    size = _ENTRY_BYTES + len(key)
    if value is None:
        return size
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return size + nbytes
    size += sys.getsizeof(value)
    if isinstance(value, dict):
        return size + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return size + sum(map(sys.getsizeof, value))
    return size


class SizedTable:
    """An insertion-ordered table bounded in entries and in (estimated) bytes: past either bound the oldest
    entries go, each counted in ``stats.<counter>``."""

    def __init__(self, max_entries: int, max_bytes: int, stats: JoinStats | None = None, counter: str = "") -> None:
        self.max_entries, self.max_bytes, self.stats, self.counter = max_entries, max_bytes, stats, counter
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self.bytes = 0

    def put(self, key: str, value: Any, size: int) -> None:
        """Add (or move to the newest end) ``key``, holding ``size`` bytes, then evict past the bounds."""
        self.pop(key)
        self._entries[key] = (value, size)
        self.bytes += size
        while self._entries and (len(self._entries) > self.max_entries or self.bytes > self.max_bytes):
            self.bytes -= self._entries.popitem(last=False)[1][1]
            if self.stats is not None:
                setattr(self.stats, self.counter, getattr(self.stats, self.counter) + 1)

    def pop(self, key: str, default: Any = None) -> Any:
        entry = self._entries.pop(key, None)
        if entry is None:
            return default
        self.bytes -= entry[1]
        return entry[0]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


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

    def __init__(
        self,
        *,
        max_pending: int = 100_000,
        window_s: float = 3600.0,
        max_pending_bytes: int = 64 << 20,
        max_window_bytes: int = 16 << 20,
    ) -> None:
        self.max_pending, self.window_s, self.max_window_bytes = max_pending, window_s, max_window_bytes
        self.stats = JoinStats()
        self.pending = SizedTable(max_pending, max_pending_bytes, self.stats, "dropped_predictions")
        # to tell duplicates from unknown ids: ids only, a quarter of the predictions' byte bound
        self.joined_ids = SizedTable(max_pending, max(max_pending_bytes // 4, 1), self.stats, "forgotten_ids")
        self.windows: dict[Model, AccuracyWindow] = {}

    def remember(self, pid: str, model: Model, value: Any = None) -> None:
        """Let ``pid``'s label join later; ``value`` is what ``label=`` is compared with (None: ``correct=`` only)."""
        self.pending.put(pid, _Waiting(model, value), entry_bytes(pid, value))

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
        self.joined_ids.put(pid, None, entry_bytes(pid))
        window = self.windows.get(entry.model)
        if window is None:
            window = self.windows[entry.model] = AccuracyWindow(self.window_s, max_bytes=self.max_window_bytes,
                                                                stats=self.stats)  # fmt: skip
        window.add(time, correct=bool(correct))
        self.stats.joined += 1
        return JOINED, Joined(entry.model, bool(correct), window.right / len(window.labels), len(window.labels))
