"""``modeltel demo``: serve the example iris model instrumented, load it, report from its telemetry.

Every figure printed comes from what the server exported over OTLP (histogram buckets and counters),
computed the way Prometheus' ``histogram_quantile`` and ``rate`` would, not from the load generator's
stopwatch: the demo shows what a user's dashboards will show.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import taxonomy as tx
from .testing import OtlpSink, attributes

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODEL_NAME = "iris-classifier"
MODEL_VERSION = "1.0.0"


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float:
    """Prometheus' estimate: linear interpolation inside the bucket holding the q-th observation."""
    total = sum(counts)
    if total == 0:
        return float("nan")
    rank = q * total
    cumulative = 0
    for i, count in enumerate(counts):
        if cumulative + count >= rank and count:
            if i == len(bounds):  # +Inf bucket: the best bound we have is the last finite one
                return bounds[-1]
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * (rank - cumulative) / count
        cumulative += count
    return bounds[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_examples_module(name: str) -> Any:
    path = EXAMPLES / f"{name}.py"
    if not path.exists():
        raise SystemExit(f"modeltel demo: {path} not found; run the demo from a modeltel source checkout")
    spec = importlib.util.spec_from_file_location(f"modeltel_examples_{name}", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"modeltel demo: the server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"modeltel demo: the server did not answer {url} within {timeout:.0f} s")


def _latest(points: list[tuple[dict, Any, Any]]) -> dict[tuple, Any]:
    """The newest cumulative point of each series (resource instance + attributes)."""
    latest: dict[tuple, Any] = {}
    for resource, _metric, point in points:
        key = (resource.get("service.instance.id"), tuple(sorted(attributes(point.attributes).items())))
        if key not in latest or point.time_unix_nano >= latest[key].time_unix_nano:
            latest[key] = point
    return latest


def stage_table(sink: OtlpSink) -> list[tuple[str, int, float, float, float]]:
    """(stage, count, p50, p95, p99) from the latest stage and prediction histograms received."""
    rows = []
    series = [(tx.STAGE_LATENCY.otel_name, None), (tx.PREDICTION_LATENCY.otel_name, "prediction (end to end)")]
    for name, label in series:
        merged: dict[str, tuple[list[float], list[int]]] = {}
        for (_, attrs), point in _latest(list(sink.metric_points(name))).items():
            stage = label or dict(attrs).get(tx.ATTR_STAGE, "?")
            bounds, counts = merged.get(stage, (list(point.explicit_bounds), [0] * len(point.bucket_counts)))
            merged[stage] = (bounds, [a + b for a, b in zip(counts, point.bucket_counts, strict=True)])
        order = {s: i for i, s in enumerate(tx.CANONICAL_STAGES)}
        for stage in sorted(merged, key=lambda s: (order.get(s, 99), s)):
            bounds, counts = merged[stage]
            rows.append((stage, sum(counts), *(histogram_quantile(q, bounds, counts) for q in (0.5, 0.95, 0.99))))
    return rows


def throughput_and_errors(sink: OtlpSink) -> tuple[float, float, int]:
    """(predictions per second, error ratio, total) from the predictions counter's exported points."""
    by_time: dict[int, dict[str, float]] = {}
    for _resource, _metric, point in sink.metric_points(tx.PREDICTIONS.otel_name):
        status = attributes(point.attributes).get(tx.ATTR_STATUS)
        by_time.setdefault(point.time_unix_nano, {})[status] = point.as_int or point.as_double
    times = sorted(by_time)
    if not times:
        return 0.0, 0.0, 0
    first, last = by_time[times[0]], by_time[times[-1]]
    total = sum(last.values())
    errors = last.get(tx.STATUS_ERROR, 0)
    span_s = (times[-1] - times[0]) / 1e9
    rate = (total - sum(first.values())) / span_s if span_s > 0 else 0.0
    return rate, (errors / total if total else 0.0), int(total)


def run_demo(duration: float = 20.0, concurrency: int = 8) -> int:
    loadgen = _load_examples_module("loadgen")
    port = _free_port()
    with OtlpSink() as sink:
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_BSP_SCHEDULE_DELAY": "500",
            "OTEL_SERVICE_NAME": "iris-demo",
            "MODELTEL_MODEL_NAME": MODEL_NAME,
            "MODELTEL_MODEL_VERSION": MODEL_VERSION,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(EXAMPLES), os.environ.get("PYTHONPATH")])),
        }
        command = [
            sys.executable, "-m", "modeltel.cli", "run", "--",
            sys.executable, "-m", "uvicorn", "iris_server:app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning",
        ]  # fmt: skip
        print(f"modeltel demo: starting the iris model server on 127.0.0.1:{port} (exporting OTLP to {sink.endpoint})")
        server = subprocess.Popen(command, env=env)
        try:
            _wait_http(f"http://127.0.0.1:{port}/healthz", 60, server)
            print(f"modeltel demo: {concurrency} clients for {duration:.0f} s")
            result = loadgen.drive(
                f"http://127.0.0.1:{port}/predict", duration, concurrency, progress=loadgen.progress_bar
            )
            sys.stderr.write("\n")
            time.sleep(1.5)  # one more export interval, so the last requests are in the telemetry
        finally:
            server.terminate()  # SIGTERM: the SDK flushes on exit
            server.wait(timeout=30)
        _print_report(sink, result)
    return 0


def _print_report(sink: OtlpSink, result: Any) -> None:
    rows = stage_table(sink)
    rate, error_ratio, total = throughput_and_errors(sink)
    print(f"\nFrom the exported telemetry ({len(sink.metrics)} metric exports, {len(sink.traces)} trace exports):")
    print(f"  {'stage':26} {'count':>8} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}")
    for stage, count, p50, p95, p99 in rows:
        print(f"  {stage:26} {count:8d} {p50 * 1e3:9.2f} {p95 * 1e3:9.2f} {p99 * 1e3:9.2f}")
    print(f"  throughput: {rate:.1f} predictions/s; error rate: {error_ratio:.2%} of {total} predictions")
    print(f"  (the load generator saw {result.sent} requests, {result.failed} failed)")
