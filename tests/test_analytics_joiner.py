"""The collector's label joiner: bounded tables with counted drops, no guessing, and joined labels that drive
the accuracy detector."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")

from modeltel_collector.analytics.engine import Engine
from modeltel_collector.analytics.joiner import LabelJoiner


def test_tables_are_bounded_and_drops_counted():
    j = LabelJoiner(max_pending=2)
    for i in range(4):
        assert j.prediction(f"p{i}", "m", "1", "a") is None
    assert list(j.join.pending) == ["p2", "p3"] and j.stats.dropped_predictions == 2
    for i in range(3):
        assert j.label(f"early{i}", 1.0, True, None) is None
    assert list(j.early) == ["early1", "early2"] and j.stats.dropped_labels == 1
    assert j.label("p0", 2.0, True, None) is None  # its prediction was dropped: it waits, it is not guessed


def test_a_label_without_a_predicted_value_to_compare_is_not_guessed():
    j = LabelJoiner()
    j.prediction("p", "m", "1", None)
    assert j.label("p", 1.0, None, "cat") is None and j.stats.dropped_labels == 1
    j.prediction("q", "m", "1", None)
    assert j.label("q", 2.0, False, None) == (2.0, "m", "1", False)  # correct= needs no value


def test_joined_labels_drive_the_accuracy_detector():
    rng, engine, j = np.random.default_rng(0), Engine(), LabelJoiner()
    events = []
    for i in range(20 * 1200):  # 20 minutes at 20 predictions a second, every one labelled 2 s later
        t = i / 20
        events += engine.observe(t, "m", "1", 0.03, ok=True)
        j.prediction(f"p{i}", "m", "1", "a")
        right = rng.random() < (0.92 if t < 900 else 0.80)
        joined = j.label(f"p{i}", t, None, "a" if right else "b")
        events += engine.label(joined[0], "m", "1", correct=joined[3])
    firing = [e for e in events if e.state == "firing"]
    assert {e.check for e in firing} == {"accuracy_drop"}
    assert 900 <= firing[0].time <= 960
