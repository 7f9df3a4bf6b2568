"""What a new user meets in the first minutes: a silent start, a bounded exit, one clear line per mistake."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modeltel.export.distro import requirements_met
from modeltel.testing import OtlpSink

BIN = Path(sys.executable).parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELTEL_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(MODELTEL_GPU_METRICS="false", MODELTEL_HOST_METRICS="false", **extra)
    return env


def test_start_up_and_exit_are_silent_when_nothing_is_wrong() -> None:
    # opentelemetry-instrumentation-fastapi is installed here, so modeltel_fastapi turns it on; its own
    # entry point used to say "Attempting to instrument while already instrumented" on every start.
    with OtlpSink() as sink:
        proc = subprocess.run(
            [str(BIN / "modeltel"), "run", "--", "python", "-c", "import fastapi"],
            env=_env(OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout == ""


@pytest.fixture
def blackhole():
    """A port that accepts connections and never answers: the slowest way for a collector to be down."""
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(64)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


SHORT_SCRIPT = """
import modeltel, sys
with modeltel.prediction():
    pass
print("done", flush=True)
"""


def test_exit_with_the_collector_down_is_bounded_and_says_what_was_lost(blackhole: str) -> None:
    env = _env(OTEL_EXPORTER_OTLP_ENDPOINT=blackhole, OTEL_EXPORTER_OTLP_TIMEOUT="30", MODELTEL_EXIT_TIMEOUT="1")
    proc = subprocess.Popen(
        [str(BIN / "modeltel"), "run", "--", "python", "-c", SHORT_SCRIPT],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "done"
    done_at = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    # Unbounded, the exporters each wait out OTEL_EXPORTER_OTLP_TIMEOUT (30 s) at exit.
    assert time.monotonic() - done_at < 15
    lines = [line for line in stderr.splitlines() if line.startswith("modeltel:")]
    assert lines == [lines[0]] and "gave up flushing after 1 s" in lines[0], stderr
    assert "not sent: 1 spans" in lines[0]


class _Instrumentor:
    def __init__(self, *requirements: str) -> None:
        self.requirements = requirements

    def instrumentation_dependencies(self) -> tuple[str, ...]:
        return self.requirements


def test_a_framework_without_its_contrib_instrumentation_says_what_to_install(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="modeltel")
    assert requirements_met("modeltel_fastapi", _Instrumentor("pytest >= 1", "pytest >= 1"))
    assert not requirements_met("modeltel_fastapi", _Instrumentor("pytest >= 1", "no-such-contrib-package >= 1"))
    assert not requirements_met("modeltel_torch", _Instrumentor("no-such-framework >= 1"))  # absent: no line
    assert not requirements_met("modeltel_flask", _Instrumentor("pytest < 1"))  # present, unsupported version
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "pytest is installed but no-such-contrib-package >= 1 is not" in lines[0]
    assert "pip install 'modeltel[fastapi]'" in lines[0]
    assert "modeltel_flask is not monitored" in lines[1] and "pytest < 1" in lines[1]
