"""The demo's arithmetic, and the demo itself end to end (short)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

from modeltel.demo import histogram_quantile, resource_lines
from modeltel.meters import install_meters
from modeltel.testing import OtlpSink
from tests import meters_helpers
from tests.fakes.nvml import FakeDevice, make_fake_nvml


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


def _sink_with(meters_nvml) -> OtlpSink:
    """A sink holding one OTLP metrics export of the GPU and host meters, encoded as the exporter would."""
    provider, reader = meters_helpers.provider()
    meters = install_meters(provider, gpu=True, host=True, nvml=meters_nvml)
    meters_helpers.settle()
    reader.collect()
    data = reader.get_metrics_data()
    meters.shutdown()
    sink = OtlpSink()
    sink.metrics.append(encode_metrics(data))
    return sink


def test_demo_reports_gpus_from_the_exported_meters():
    lines = resource_lines(_sink_with(make_fake_nvml([FakeDevice()])))
    assert lines[0].startswith("  host: cpu ")
    (gpu,) = [line for line in lines if line.startswith("  GPU")]
    assert gpu == "  GPU 0 NVIDIA H100 80GB HBM3: 42% busy, memory 20.0 / 80.0 GiB"


def test_demo_says_no_gpu_found_once():
    from pynvml import NVMLError_LibraryNotFound

    lines = resource_lines(_sink_with(make_fake_nvml(init_error=NVMLError_LibraryNotFound)))
    assert [line for line in lines if "GPU" in line] == ["  GPU: no GPU found"]
