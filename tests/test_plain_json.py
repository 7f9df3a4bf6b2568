"""Every ``--format json`` writes strict JSON whatever numbers the computation used: numpy integers,
floats and booleans as plain numbers and booleans, NaN and infinities as null."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from modeltel.cli.slo_budget import budget
from modeltel.cli.slo_report import Report, Row, render
from modeltel.plainjson import dumps, plain

NUMPY = {
    "count": np.int64(3),
    "small": np.int32(-2),
    "ratio": np.float32(0.5),
    "p": np.float64(1e-9),
    "flag": np.bool_(True),
    "array": np.array([1, 2]),
    "nan": np.float64("nan"),
    "inf": math.inf,
    "ninf": np.float64("-inf"),
    "nested": ({"x": np.uint8(7)},),
}
PLAIN = {"count": 3, "small": -2, "ratio": 0.5, "p": 1e-9, "flag": True, "array": [1, 2],
         "nan": None, "inf": None, "ninf": None, "nested": [{"x": 7}]}  # fmt: skip


def strict(text: str):
    """Parse as strict JSON: the bare words NaN and Infinity are refused."""
    return json.loads(text, parse_constant=lambda word: pytest.fail(f"not JSON: {word}"))


def test_numpy_scalars_arrays_and_non_finite_numbers_become_plain_json():
    assert plain(NUMPY) == PLAIN
    assert strict(dumps(NUMPY)) == PLAIN
    assert all(type(v) in (int, float, bool, list, type(None)) for v in plain(NUMPY).values())
    with pytest.raises(TypeError, match="object"):
        dumps({"x": object()})


def _event():
    from modeltel.taxonomy import Severity
    from modeltel_collector.analytics.detectors import Result, Status
    from modeltel_collector.analytics.engine import Event

    details = {"labels_since_change": np.int64(1200), "band": np.array([0.8, np.inf])}
    result = Result("accuracy_drop", Status.DEGRADED, Severity.WARNING, np.float64("nan"), np.float64(7.5),
                    np.float32(0.04), details)  # fmt: skip
    return Event(np.float64(1e9), "m", "1", "accuracy_drop", "firing", Severity.WARNING, result, np.int64(12))


def test_detect_replay_json_with_numpy_results(monkeypatch, capsys, tmp_path):
    pytest.importorskip("scipy")
    from modeltel_collector import analytics_cli
    from modeltel_collector.analytics.replay import Replay

    monkeypatch.setattr(analytics_cli, "replay", lambda *a, **k: Replay(events=[_event()]))
    log = tmp_path / "p.csv"
    log.write_text("timestamp\n")
    assert analytics_cli.detect(["replay", str(log), "--format", "json"]) == 0
    detection = strict(capsys.readouterr().out)["detections"][0]
    assert detection["line"] == 12 and detection["p_value"] is None and detection["effect_size"] == pytest.approx(0.04)
    assert detection["details"] == {"labels_since_change": 1200, "band": [0.8, None]}


def test_health_json_with_numpy_results(monkeypatch, capsys, tmp_path):
    pytest.importorskip("scipy")
    from modeltel_collector import analytics_cli

    report = {"models": [{"model_name": "m", "model_version": "1", "overall_health": "healthy",
                          "max_severity": "ok", "details": {"a": {"p_value": np.float64("inf"),
                                                                   "effect_size": np.float32(0.25)}}}]}  # fmt: skip
    monkeypatch.setattr(analytics_cli, "health_report", lambda engine: report)
    monkeypatch.setattr(analytics_cli, "replay", lambda *a, **k: SimpleNamespace(engine=None))
    log = tmp_path / "p.csv"
    log.write_text("timestamp\n")
    assert analytics_cli.health(["--log", str(log), "--format", "json"]) == 0
    assert strict(capsys.readouterr().out)["models"][0]["details"]["a"] == {"p_value": None, "effect_size": 0.25}


def test_baseline_and_evidence_files_with_numpy_values(tmp_path):
    pytest.importorskip("scipy")
    from modeltel_collector.analytics import baseline as bl
    from modeltel_collector.analytics.detectors import confidence_counts

    counts = (np.int64(10), np.int64(0)), (np.int64(0), np.int64(0))
    window = (np.float64(0.0), np.float64(60.0))
    entry = bl.make_entry("m", "1", window, np.full(10, 0.1), confidence_counts(np.full(10, 0.9)), *counts)
    entry["rate_per_second"] = np.float64(1 / 6)
    doc = {"schema": bl.SCHEMA, "models": [entry]}
    bl.save(doc, tmp_path / "b.json")
    assert strict((tmp_path / "b.json").read_text())["models"][0]["rate_per_second"] == pytest.approx(1 / 6)

    from modeltel_collector.analytics import evidence

    gates = [evidence.Gate("g", "c", np.bool_(True), "e")]
    assert strict(dumps([g.__dict__ for g in gates])) == [{"gate": "g", "check": "c", "passed": True, "evidence": "e"}]


def test_slo_report_json_with_numpy_values():
    b = budget(0.999, np.float64(0.0005), {"1h": np.float64(0.001)})
    b = replace(b, burn_rates={**b.burn_rates, "3d": np.float64("nan")})
    report = Report(np.float64(0.0), "http://prom", [Row("availability_slo", "d", "30d", ("m", "1"), b)], [])
    data = strict(render(report, "json"))
    assert data["slos"][0]["budget"]["burn_rates"] == {"1h": pytest.approx(1.0), "3d": None}
