"""Real-GPU check: every reading for every GPU (and MIG instance) and the real collection cost.

    python benchmarks/gpu_check.py [--seconds 10]

Uses the real ``pynvml`` (nvidia-ml-py). Prints "no GPU found" and exits 0 on a machine without an
NVIDIA GPU (or library, or driver). Finishes in well under a minute.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from modeltel.meters import install_meters


def fmt_attrs(attrs: dict) -> str:
    skip = {"hw.id", "hw.name", "hw.type", "hw.driver_version", "modeltel.gpu.index", "hw.parent"}
    rest = {k: v for k, v in attrs.items() if k not in skip}
    return ",".join(f"{k}={v}" for k, v in sorted(rest.items()))


def timed(fn, seconds: float, max_runs: int) -> tuple[float, int]:
    """Median µs of fn() over up to max_runs calls or `seconds`."""
    samples = []
    end = time.monotonic() + seconds
    while len(samples) < max_runs and time.monotonic() < end:
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples), len(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="time budget for each cost measurement")
    args = parser.parse_args()

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    meters = install_meters(provider, gpu=True, host=False)
    if not meters.gpu_available:
        reasons = sorted({f"{k[1]}:{k[2]}" for k in (meters.gpu.errors if meters.gpu else {})})
        print(f"no GPU found ({', '.join(reasons) or 'GPU meters off'})")
        meters.shutdown()
        return 0

    gpus = meters.describe_gpus()
    print(f"{len(gpus)} device(s), driver {gpus[0]['driver_version']}")
    for g in gpus:
        kind = f"MIG {g['mig_index']} of GPU {g['index']}" if g["mig_index"] is not None else f"GPU {g['index']}"
        print(f"  {kind}: {g['name']}  {g['uuid']}  memory limit {g['memory_limit_bytes']} B")

    data = reader.get_metrics_data()
    rows: dict[str, list[str]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    dev = p.attributes.get("hw.id", "-")
                    extra = fmt_attrs(dict(p.attributes))
                    rows.setdefault(dev, []).append(f"{m.name}{{{extra}}} = {p.value} {m.unit}")
    print("\nreadings:")
    for dev, lines in rows.items():
        print(f"  [{dev}]")
        for line in lines:
            print(f"    {line}")

    n = len(gpus)
    baseline_reader = InMemoryMetricReader()
    MeterProvider(metric_readers=[baseline_reader], shutdown_on_exit=False)
    base, _ = timed(baseline_reader.get_metrics_data, 2.0, 2000)
    nvml_only, runs_nvml = timed(meters.gpu.collect, args.seconds / 2, 500)
    total, runs = timed(reader.get_metrics_data, args.seconds / 2, 500)
    print("\ncost (median):")
    print(f"  empty collection (baseline)           {base:10.1f} µs")
    print(f"  NVML snapshot only, all devices       {nvml_only:10.1f} µs  ({runs_nvml} runs)")
    print(f"  full collection, all devices          {total:10.1f} µs  ({runs} runs)")
    print(f"  per device per collection             {(total - base) / n:10.1f} µs")
    meters.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
