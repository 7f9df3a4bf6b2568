"""Replay: the committed log's known faults are found at the rows that raised them, bad rows are reported
with their line numbers and skipped, and the engine's alarms open, escalate and resolve as documented."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scipy")

from modeltel_collector.analytics.engine import Engine
from modeltel_collector.analytics.logs import BadRow, Row, read_log
from modeltel_collector.analytics.replay import replay
from modeltel_collector.analytics_cli import detect

LOG = Path(__file__).parent / "data" / "prediction_log.csv"  # benchmarks/detection.py --write-log
EPOCH = 1767225600.0  # the log's start; latency x2 at +600..720 s, 20 % errors at +960..1080 s


def test_replay_finds_the_logs_known_faults_and_nothing_else(capsys):
    assert detect(["replay", str(LOG), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    firing = [(e["check"], e["time"] - EPOCH) for e in report["detections"] if e["state"] == "firing"]
    assert {check for check, _ in firing} == {"latency_shift", "error_rate_rise"}
    first = {check: min(t for c, t in firing if c == check) for check, _ in firing}
    assert 600 <= first["latency_shift"] <= 660 and 960 <= first["error_rate_rise"] <= 1020
    resolved = {e["check"] for e in report["detections"] if e["state"] == "resolved"}
    assert resolved == {"latency_shift", "error_rate_rise"}  # both clear once the fault ends
    # each detection names the row that raised it, and that row has that timestamp
    lines = LOG.read_text().splitlines()
    for e in report["detections"]:
        assert float(lines[e["line"] - 1].split(",")[0]) == pytest.approx(e["time"])
    assert [b["line"] for b in report["bad_rows"]] == [101, 202, 303]
    assert f"{LOG}:303: skipped: latency_seconds 'fast' is not a number" in err


def test_replay_table_prints_the_detections_with_their_time(capsys):
    assert detect(["replay", str(LOG)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:6] == ["time", "line", "model", "version", "check", "state"]
    assert any(line.startswith("2026-01-01T00:10:") and "latency_shift" in line for line in out)


def test_replay_against_a_baseline_log_runs_from_the_first_row(tmp_path, capsys):
    healthy = tmp_path / "healthy.csv"
    healthy.write_text("\n".join(LOG.read_text().splitlines()[:2900]) + "\n")  # the healthy first ten minutes
    tail = tmp_path / "tail.csv"  # from 20 s before the first fault
    lines = LOG.read_text().splitlines()
    tail.write_text("\n".join([lines[0], *lines[2900:]]) + "\n")
    assert detect(["replay", str(tail), "--format", "json"]) == 0
    alone = json.loads(capsys.readouterr().out)["detections"]
    assert detect(["replay", str(tail), "--baseline", str(healthy), "--format", "json"]) == 0
    with_baseline = json.loads(capsys.readouterr().out)["detections"]
    # 20 s of history before the latency fault: not enough to learn a reference, so only the later error
    # fault is found (the reference has been learned by then); with the baseline, both are.
    assert {e["check"] for e in alone if e["state"] == "firing"} == {"error_rate_rise"}
    assert {e["check"] for e in with_baseline if e["state"] == "firing"} == {"latency_shift", "error_rate_rise"}


def test_bad_rows_are_reported_with_line_numbers_never_guessed(tmp_path):
    log = tmp_path / "p.jsonl"
    good = {"model_name": "m", "model_version": "1", "latency_seconds": 0.1, "status": "ok", "confidence": 0.9}
    log.write_text(
        "\n".join(
            [
                json.dumps({**good, "timestamp": "2026-01-01T00:00:00Z", "label": "cat", "prediction": "cat"}),
                "{not json",
                json.dumps({**good, "timestamp": 1767225601, "confidence": 1.5}),
                json.dumps({**good, "timestamp": 1767225602, "correct": "maybe"}),
                json.dumps({k: v for k, v in good.items() if k != "status"} | {"timestamp": 1767225603}),
                json.dumps({**good, "timestamp": "yesterday"}),
                json.dumps({**good, "timestamp": "2026-01-01T00:00:04", "label": "cat", "prediction": "dog"}),
            ]
        )
    )
    rows = list(read_log(log))
    assert [r.line for r in rows if isinstance(r, BadRow)] == [2, 3, 4, 5, 6]
    ok = [r for r in rows if isinstance(r, Row)]
    assert [(r.time - 1767225600, r.correct) for r in ok] == [(0.0, True), (4.0, False)]  # no zone: UTC
    assert "confidence 1.5 is outside" in next(r.reason for r in rows if r.line == 3)


def test_rows_out_of_time_order_are_skipped_and_reported():
    row = Row(1, 100.0, "m", "1", 0.1, True, 0.9, None)
    late = Row(2, 80.0, "m", "1", 0.1, True, 0.9, None)
    result = replay([row, Row(3, 120.0, "m", "1", 0.1, True, 0.9, None), late])
    assert [b.line for b in result.bad] == [2] and "time order" in result.bad[0].reason


def _rows(rng, t0: float, seconds: float, *, slow: float = 1.0) -> dict[str, np.ndarray]:
    n = int(seconds * 20)
    return {
        "time": t0 + np.sort(rng.random(n)) * seconds,
        "latency": rng.lognormal(-3, 0.3, n) * slow,
        "ok": np.ones(n, bool),
        "confidence": rng.beta(8, 2, n),
        "correct": np.full(n, np.nan),
    }


def test_an_alarm_fires_once_stays_while_the_fault_lasts_and_resolves_after_it():
    rng, engine, events = np.random.default_rng(0), Engine(), []
    events += engine.observe_batch("m", "1", _rows(rng, 0, 900))
    assert events == []
    # A fault lasting 40 minutes, longer than the 30-minute rolling reference: the reference is frozen while
    # the alarm is open, so the fault never becomes "normal" and the alarm does not resolve by itself.
    events += engine.observe_batch("m", "1", _rows(rng, 900, 2400, slow=2.0))
    assert {(e.check, e.state) for e in events} == {("latency_shift", "firing")}  # no resolve meanwhile
    assert 900 <= events[0].time <= 960
    severities = [e.severity for e in events]
    assert severities == sorted(set(severities))  # fired again only to escalate
    n = len(events)
    events += engine.observe_batch("m", "1", _rows(rng, 3300, 300))
    assert [(e.check, e.state) for e in events[n:]] == [("latency_shift", "resolved")]
    # resolved on evidence: a post-alarm window of min_samples healthy latencies, not after a quiet minute
    assert 3300 < events[n].time <= 3300 + 60


def test_without_the_analytics_extra_the_commands_say_what_to_install(monkeypatch, capsys):
    from modeltel_collector import analytics_commands

    with monkeypatch.context() as m:
        m.setitem(sys.modules, "scipy", None)  # as if not installed
        assert analytics_commands.detect(["replay", str(LOG)]) == 2
    assert capsys.readouterr().err == "modeltel detect: needs scipy (pip install 'modeltel[analytics]')\n"
    assert analytics_commands.detect(["replay", str(LOG), "--format", "json"]) == 0  # and with it, they run
    assert json.loads(capsys.readouterr().out)["detections"]


CASE = Path(__file__).parent / "data"  # benchmarks/detection.py --write-case tests/data
DROP = 1767225600.0 + 7 * 86400.0  # the triage model's confidence and accuracy fall 20 points on day 7


def test_a_low_traffic_model_with_late_labels_gives_one_episode_per_check_and_an_early_estimate(capsys):
    args = ["replay", str(CASE / "triage_log.csv"), "--labels", str(CASE / "triage_labels.csv"),
            "--baseline", str(CASE / "triage_baseline.csv"), "--format", "json"]  # fmt: skip
    assert detect(args) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    firing = [e for e in report["detections"] if e["state"] == "firing"]
    assert all(e["time"] >= DROP for e in firing)  # nothing in the healthy week (one prediction every 10 minutes)
    first = {c: min(e["time"] for e in firing if e["check"] == c) for c in {e["check"] for e in firing}}
    assert set(first) == {"estimated_accuracy_drop", "confidence_drift", "accuracy_drop"}
    assert first["estimated_accuracy_drop"] - DROP < 86400  # from confidence, within the day of the drop...
    assert first["accuracy_drop"] - first["estimated_accuracy_drop"] > 86400  # ...days before the late labels
    assert not [e for e in report["detections"] if e["state"] == "resolved"]  # the drop lasts: one episode each
    model = report["models"][0]
    low, high = model["estimated_accuracy_band"]
    assert low <= model["accuracy_since_change"] <= high  # the estimate's band holds the realized accuracy
    assert report["labels"]["unknown"] == 2  # the skipped row's label and one naming no prediction
    bad = {(Path(b["file"]).name, b["line"]) for b in report["bad_rows"]}
    assert ("triage_log.csv", 1001) in bad and ("triage_labels.csv", 2062) in bad  # reported, the rest evaluated
    assert "2 labels named no known prediction" in err


def test_a_log_without_labels_gives_no_accuracy_verdict_and_says_so_once(tmp_path, capsys):
    lines = (CASE / "triage_log.csv").read_text().splitlines()
    log = tmp_path / "no_labels.csv"
    log.write_text("\n".join(lines[:1000]) + "\n")
    assert detect(["replay", str(log), "--baseline", str(CASE / "triage_baseline.csv"), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["notes"] == ["model 1: no labels, so no accuracy verdict (estimated accuracy only)"]
    assert err.count("no labels") == 1 and not [e for e in report["detections"] if e["check"] == "accuracy_drop"]
    assert report["models"][0]["estimated_accuracy"] is not None


def test_replay_help_lists_the_columns_a_log_needs_with_an_example_that_parses(tmp_path, capsys):
    with pytest.raises(SystemExit):
        detect(["replay", "--help"])
    text = capsys.readouterr().out
    from modeltel_collector.analytics.logs import REQUIRED

    for column in (*REQUIRED, "correct", "label, prediction"):
        assert f"\n  {column} " in text, column
    lines = text.splitlines()
    example = lines[lines.index("e.g.") + 1 : lines.index("e.g.") + 3]
    log = tmp_path / "example.csv"
    log.write_text("\n".join(line.strip() for line in example) + "\n")
    (row,) = read_log(log)
    assert isinstance(row, Row) and row.model == "fraud" and row.latency == 0.012


def test_a_sparse_model_quiet_at_weekends_learns_them_without_a_baseline():
    # one prediction every 6 minutes, weekends at 40 %: the learned reference (2,000 requests) spans about
    # 9 days. Profiled by hour of the day it took every weekend for a throughput drop; by hour of the week
    # (from 7 days of reference) it raises nothing once the model has a week of history.
    from modeltel_collector.analytics.simulate import DAY, Case, generate

    s = generate(Case("weekly", 35, 360, weekend=0.4, label_fraction=0.0), seed=3)
    engine = Engine()
    engine.traffic_ended(float(s.time[-1]))
    rows = {"time": s.time, "latency": s.latency, "ok": s.ok, "confidence": s.confidence,
            "correct": np.full(len(s.time), np.nan)}  # fmt: skip
    events = engine.observe_batch("m", "1", rows) + engine.advance(float(s.time[-1]))
    learned = s.case.start + 10 * DAY  # the reference spans a week (a model's first weekend may still alarm)
    assert [e for e in events if e.state == "firing" and e.time >= learned] == []
