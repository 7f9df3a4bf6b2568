"""Collection cost of the GPU meters per device per collection, with the fake NVML.

    python benchmarks/gpu_meters.py [--collections 2000]

Measures ``reader.collect()`` on a MeterProvider with the GPU meters installed (1 and 8 devices,
fake NVML) against a baseline provider with no instruments, in the same run, and prints
(meters - baseline) / devices. The fake's calls cost next to nothing, so this is the meters' own
Python overhead (snapshot, observations, SDK aggregation); real NVML calls come on top of it
(see benchmarks/gpu_check.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from modeltel.meters import install_meters
from tests.fakes.nvml import FakeDevice, make_fake_nvml


def time_collections(reader: InMemoryMetricReader, n: int) -> float:
    """Median of 5 runs of n collections, in µs per collection."""
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            reader.get_metrics_data()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def time_call(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collections", type=int, default=2000)
    args = parser.parse_args()
    n = args.collections

    base_reader = InMemoryMetricReader()
    MeterProvider(metric_readers=[base_reader], shutdown_on_exit=False)
    time_collections(base_reader, n // 10)  # warm up
    baseline = time_collections(base_reader, n)
    print(f"baseline: empty collection {baseline:8.1f} µs")

    for count in (1, 8):
        devices = [
            FakeDevice(
                uuid=f"GPU-{i:08x}-0000-0000-0000-000000000000", processes=[(os.getpid(), 1 << 30), (1, 1 << 30)]
            )
            for i in range(count)
        ]
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        meters = install_meters(provider, gpu=True, host=False, nvml=make_fake_nvml(devices))
        assert meters.gpu_available
        time_collections(reader, n // 10)
        total = time_collections(reader, n)
        per_device = (total - baseline) / count
        snapshot = time_call(meters.gpu.collect, n) / count
        print(
            f"{count} device(s): collection {total:8.1f} µs, GPU meters {total - baseline:8.1f} µs, "
            f"per device {per_device:7.1f} µs per collection (of which NVML snapshot {snapshot:5.1f} µs)"
        )
        meters.shutdown()


if __name__ == "__main__":
    main()
