"""The optional pull endpoint for users without a collector (MODELTEL_PROMETHEUS_PORT)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

SCRIPT = textwrap.dedent(
    """
    import sys, time, modeltel
    modeltel.init()
    for _ in range(7):
        with modeltel.prediction():
            with modeltel.stage("inference"):
                pass
    print("ready", flush=True)
    sys.stdin.read()  # serve until the test closes stdin
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pull_endpoint_serves_seed_names(tmp_path):
    port = _free_port()
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELTEL_"))}
    env.update(
        MODELTEL_PROMETHEUS_PORT=str(port),
        OTEL_METRICS_EXPORTER="none",
        OTEL_TRACES_EXPORTER="none",
        MODELTEL_MODEL_NAME="pull",
        MODELTEL_GPU_METRICS="false",
        MODELTEL_HOST_METRICS="false",
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    samples = {
        (s.name, s.labels.get("status"), s.labels.get("stage"), s.labels.get("le")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.labels.get("model_name") == "pull"
    }
    assert samples[("model_predictions_total", "success", None, None)] == 7
    assert samples[("model_stage_latency_seconds_count", None, "inference", None)] == 7
    assert samples[("model_stage_latency_seconds_bucket", None, "inference", "+Inf")] == 7
    assert ("model_prediction_latency_seconds_bucket", None, None, "0.05") in samples
