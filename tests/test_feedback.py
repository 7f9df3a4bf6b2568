"""record_feedback: delayed labels join their predictions once; unknown, duplicate and dropped ids are counted,
never guessed; memory is bounded; accuracy is over a sliding window and reaches model_online_accuracy."""

from __future__ import annotations

import pytest

import modeltel
from modeltel import taxonomy as tx
from modeltel.feedback import FeedbackJoiner


def test_out_of_order_duplicate_and_unknown_ids():
    j = FeedbackJoiner()
    ids = [j.remember(("m", "1"), prediction=i % 3) for i in range(10)]
    for pid in reversed(ids):  # labels arrive in the opposite order
        assert j.record(pid, label=0) == "joined"
    assert j.accuracy(("m", "1")) == (pytest.approx(0.4), 10)  # predictions 0,3,6,9 were 0
    assert j.record(ids[3], correct=True) == "duplicate"  # a repeated label does not count twice
    assert j.record("never-seen", correct=False) == "unknown"
    assert (j.stats.joined, j.stats.duplicate, j.stats.unknown) == (10, 1, 1)
    assert j.accuracy(("m", "1")) == (pytest.approx(0.4), 10)


def test_pending_predictions_are_bounded_oldest_dropped_and_counted():
    j = FeedbackJoiner(max_pending=3)
    ids = [j.remember(("m", "1")) for _ in range(5)]
    assert len(j.join.pending) == 3 and j.stats.dropped_predictions == 2
    assert j.record(ids[0], correct=True) == "unknown"  # dropped: unknown now, not guessed
    assert j.record(ids[4], correct=True) == "joined"
    assert (j.stats.unknown, j.stats.joined) == (1, 1)


def test_accuracy_is_over_a_sliding_window(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("modeltel.feedback.time.time", lambda: now[0])
    j = FeedbackJoiner(window_s=60.0)
    for ok in (False, False):
        j.record(j.remember(("m", "1")), correct=ok)
    now[0] += 61.0  # the two wrong answers leave the window
    j.record(j.remember(("m", "1")), correct=True)
    assert j.accuracy(("m", "1")) == (1.0, 1)


def test_a_label_for_a_prediction_remembered_without_its_value_is_not_guessed():
    j = FeedbackJoiner()
    pid = j.remember(("m", "1"))  # no prediction= to compare a label with
    assert j.record(pid, label="cat") == "no_value"
    assert j.accuracy(("m", "1")) == (None, 0) and j.stats.dropped_labels == 1


def test_the_sdk_and_the_collector_judge_and_window_labels_alike(monkeypatch):
    from modeltel_collector.analytics.joiner import LabelJoiner

    now = [0.0]
    monkeypatch.setattr("modeltel.feedback.time.time", lambda: now[0])
    sdk, collector = FeedbackJoiner(window_s=60.0), LabelJoiner(window_s=60.0)
    for i, (value, label) in enumerate([("a", "a"), ("a", "b"), ("b", "b"), ("a", "a"), ("b", "a")]):
        now[0] = i * 25.0
        sdk.record(sdk.remember(("m", "1"), value, f"p{i}"), label=label)
        collector.label(f"p{i}", now[0], None, label)  # the label first: it waits for its prediction
        collector.prediction(f"p{i}", "m", "1", value)
    window = collector.accuracy[("m", "1")]
    assert sdk.accuracy(("m", "1")) == (window.accuracy, len(window.labels)) == (pytest.approx(2 / 3), 3)


def test_exactly_one_of_correct_or_label():
    j = FeedbackJoiner()
    pid = j.remember(("m", "1"))
    with pytest.raises(TypeError):
        j.record(pid)
    with pytest.raises(TypeError):
        j.record(pid, correct=True, label=1)


def test_public_api_puts_the_id_on_the_span_and_feeds_model_online_accuracy(captured):
    ids = []
    for i in range(4):
        with modeltel.prediction("ranker", "7") as p:
            ids.append(modeltel.remember_prediction(p, prediction="cat" if i else "dog"))
    span_ids = [s.attributes[tx.SPAN_ATTR_PREDICTION_ID] for s in captured.spans("predict")]
    assert span_ids == ids
    for pid in ids:
        modeltel.record_feedback(pid, label="cat")
    point = captured.point(tx.ONLINE_ACCURACY.otel_name)
    assert point.value == pytest.approx(0.75)
    assert (point.attributes["model.name"], point.attributes["model.version"]) == ("ranker", "7")
    counted = {p.attributes["correct"]: p.value for p in captured.points(tx.LABELLED_PREDICTIONS.otel_name)}
    assert counted == {"true": 3, "false": 1}
    assert modeltel.record_feedback(ids[0], correct=True) == "duplicate"
    values = [s.attributes[tx.SPAN_ATTR_PREDICTION_VALUE] for s in captured.spans("predict")]
    assert values == ["dog", "cat", "cat", "cat"]


def test_an_id_this_process_does_not_know_goes_out_as_a_feedback_span(captured):
    assert modeltel.record_feedback("from-the-serving-process", label="cat") == "forwarded"
    (span,) = captured.spans(tx.SPAN_NAME_FEEDBACK)
    assert dict(span.attributes) == {
        tx.SPAN_ATTR_KIND: tx.SPAN_KIND_FEEDBACK,
        tx.SPAN_ATTR_PREDICTION_ID: "from-the-serving-process",
        tx.SPAN_ATTR_FEEDBACK_LABEL: "cat",
    }
