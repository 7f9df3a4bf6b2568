"""LitServe streaming (``stream=True``) under ``opentelemetry-instrument``: each streamed response is a
generation in the API server (the FastAPI instrumentor's streamed-body part: TTFT at the first chunk, one
token per chunk), counted once; the worker's stages stay stages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import pytest

from modeltel import taxonomy as tx
from modeltel.testing import OtlpSink, attributes
from tests.instr.servers import instrumented_server

pytest.importorskip("litserve")

TOKENS = 4
N = 3
SCRIPT = textwrap.dedent(
    """
    import os
    import time

    import litserve as ls


    class Streaming(ls.LitAPI):
        def setup(self, device):
            pass

        def decode_request(self, request):
            return int(request["n"])

        def predict(self, n):
            for i in range(n):
                time.sleep(0.01)
                yield f"token{i}"

        def encode_response(self, outputs):
            for token in outputs:
                yield {"text": token}


    if __name__ == "__main__":
        server = ls.LitServer(Streaming(stream=True), accelerator="cpu", workers_per_device=1)
        server.run(host="127.0.0.1", port=int(os.environ["PORT"]), generate_client_file=False)
    """
)


def _latest(sink: OtlpSink, name: str, **attrs: str) -> tuple[int, float]:
    best = (0, 0.0)
    for _, _, p in sink.metric_points(name):
        if attrs.items() <= attributes(p.attributes).items():
            value = (p.count, p.sum) if hasattr(p, "bucket_counts") else (p.as_int, float(p.as_int))
            best = max(best, value)
    return best


def test_streamed_responses_are_generations(tmp_path: Path) -> None:
    script = tmp_path / "stream_server.py"
    script.write_text(SCRIPT)
    with OtlpSink() as sink:
        with instrumented_server(script, sink, "/predict", {"n": TOKENS}) as url:  # the probe is request 1
            for _ in range(N - 1):
                response = httpx.post(url + "/predict", json={"n": TOKENS}, timeout=30)
                assert response.status_code == 200 and response.text.count("token") == TOKENS
            ttft = tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name
            assert sink.wait_for(lambda s: _latest(s, ttft)[0] == N, timeout=30), _latest(sink, ttft)
            usage = tx.GEN_AI_CLIENT_TOKEN_USAGE.otel_name
            output = {tx.ATTR_GEN_AI_TOKEN_TYPE: "output"}
            assert sink.wait_for(lambda s: _latest(s, usage, **output) == (N, N * TOKENS), timeout=30)
            tpot = tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN.otel_name
            assert sink.wait_for(lambda s: _latest(s, tpot)[0] == N, timeout=30)
            predictions = tx.PREDICTIONS.otel_name
            assert sink.wait_for(lambda s: _latest(s, predictions, status="success")[0] == N, timeout=30)
            assert _latest(sink, predictions, status="error") == (0, 0.0)
