"""Zero-code generative serving: the example OpenAI-compatible server under ``modeltel run`` records its
streams as generations (the FastAPI instrumentor), and a client script under ``modeltel run`` records its
``openai`` calls as client generations (the openai instrumentor), with environment variables alone."""

from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from modeltel import taxonomy as tx
from modeltel.testing import OtlpSink, attributes
from tests.instr.servers import free_port

pytest.importorskip("transformers")
pytest.importorskip("openai")

CLIENT = textwrap.dedent(
    """
    import sys

    import openai

    client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="tinylm", messages=[{"role": "user", "content": "hi"}], max_tokens=6, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
    )
    print(sum(1 for chunk in stream if chunk.choices and chunk.choices[0].delta.content is not None))
    """
)
LAUNCHER = [str(Path(sys.executable).parent / "modeltel"), "run", "--", sys.executable]


def _installed(entry_point: str) -> bool:
    return any(e.name == entry_point for e in importlib.metadata.entry_points(group="opentelemetry_instrumentor"))


def _sum(sink: OtlpSink, name: str, **attrs: str) -> tuple[int, float]:
    """(count, sum) over the processes: the latest cumulative point with ``attrs`` of each."""
    latest: dict[tuple, tuple[int, float]] = {}
    for resource, _, p in sink.metric_points(name):
        key = tuple(sorted(resource.items()))
        if attrs.items() <= attributes(p.attributes).items() and p.count >= latest.get(key, (0, 0.0))[0]:
            latest[key] = (p.count, p.sum)
    return sum(c for c, _ in latest.values()), sum(s for _, s in latest.values())


def test_server_and_client_under_modeltel_run(tmp_path: Path) -> None:
    if not _installed("modeltel_openai"):
        pytest.skip("modeltel_openai is not a registered entry point: reinstall modeltel (make setup)")
    from modeltel.examples import tinylm

    folder = tinylm.save(tmp_path / "m")
    (tmp_path / "client.py").write_text(CLIENT)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELTEL_"))}
    with OtlpSink() as sink:
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint, OTEL_METRIC_EXPORT_INTERVAL="300", MODELTEL_GPU_METRICS="false",
            MODELTEL_HOST_METRICS="false", MODELTEL_MODEL_NAME="tinylm", TINYLM_DIR=str(folder),
        )  # fmt: skip
        server = subprocess.Popen(
            [*LAUNCHER, "-m", "uvicorn", "modeltel.examples.openai_server:app", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while True:
                assert server.poll() is None, server.stderr.read().decode()[-3000:] if server.stderr else ""
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the example server did not start"
                time.sleep(0.3)
            proc = subprocess.run(
                [*LAUNCHER, str(tmp_path / "client.py"), f"http://127.0.0.1:{port}/v1"],
                env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert proc.stdout.strip() == "6"
            server_ttft = tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name
            client_duration = tx.GEN_AI_CLIENT_OPERATION_DURATION.otel_name
            assert sink.wait_for(
                lambda s: _sum(s, server_ttft)[0] == 1 and _sum(s, client_duration)[0] == 1, timeout=30
            ), (_sum(sink, server_ttft), _sum(sink, client_duration))
            usage = tx.GEN_AI_CLIENT_TOKEN_USAGE.otel_name
            output = {tx.ATTR_GEN_AI_TOKEN_TYPE: "output", tx.ATTR_GEN_AI_OPERATION_NAME: "chat"}
            assert sink.wait_for(lambda s: _sum(s, usage, **output) == (2, 12.0), timeout=30)  # client and server
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(20)
