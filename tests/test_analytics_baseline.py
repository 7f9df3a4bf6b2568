"""baseline-metrics.json round trip, schema errors (reported, never replaced), the sketch's merge and accuracy,
and the health report's ordered worst severity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scipy")

from modeltel.taxonomy import Severity
from modeltel_collector.analytics import baseline as bl
from modeltel_collector.analytics.detectors import confidence_counts
from modeltel_collector.analytics.engine import Engine
from modeltel_collector.analytics.health import health_report, render_health
from modeltel_collector.analytics.logs import Row, read_log
from modeltel_collector.analytics.sketch import Sketch
from modeltel_collector.analytics_cli import baseline as baseline_cli
from modeltel_collector.analytics_cli import health as health_cli

LOG = Path(__file__).parent / "data" / "prediction_log.csv"


def _rows(n: int = 2000, seed: int = 0) -> list[Row]:
    rng = np.random.default_rng(seed)
    lat, conf = rng.lognormal(-3, 0.4, n), rng.beta(8, 2, n)
    return [Row(i, 1000.0 + i / 10, "m", "2", lat[i], i % 50 != 0, conf[i], bool(i % 10)) for i in range(n)]


def test_round_trip_keeps_what_the_detectors_compare_against(tmp_path):
    rows = _rows()
    doc = bl.capture(rows)
    bl.save(doc, tmp_path / "baseline-metrics.json")
    again = bl.load(tmp_path / "baseline-metrics.json")
    assert again == json.loads(json.dumps(doc))
    (entry,) = again["models"]
    assert (entry["model_name"], entry["model_version"], entry["requests"], entry["errors"]) == ("m", "2", 2000, 40)
    assert entry["accuracy"] == pytest.approx(0.9) and entry["window"]["seconds"] == pytest.approx(199.9)
    ref = bl.to_reference(entry)
    lat = np.array([r.latency for r in rows])
    assert np.percentile(ref.latencies, 95) == pytest.approx(np.percentile(lat, 95), rel=0.03)
    conf = np.array([r.confidence for r in rows])
    assert ref.confidence.tolist() == confidence_counts(conf).tolist()  # exact: counts in the SDK's buckets
    assert (ref.rate, ref.correct, ref.labelled) == (pytest.approx(2000 / 199.9), 1800, 2000)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.update(schema="modeltel.baseline/0"), "expected 'modeltel.baseline/2'"),
        (lambda d: d["models"][0].update(requests=-1), "requests is not a non-negative integer"),
        (lambda d: d["models"][0].update(model_name=""), "model_name is not a non-empty string"),
        (lambda d: d["models"][0]["latency_seconds"]["sketch"].update(bins={"3": -2}), "sketch is invalid"),
        (lambda d: d["models"][0]["confidence_histogram"].update(counts=[1, 2]), "13 non-negative integers"),
        (lambda d: d["models"][0]["confidence_histogram"].update(bounds=[0.5, 1.0]), "bounds is not the taxonomy's"),
        (lambda d: d["models"][0].update(errors=10**6), "errors > requests"),
    ],
)
def test_schema_errors_are_named_and_the_file_is_left_alone(tmp_path, change, reason, capsys):
    doc = bl.capture(_rows(300))
    change(doc)
    path = tmp_path / "baseline-metrics.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="invalid baseline") as info:
        bl.load(path)
    assert reason in str(info.value)
    assert baseline_cli(["check", str(path)]) == 1
    assert reason in capsys.readouterr().err
    assert json.loads(path.read_text()) == doc  # reported, not replaced
    with pytest.raises(ValueError, match="refusing to write"):
        bl.save(doc, path)


def test_a_corrupt_file_is_reported_with_where(tmp_path):
    path = tmp_path / "baseline-metrics.json"
    path.write_text('{"schema": "modeltel.baseline/2", "models": [')
    with pytest.raises(ValueError, match=r"corrupt baseline .* line 1"):
        bl.load(path)


def test_capture_from_a_log_via_the_cli(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert baseline_cli(["capture", "--log", str(LOG), "--out", str(out)]) == 0
    (entry,) = bl.load(out)["models"]
    assert entry["requests"] == sum(isinstance(r, Row) for r in read_log(LOG))
    assert ":101: skipped" in capsys.readouterr().err


def test_sketch_merges_exactly_and_keeps_its_relative_accuracy():
    x = np.random.default_rng(1).lognormal(-3, 1.0, 20000)
    whole, a, b = Sketch().add(x), Sketch().add(x[:7000]), Sketch().add(x[7000:])
    assert a.merge(b).to_dict() == whole.to_dict()
    qs = np.array([0.5, 0.9, 0.95, 0.99])
    ratio = whole.quantiles(qs) / np.quantile(x, qs)
    assert np.all(np.abs(ratio - 1) <= 0.011)


def test_health_reports_the_worst_severity_by_order_not_by_name(capsys):
    rng, engine = np.random.default_rng(2), Engine()
    n = 20 * 900
    rows = {"time": np.sort(rng.random(n)) * 900, "latency": rng.lognormal(-3, 0.3, n), "ok": np.ones(n, bool),
            "confidence": rng.beta(8, 2, n), "correct": np.full(n, np.nan)}  # fmt: skip
    engine.observe_batch("m", "1", rows)
    m = 20 * 60  # a minute that is twice as slow and has 3 % errors: latency critical, errors warning
    fault = {"time": 900 + np.sort(rng.random(m)) * 60, "latency": rng.lognormal(-3, 0.3, m) * 2,
             "ok": rng.random(m) > 0.03, "confidence": rng.beta(8, 2, m), "correct": np.full(m, np.nan)}  # fmt: skip
    events = engine.observe_batch("m", "1", fault)
    assert {e.check: e.severity for e in events}.get("latency_shift") is Severity.CRITICAL
    report = health_report(engine)
    (model,) = report["models"]
    # 'warning' > 'critical' as strings; the ordered Severity knows better
    assert model["overall_health"] == "degraded" and model["max_severity"] == "critical"
    assert model["details"]["latency_shift"]["status"] == "degraded"
    assert render_health(report).startswith("m 1: degraded (worst: critical)")


def test_health_cli_on_a_log_exits_0_when_healthy(capsys):
    assert health_cli(["--log", str(LOG), "--format", "json"]) == 0  # the log ends healthy
    report = json.loads(capsys.readouterr().out)
    assert report["models"][0]["overall_health"] == "healthy"
    assert set(report["models"][0]["details"]) == {
        "latency_shift", "error_rate_rise", "throughput_drop", "accuracy_drop", "confidence_drift",
        "estimated_accuracy_drop",
    }  # fmt: skip
