"""The demo's arithmetic, and the demo itself end to end (short)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from modeltel.demo import histogram_quantile


def test_histogram_quantile_matches_prometheus_interpolation():
    bounds = [0.1, 0.2, 0.5]
    counts = [10, 10, 0, 0]  # 20 observations, half under 100 ms
    assert histogram_quantile(0.5, bounds, counts) == pytest.approx(0.1)
    assert histogram_quantile(0.75, bounds, counts) == pytest.approx(0.15)
    assert histogram_quantile(0.25, bounds, counts) == pytest.approx(0.05)
    assert histogram_quantile(0.99, bounds, [0, 0, 0, 5]) == 0.5  # +Inf bucket reports the last bound
    assert math.isnan(histogram_quantile(0.5, bounds, [0, 0, 0, 0]))


def test_demo_prints_a_stage_table_from_exported_telemetry():
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "modeltel"), "demo", "--duration", "3", "--concurrency", "2"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    table = {line.split()[0]: line.split() for line in lines if line.startswith("  ") and line.split()[0] in
             ("preprocess", "inference", "postprocess", "prediction")}  # fmt: skip
    assert set(table) == {"preprocess", "inference", "postprocess", "prediction"}
    requests = int(table["prediction"][4])  # "prediction (end to end) COUNT ..."
    assert requests > 10
    assert int(table["preprocess"][1]) == requests  # every request passes preprocessing
    p50, p95, p99 = (float(v) for v in table["inference"][2:5])
    assert 0 < p50 <= p95 <= p99
    assert "throughput:" in proc.stdout and "error rate:" in proc.stdout
