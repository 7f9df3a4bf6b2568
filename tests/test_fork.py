"""Forking servers: each worker keeps exporting after fork, with its own service.instance.id, without
re-exporting what the parent recorded before the fork."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import uvicorn

from modeltel import taxonomy as tx
from modeltel.testing import OtlpSink, attributes
from tests.instr.servers import free_port

BIN = Path(sys.executable).parent

FORKING_SCRIPT = textwrap.dedent(
    """
    import os, modeltel

    modeltel.init()
    def serve(n):
        for _ in range(n):
            with modeltel.prediction():
                with modeltel.stage("inference"):
                    pass

    serve(2)  # recorded before the fork: the parent's alone
    children = []
    for n in (3, 5):
        pid = os.fork()
        if pid == 0:
            serve(n)
            modeltel.shutdown()  # flushes the child's spans and metrics
            os._exit(0)
        children.append(pid)
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    serve(1)
    """
)


def _env(sink: OtlpSink, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELTEL_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint,
        MODELTEL_MODEL_NAME="forky",
        MODELTEL_GPU_METRICS="false",
        MODELTEL_HOST_METRICS="false",
        **extra,
    )
    return env


def _latest_predictions_by_instance(sink: OtlpSink, key: str = "service.instance.id") -> dict[str, int]:
    """The latest cumulative success count of each exporting process, by resource attribute ``key``."""
    latest: dict[str, tuple[int, int]] = {}
    for resource, _, point in sink.metric_points(tx.PREDICTIONS.otel_name):
        if attributes(point.attributes)["status"] != "success":
            continue
        instance = resource[key]
        if instance not in latest or point.time_unix_nano >= latest[instance][0]:
            latest[instance] = (point.time_unix_nano, point.as_int)
    return {k: v for k, (_, v) in latest.items()}


def test_os_fork_children_export_their_own_series(tmp_path):
    script = tmp_path / "forking.py"
    script.write_text(FORKING_SCRIPT)
    with OtlpSink() as sink:
        proc = subprocess.run([sys.executable, str(script)], env=_env(sink), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert sink.wait_for(lambda s: len(_latest_predictions_by_instance(s)) == 3, timeout=10)
        counts = _latest_predictions_by_instance(sink)
        assert sorted(counts.values()) == [3, 3, 5]  # parent 2 + 1 after; children 3 and 5, not 5 and 7
        spans_by_instance = defaultdict(int)
        for resource, span in sink.spans():
            if span.name == "predict":
                spans_by_instance[resource["service.instance.id"]] += 1
        assert sorted(spans_by_instance.values()) == [3, 3, 5]
        pids = {resource.get("process.pid") for resource, _ in sink.spans()}
        assert len(pids) == 3


WSGI_APP = textwrap.dedent(
    """
    import os, modeltel

    def app(environ, start_response):
        with modeltel.prediction():
            with modeltel.stage("inference"):
                body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    """
)


def _send(url: str, n: int, body: bytes | None = None, timeout: float = 60) -> int:
    """Send ``n`` requests as the server comes up; returns how many got a 200."""
    return len(_responses(url, n, body, timeout))


def _responses(url: str, n: int, body: bytes | None = None, timeout: float = 60) -> list[bytes]:
    """The bodies of up to ``n`` successful responses, sent as the server comes up."""
    deadline = time.monotonic() + timeout
    bodies: list[bytes] = []
    while len(bodies) < n and time.monotonic() < deadline:
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"} if body else {})
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                assert r.status == 200
                bodies.append(r.read())
        except OSError:
            time.sleep(0.1)
    return bodies


def test_gunicorn_workers_keep_exporting_after_fork(tmp_path):
    (tmp_path / "wsgi_app.py").write_text(WSGI_APP)
    port = free_port()
    with OtlpSink() as sink:
        env = _env(sink, OTEL_METRIC_EXPORT_INTERVAL="300", OTEL_BSP_SCHEDULE_DELAY="200", PYTHONPATH=str(tmp_path))
        server = subprocess.Popen(
            [str(BIN / "modeltel"), "run", "--", str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}",
             "--preload", "wsgi_app:app"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            served = Counter(int(b) for b in _responses(f"http://127.0.0.1:{port}/", 60))
            sent = sum(served.values())
            assert sent == 60

            def all_counted(s: OtlpSink) -> bool:
                return sum(_latest_predictions_by_instance(s).values()) == sent

            assert sink.wait_for(all_counted, timeout=15), _latest_predictions_by_instance(sink)
            counts = _latest_predictions_by_instance(sink)
            # each worker exports exactly what it served, as a series of its own (the master served none)
            assert _latest_predictions_by_instance(sink, key="process.pid") == served
            assert len(counts) == len(served)

            def predict_spans(s: OtlpSink) -> list[str]:
                return [r["service.instance.id"] for r, span in s.spans() if span.name == "predict"]

            assert sink.wait_for(lambda s: len(predict_spans(s)) == sent, timeout=15)
            assert set(predict_spans(sink)) == set(counts)  # spans and metrics from the same workers
        finally:
            server.send_signal(signal.SIGTERM)
            output = server.communicate(timeout=30)[0]
        assert "Traceback" not in output, output


# uvicorn >= 0.37 (the examples extra allows 0.29) takes the health check's timeout, 5 s before that and by default
_HEALTHCHECK_TIMEOUT = (
    ("--timeout-worker-healthcheck", "30")
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters
    else ()
)


def test_uvicorn_workers_each_export(tmp_path):
    """uvicorn --workers starts workers by spawning, so each one runs the configurator itself.

    uvicorn's supervisor kills a worker that has not answered a health check within
    ``--timeout-worker-healthcheck`` (5 s) of spawning, and a worker answers only once it has run the start-up
    hook (about 1 s of CPU) and imported uvicorn. On a CPU-starved machine that is wall time the test does not
    control, so the test allows more; what the hook costs is kept down by the instrumentors (see
    test_instr_zero_code.py::test_run_imports_no_serving_framework_the_app_does_not)."""
    port = free_port()
    with OtlpSink() as sink:
        env = _env(sink, OTEL_METRIC_EXPORT_INTERVAL="300")
        server = subprocess.Popen(
            [str(BIN / "modeltel"), "run", "--", sys.executable, "-m", "uvicorn", "modeltel.examples.iris_server:app",
             "--workers", "2", *_HEALTHCHECK_TIMEOUT, "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            sent = _send(f"http://127.0.0.1:{port}/predict", 40, b'{"features": [[5.1, 3.5, 1.4, 0.2]]}')
            assert sent == 40

            def all_counted(s: OtlpSink) -> bool:
                return sum(_latest_predictions_by_instance(s).values()) == sent

            assert sink.wait_for(all_counted, timeout=20), _latest_predictions_by_instance(sink)
        finally:
            server.send_signal(signal.SIGTERM)
            output = server.communicate(timeout=30)[0]
        assert "Traceback" not in output, output


def test_sigterm_flushes_the_last_export_interval(tmp_path):
    """uvicorn re-raises SIGTERM with the default action after its graceful shutdown, which skips atexit;
    modeltel's SIGTERM handler flushes first, so every request served is exported."""
    port = free_port()
    with OtlpSink() as sink:
        env = _env(sink, OTEL_METRIC_EXPORT_INTERVAL="60000")  # no periodic export
        server = subprocess.Popen(
            [str(BIN / "modeltel"), "run", "--", sys.executable, "-m", "uvicorn", "modeltel.examples.iris_server:app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            sent = _send(f"http://127.0.0.1:{port}/predict", 25, b'{"features": [[5.1, 3.5, 1.4, 0.2]]}')
        finally:
            server.send_signal(signal.SIGTERM)
            output = server.communicate(timeout=30)[0]
        assert server.returncode == -signal.SIGTERM  # still dies by the signal, as without modeltel
        assert sent == 25
        assert sum(_latest_predictions_by_instance(sink).values()) == 25, output


FORK_MID_EXPORT_SCRIPT = textwrap.dedent(
    """
    import http.client, os, threading, time, modeltel

    modeltel.init()
    parent = os.getpid()
    in_flight = threading.Event()
    real_getresponse = http.client.HTTPConnection.getresponse

    def slow_getresponse(conn):  # the parent's export waits on a slow receiver, holding its locks
        if os.getpid() == parent:
            in_flight.set()
            time.sleep(2)
        return real_getresponse(conn)

    http.client.HTTPConnection.getresponse = slow_getresponse
    with modeltel.prediction():
        pass
    flush = threading.Thread(target=modeltel.get_pipeline().meter_provider.force_flush)
    flush.start()
    assert in_flight.wait(10)
    pid = os.fork()  # as LitServe forks its API server while the parent exports
    if pid == 0:
        for _ in range(3):
            with modeltel.prediction():
                pass
        modeltel.shutdown()
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    flush.join()
    """
)


def test_a_child_forked_while_the_parent_exports_still_exports(tmp_path):
    """A fork copies the locks the parent's export thread holds, held: the child's exports must not wait
    on them forever (its predictions were lost: LitServe's API server, forked from a process that
    exports every interval, sometimes exported none)."""
    script = tmp_path / "fork_mid_export.py"
    script.write_text(FORK_MID_EXPORT_SCRIPT)
    with OtlpSink() as sink:
        env = _env(sink, MODELTEL_EXIT_TIMEOUT="5", OTEL_METRIC_EXPORT_INTERVAL="60000")
        proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert sink.wait_for(lambda s: 3 in _latest_predictions_by_instance(s).values(), timeout=10), (
            _latest_predictions_by_instance(sink),
            proc.stderr[-2000:],
        )
