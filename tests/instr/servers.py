"""Start an example server under ``opentelemetry-instrument`` with env vars only, in its own process group."""

from __future__ import annotations

import ast
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from modeltel.testing import OtlpSink

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def documented_commands(script: Path) -> list[str]:
    """The shell commands in ``script``'s docstring (its indented lines, backslash continuations joined),
    so tests run exactly what the example tells a user to type."""
    doc = ast.get_docstring(ast.parse(script.read_text()), clean=False) or ""
    commands, current = [], ""
    for line in (raw.strip() for raw in doc.splitlines() if raw.startswith("    ")):
        if line.endswith("\\"):
            current += line[:-1]
            continue
        commands.append(re.sub(r"\s{2,}", " ", current + line))  # a backslash-newline in the source is gone
        current = ""
    return commands


@contextmanager
def instrumented_server(
    script: Path, sink: OtlpSink, ready_path: str, body: dict, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """Yields the base URL once ``POST ready_path`` answers; kills the whole process group afterwards."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELTEL_"))}
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_SERVICE_NAME": "zero-code-server",
            "MODELTEL_MODEL_NAME": "iris",
            "MODELTEL_MODEL_VERSION": "3",
            "MODELTEL_HOST_METRICS": "false",
            "MODELTEL_GPU_METRICS": "false",
            "OTEL_METRIC_EXPORT_INTERVAL": "300",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "PORT": str(port),
            **(extra_env or {}),
        }
    )
    log = open(sink_log := Path(os.environ.get("TMPDIR", "/tmp")) / f"modeltel-zc-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(script)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}: {sink_log.read_text()[-3000:]}")
            try:
                if httpx.post(url + ready_path, json=body, timeout=5).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not up: {sink_log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:  # noqa: SIM105
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
