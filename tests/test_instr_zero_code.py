"""Zero-code: existing servers started under ``opentelemetry-instrument`` with env vars only deliver stage
spans (under the request's server span) and stage / prediction metrics over OTLP/HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from modeltel import taxonomy as tx
from modeltel.testing import OtlpSink, attributes
from tests.binaries import require_binary
from tests.instr.servers import BIN, ROOT, documented_commands, free_port, instrumented_server

BODY = {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
N = 5

FASTAPI_APP = textwrap.dedent(
    """
    import os

    import numpy as np
    import uvicorn
    from fastapi import FastAPI
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, Y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=500).fit(X, Y)
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict):
        return {"predictions": clf.predict_proba(np.asarray(body["instances"])).argmax(axis=1).tolist()}

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
    """
)


def _latest(sink: OtlpSink, name: str) -> dict[tuple, float]:
    """Cumulative points: the largest value per attribute set (count for histograms)."""
    out: dict[tuple, float] = {}
    for _, _, p in sink.metric_points(name):
        key = tuple(sorted(attributes(p.attributes).items()))
        value = p.count if hasattr(p, "bucket_counts") else p.as_int
        out[key] = max(out.get(key, 0), value)
    return out


def _stage_counts(sink: OtlpSink) -> dict[str, float]:
    counts: dict[str, float] = {}
    for key, value in _latest(sink, tx.STAGE_LATENCY.otel_name).items():
        attrs = dict(key)
        assert (attrs[tx.ATTR_MODEL_NAME], attrs[tx.ATTR_MODEL_VERSION]) == ("iris", "3")
        counts[attrs[tx.ATTR_STAGE]] = counts.get(attrs[tx.ATTR_STAGE], 0) + value
    return counts


def _documented_curl(script: Path, url: str) -> int:
    """Run the example's documented commands against the server the harness started; how many requests.

    The harness starts what the docstring says (``opentelemetry-instrument python examples/<file>``, env
    vars aside); the ``curl`` lines run verbatim but for the port."""
    if script.parent != ROOT / "examples":
        return 0
    server, *clients = documented_commands(script)
    assert server.endswith(f"opentelemetry-instrument python examples/{script.name}"), server
    for curl in clients:
        proc = subprocess.run(["bash", "-c", curl.replace("localhost:8080", url)], capture_output=True, text=True)
        assert proc.returncode == 0, (curl, proc.stderr)
    return len(clients)


def _run(script: Path, path: str, want_stages: dict[str, int], *, under_server: bool = True) -> list:
    with OtlpSink() as sink:
        with instrumented_server(script, sink, path, BODY) as url:  # the readiness probe is request 1
            for _ in range(N - 1 - _documented_curl(script, url)):
                assert httpx.post(url + path, json=BODY, timeout=10).status_code == 200
            assert sink.wait_for(lambda s: _stage_counts(s) == want_stages, timeout=20), _stage_counts(sink)
            assert sink.wait_for(
                lambda s: (
                    sum(v for k, v in _latest(s, tx.PREDICTIONS.otel_name).items() if ("status", "success") in k) == N
                ),
                timeout=20,
            ), _latest(sink, tx.PREDICTIONS.otel_name)
        spans = [span for _, span in sink.spans()]
    servers = {s.span_id: s for s in spans if s.kind == s.SPAN_KIND_SERVER}
    assert len(servers) == N
    for server in servers.values():
        assert attributes(server.attributes)[tx.ATTR_MODEL_NAME] == "iris"
    stages = [s for s in spans if attributes(s.attributes).get(tx.SPAN_ATTR_KIND) == tx.SPAN_KIND_STAGE]
    by_id = {s.span_id: s for s in spans}
    for s in stages:
        if under_server:  # every stage span's root is its request's server span
            root = s
            while root.parent_span_id in by_id:
                root = by_id[root.parent_span_id]
            assert root.span_id in servers, s.name
    return stages


def test_fastapi_zero_code(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(FASTAPI_APP)
    stages = _run(script, "/predict", {"inference": N})
    assert {attributes(s.attributes)[tx.SPAN_ATTR_FRAMEWORK] for s in stages} == {"sklearn"}


def test_flask_zero_code() -> None:
    stages = _run(ROOT / "examples" / "flask_server.py", "/predict", {"inference": N})
    assert {s.name for s in stages} == {"inference"}


def test_kserve_zero_code() -> None:
    pytest.importorskip("kserve")
    stages = _run(
        ROOT / "examples" / "kserve_server.py",
        "/v1/models/iris:predict",
        {"preprocess": N, "inference": N, "postprocess": N},
    )
    names = sorted({s.name for s in stages})
    assert names == ["inference", "postprocess", "preprocess", "sklearn.predict_proba"]
    by_id = {s.span_id: s for s in stages}
    for s in stages:
        if s.name == "sklearn.predict_proba":  # the library call is a child of KServe's predict stage
            assert by_id[s.parent_span_id].name == "inference"


def test_litserve_zero_code() -> None:
    pytest.importorskip("litserve")
    # LitServe runs the stages in a worker process fed by a queue: no trace context crosses it, so the
    # stage spans are not under the API server's span (documented); metrics and the spans themselves are.
    stages = _run(
        ROOT / "examples" / "litserve_server.py",
        "/predict",
        {"preprocess": N, "inference": N, "postprocess": N},
        under_server=False,
    )
    assert {
        attributes(s.attributes)[tx.SPAN_ATTR_FRAMEWORK_STAGE] for s in stages if s.name != "sklearn.predict_proba"
    } == {
        "decode_request",
        "predict",
        "encode_response",
    }


def test_torchserve_handler_as_documented(tmp_path: Path) -> None:
    """The docstring's commands in order: archive the handler, start TorchServe (its Java frontend starts the
    Python worker, which imports the handler), one curl; the worker's stages arrive over OTLP. Changed for
    the test: the OTLP endpoint, the ports (a config file), and the frontend in the foreground, so the test
    owns its process group (``--start`` daemonizes behind a machine-wide pid file)."""
    pytest.importorskip("ts")
    pytest.importorskip("model_archiver")
    require_binary("java", package="default-jre-headless")
    mkdir, archive, start, curl = documented_commands(ROOT / "examples" / "torchserve_handler.py")
    ports = {name: free_port() for name in ("inference", "management", "metrics")}
    config = tmp_path / "config.properties"
    config.write_text(
        "".join(f"{k}_address=http://127.0.0.1:{p}\n" for k, p in ports.items()) + "default_workers_per_model=1\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELTEL_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"  # torchserve, torch-model-archiver, the worker's python
    env.update(OTEL_METRIC_EXPORT_INTERVAL="300", OTEL_BSP_SCHEDULE_DELAY="100")
    env.update(MODELTEL_HOST_METRICS="false", MODELTEL_GPU_METRICS="false")
    for command in (mkdir, archive.replace(" examples/", f" {ROOT}/examples/")):
        proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, (command, proc.stderr)
    with OtlpSink() as sink:
        start = start.replace("http://localhost:4318", sink.endpoint).replace("--start", "--foreground")
        with (tmp_path / "torchserve.log").open("w") as log:
            server = subprocess.Popen(["bash", "-c", f"{start} --ts-config {config}"], cwd=tmp_path, env=env,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            _wait_for_worker(f"http://127.0.0.1:{ports['management']}/models/tiny", server, tmp_path)
            curl = curl.replace("localhost:8080", f"127.0.0.1:{ports['inference']}")
            proc = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
            assert set(json.loads(proc.stdout)) == {"class", "confidence"}, (proc.stdout, proc.stderr)
            want = {s: 1 for s in (tx.STAGE_PREPROCESS, tx.STAGE_INFERENCE, tx.STAGE_POSTPROCESS)}
            assert sink.wait_for(lambda s: _model_stage_counts(s, ("tiny", "1.0")) == want, timeout=30)
        finally:
            _kill_group(server)
        spans = {span.name: span for _, span in sink.spans()}
    assert spans["torch.forward"].parent_span_id == spans["inference"].span_id


def _wait_for_worker(model_url: str, server: subprocess.Popen, tmp_path: Path) -> None:
    """Until TorchServe's management API reports the model's worker READY (bounded: a JVM and torch start)."""
    deadline = time.monotonic() + 180
    while True:
        assert server.poll() is None, (tmp_path / "torchserve.log").read_text()[-3000:]
        try:
            workers = httpx.get(model_url, timeout=5).json()[0]["workers"]
            if any(w["status"] == "READY" for w in workers):
                return
        except (httpx.HTTPError, ValueError, KeyError, IndexError):
            pass
        assert time.monotonic() < deadline, (tmp_path / "torchserve.log").read_text()[-3000:]
        time.sleep(0.5)


def _model_stage_counts(sink: OtlpSink, model: tuple[str, str]) -> dict[str, float]:
    counts: dict[str, float] = {}
    for key, value in _latest(sink, tx.STAGE_LATENCY.otel_name).items():
        attrs = dict(key)
        if (attrs[tx.ATTR_MODEL_NAME], attrs[tx.ATTR_MODEL_VERSION]) == model:
            counts[attrs[tx.ATTR_STAGE]] = counts.get(attrs[tx.ATTR_STAGE], 0) + value
    return counts


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(20)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def test_every_example_is_run_as_documented() -> None:
    examples = {"flask_server.py", "kserve_server.py", "litserve_server.py", "torchserve_handler.py"}
    assert {p.name for p in (ROOT / "examples").glob("*.py")} == examples  # a new one gets a test above
    for name in examples:
        assert documented_commands(ROOT / "examples" / name)[1:], f"{name} documents no curl"
