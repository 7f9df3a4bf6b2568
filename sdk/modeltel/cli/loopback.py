"""The demo's processes on 127.0.0.1: a collector, the iris example server under ``modeltel run``, free
ports, waiting for them to answer, and reading the collector's ``/metrics``. Shared by ``modeltel demo``,
its degradation scene and the alerting stack (``alertstack.py``), so they all start the same things."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "ANALYTICS_TIME_SCALE",
    "MODEL_NAME",
    "MODEL_VERSION",
    "free_port",
    "samples",
    "scrape",
    "start_collector",
    "start_server",
    "stop_process",
    "wait_http",
]

MODEL_NAME = "iris-classifier"
MODEL_VERSION = "1.0.0"
ANALYTICS_TIME_SCALE = 0.05  # the demo collector's detector windows: a 5-minute baseline is learned in 15 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    """Until ``url`` answers; ``SystemExit`` with one line if ``proc`` exits first or the time runs out."""
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


def scrape(url: str) -> dict[str, Any]:
    """Prometheus families on the collector's /metrics, by name."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(families: dict[str, Any], family: str, suffix: str = "") -> list[Any]:
    f = families.get(family)
    return [s for s in f.samples if s.name == family + suffix] if f is not None else []


def stop_process(*procs: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM to each (every process here drains and exits on it), SIGKILL to any still there ``timeout``
    seconds later: one bound for them all, so stopping several takes as long as the slowest, not the sum."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_collector(workdir: Path, alertmanager_url: str = "") -> tuple[subprocess.Popen, dict[str, str]]:
    """The collector, its detectors' windows 20x shorter, so the degradation scene fits in seconds; with
    ``alertmanager_url``, its detectors post there and its console lists that Alertmanager's alerts."""
    ready = workdir / "collector-ready.json"
    command = [
        sys.executable, "-m", "modeltel.cli", "collector", "--otlp-http", "127.0.0.1:0", "--otlp-grpc", "",
        "--listen", "127.0.0.1:0", "--trace-db", str(workdir / "traces.db"), "--ready-file", str(ready),
    ]  # fmt: skip
    env = {**os.environ, "MODELTEL_COLLECTOR_ANALYTICS_TIME_SCALE": str(ANALYTICS_TIME_SCALE)}
    if alertmanager_url:
        env["MODELTEL_COLLECTOR_ALERTMANAGER_URL"] = alertmanager_url
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 30
    while not ready.exists() or not ready.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise SystemExit("modeltel demo: the collector did not start (is modeltel installed with its collector?)")
        time.sleep(0.1)
    return proc, json.loads(ready.read_text())["urls"]


def start_server(otlp_http: str, port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The iris example under ``modeltel run``, exporting to the demo's collector (``env`` added/overriding)."""
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_http,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
        "OTEL_SERVICE_NAME": "iris-demo",
        "MODELTEL_MODEL_NAME": MODEL_NAME,
        "MODELTEL_MODEL_VERSION": MODEL_VERSION,
        **(env or {}),
    }
    command = [
        sys.executable, "-m", "modeltel.cli", "run", "--",
        sys.executable, "-m", "uvicorn", "modeltel.examples.iris_server:app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(command, env=env)
