"""The label join (modeltel.labeljoin, behind the SDK's FeedbackJoiner and the collector's joiner) is bounded
in bytes as well as entries: big remembered predictions, long ids and a busy accuracy window evict their
oldest entries past the byte bound, and each eviction is counted."""

from __future__ import annotations

import pytest

from modeltel.feedback import FeedbackJoiner
from modeltel.labeljoin import LABEL_BYTES, entry_bytes

BIG = "x" * 4096  # one object: the estimate counts it per entry, the test's own memory stays small
MODEL = ("m", "1")


def test_big_predictions_are_bounded_by_the_default_byte_bound() -> None:
    j = FeedbackJoiner()  # 100 000 entries and 64 MiB by default
    ids = [j.remember(MODEL, prediction=BIG) for _ in range(20_000)]  # 80 MB of values: under the count bound
    assert j.join.pending.bytes <= 64 << 20
    assert j.stats.dropped_predictions == 20_000 - len(j.join.pending) > 0
    assert j.record(ids[0], label=BIG) == "unknown"  # the oldest went first
    assert j.record(ids[-1], label=BIG) == "joined"


def test_the_byte_bound_is_configurable_and_keeps_the_count_bound() -> None:
    j = FeedbackJoiner(max_pending=10, max_pending_bytes=1 << 20)
    for i in range(50):
        j.remember(MODEL, prediction=i)
    assert len(j.join.pending) == 10 and j.stats.dropped_predictions == 40
    j = FeedbackJoiner(max_pending_bytes=100 * entry_bytes("p" * 32, BIG))
    for i in range(300):
        j.remember(MODEL, prediction=BIG, prediction_id=f"{i:032d}")
    assert len(j.join.pending) == 100 and j.join.pending.bytes <= 100 * entry_bytes("p" * 32, BIG)


def test_joined_ids_are_bounded_in_bytes_and_their_evictions_counted() -> None:
    j = FeedbackJoiner(max_pending_bytes=4 * entry_bytes("i" * 10_000, None) * 4)
    for i in range(40):
        pid = f"{i:05d}" + "i" * 9_995
        j.remember(MODEL, prediction=1, prediction_id=pid)
        assert j.record(pid, correct=True) == "joined"
    assert len(j.join.joined_ids) <= 4 and j.stats.forgotten_ids == 40 - len(j.join.joined_ids)


def test_the_accuracy_window_is_bounded_in_bytes() -> None:
    j = FeedbackJoiner(max_window_bytes=100 * LABEL_BYTES)  # an hour's window, but room for 100 labels
    for i in range(1000):
        pid = j.remember(MODEL, prediction=1)
        j.record(pid, correct=i >= 900)  # only the newest 100 are right
    assert j.accuracy(MODEL) == (pytest.approx(1.0), 100)
    assert j.stats.window_evicted == 900
