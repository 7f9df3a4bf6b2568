"""The collector's baselines on disk: captured automatically once a new version is stable, never over a corrupt
file, reported missing / stale, and exported as model_baseline_* gauges."""

from __future__ import annotations

import json
from collections import deque

import numpy as np
import pytest

pytest.importorskip("scipy")

from modeltel import taxonomy as tx
from modeltel_collector.analytics import baseline as bl
from modeltel_collector.analytics.engine import Engine
from modeltel_collector.analytics.keeper import BaselineKeeper
from modeltel_collector.analytics.live import LiveAnalytics
from modeltel_collector.store.metrics import MetricStore


def _feed(engine: Engine, keeper: BaselineKeeper, model: str, start: float, seconds: float, rng, slow=1.0):
    captured = []
    for t0 in np.arange(start, start + seconds, 60.0):
        n = 20 * 60
        rows = {"time": t0 + np.sort(rng.random(n)) * 60, "latency": rng.lognormal(-3, 0.3, n) * slow,
                "ok": np.ones(n, bool), "confidence": rng.beta(8, 2, n),
                "correct": (rng.random(n) < 0.9).astype(float)}  # fmt: skip
        engine.observe_batch(model, "2", rows)
        captured += keeper.update(engine, t0 + 60)
    return captured


def test_a_new_version_is_baselined_once_stable_and_not_replaced_afterwards(tmp_path):
    # seed 3: seed 0's labels hold two minutes at 88 % and 87 % (2,400 labels, -3.8 sigma), which the
    # calibrated accuracy CUSUM rightly reports as a 3-point drop, restarting the stability clock
    rng, engine = np.random.default_rng(3), Engine()
    keeper = BaselineKeeper(tmp_path / "baseline-metrics.json", stable_s=2400.0)
    assert keeper.status("m", "2", 0.0) == ("missing", None)
    # 30 minutes fill the reference, 40 minutes of stability are needed: nothing before minute 40
    assert _feed(engine, keeper, "m", 0, 2340, rng) == []
    assert not keeper.path.exists()
    assert _feed(engine, keeper, "m", 2340, 120, rng) == [("m", "2")]
    (entry,) = bl.load(keeper.path)["models"]
    assert entry["window"]["seconds"] == pytest.approx(1800.0)
    assert entry["accuracy"] == pytest.approx(0.9, abs=0.01)
    assert entry["latency_seconds"]["p50"] == pytest.approx(np.exp(-3), rel=0.05)
    assert keeper.status("m", "2", entry["window"]["end"] + 60) == ("ok", pytest.approx(60.0))
    assert keeper.status("m", "2", entry["window"]["end"] + 8 * 86400)[0] == "stale"
    assert _feed(engine, keeper, "m", 2460, 3600, rng) == []  # captured once, not refreshed behind your back


def test_an_alarm_restarts_the_stability_clock(tmp_path):
    rng, engine = np.random.default_rng(1), Engine()
    keeper = BaselineKeeper(tmp_path / "b.json", stable_s=1200.0)
    _feed(engine, keeper, "m", 0, 1800, rng)  # reference full at 30 min; not yet stable for 20 min after it...
    assert _feed(engine, keeper, "m", 1800, 180, rng, slow=3.0) == []  # ...an alarm
    assert engine.models["m", "2"].episodes
    assert _feed(engine, keeper, "m", 1980, 600, rng) == []  # recovering: the clock started again


def test_a_corrupt_baseline_file_is_reported_and_never_overwritten(tmp_path):
    path = tmp_path / "baseline-metrics.json"
    path.write_text(json.dumps({"schema": bl.SCHEMA, "models": [{"model_name": 3}]}))
    keeper = BaselineKeeper(path, stable_s=0.0)
    assert "invalid baseline" in keeper.error and "models[0]" in keeper.error
    rng, engine = np.random.default_rng(2), Engine()
    assert _feed(engine, keeper, "m", 0, 2400, rng) == []
    assert json.loads(path.read_text()) == {"schema": bl.SCHEMA, "models": [{"model_name": 3}]}
    assert keeper.status("m", "2", 2400.0) == ("corrupt", None)


def test_baseline_state_is_exported_with_the_detectors_gauges(tmp_path):
    keeper, store = BaselineKeeper(tmp_path / "b.json"), MetricStore()
    live = LiveAnalytics(deque(), store, keeper=keeper)
    live.engine.observe(100.0, "m", "2", 0.1, ok=True)
    live.poll(200.0)
    ((labels, series),) = store.families[tx.BASELINE_STALE.prometheus_name].series.items()
    assert series.value == 1.0  # missing
    assert {"job": "modeltel-analytics", "model_name": "m", "model_version": "2"}.items() <= dict(labels).items()
    assert tx.BASELINE_AGE.prometheus_name not in store.families  # no baseline, no age
