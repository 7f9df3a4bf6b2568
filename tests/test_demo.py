"""The demo's arithmetic, and the demo itself end to end (short)."""

from __future__ import annotations

import ctypes
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modeltel.cli.demo import prediction_counts, resource_lines, stage_table
from modeltel.cli.loopback import stop_process
from modeltel.export.readers import prometheus_reader_class
from modeltel.meters import install_meters
from modeltel.promql import histogram_quantile
from tests import meters_helpers
from tests.binaries import require_alert_stack
from tests.fakes.nvml import FakeDevice, make_fake_nvml


def test_histogram_quantile_matches_prometheus_interpolation():
    bounds = [0.1, 0.2, 0.5]
    counts = [10, 10, 0, 0]  # 20 observations, half under 100 ms
    assert histogram_quantile(0.5, bounds, counts) == pytest.approx(0.1)
    assert histogram_quantile(0.75, bounds, counts) == pytest.approx(0.15)
    assert histogram_quantile(0.25, bounds, counts) == pytest.approx(0.05)
    assert histogram_quantile(0.99, bounds, [0, 0, 0, 5]) == 0.5  # +Inf bucket reports the last bound
    assert math.isnan(histogram_quantile(0.5, bounds, [0, 0, 0, 0]))


def test_demo_prints_a_stage_table_from_exported_telemetry():
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "modeltel"), "demo", "--duration", "3", "--concurrency", "2"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "p50 ms" in line)
    end = next(i for i, line in enumerate(lines) if "throughput:" in line)
    table = {line.split()[0]: line.split() for line in lines[header + 1 : end]}
    assert set(table) == {"preprocess", "inference", "postprocess", "prediction"}
    requests = int(table["prediction"][4])  # "prediction (end to end) COUNT ..."
    assert requests > 10
    assert int(table["preprocess"][1]) == requests  # every request passes preprocessing
    p50, p95, p99 = (float(v) for v in table["inference"][2:5])
    assert 0 < p50 <= p95 <= p99
    assert "throughput:" in proc.stdout and "error rate:" in proc.stdout
    trace_line = next(line for line in lines if "slowest request: trace" in line)
    trace_id = trace_line.split("trace ")[1].split()[0]
    assert len(trace_id) == 32 and f"/api/traces/{trace_id}" in proc.stdout
    assert "modeltel demo: open the console at http://127.0.0.1:" in proc.stdout
    tree = lines[lines.index(trace_line) :]
    assert any(line.strip().startswith("inference") and line.strip().endswith("ms") for line in tree[:12])
    # the degradation scene: the collector's own detectors (scipy is installed) catch the injected latency
    # (from spans) and the input drift (from the confidence histogram)
    assert "the collector detected latency_shift" in proc.stdout, proc.stdout[-2000:]
    assert "the collector detected confidence_drift" in proc.stdout, proc.stdout[-2000:]
    assert proc.stdout.index("the collector detected") < proc.stdout.index("open the console at")
    require_alert_stack()  # last: without Prometheus and Alertmanager the demo says how to install them instead
    assert "Alertmanager notified receiver 'pager'" in proc.stdout  # the alert scene


def _lines_until(proc: subprocess.Popen, marker: str, lines: queue.Queue, timeout: float = 240) -> list[str]:
    seen = []
    while not seen or marker not in seen[-1]:
        try:
            seen.append(lines.get(timeout=timeout))
        except queue.Empty:
            pytest.fail(f"no {marker!r} within {timeout} s; output: {seen[-20:]}")
        assert proc.poll() is None, seen[-20:]
    return seen


def _left_in_session(sid: int) -> list[psutil.Process]:
    """Processes still alive in the demo's session: its children and theirs, wherever re-parented."""
    left = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return left


def _signal_a_thread_other_than_main(pid: int, sig: int) -> None:
    """``sig`` to one of ``pid``'s threads other than its main one: the kernel hands a process-directed
    signal to such a thread whenever the main thread already has one pending, and CPython then runs the
    handler only when the main thread next runs bytecode."""
    tgkill = ctypes.CDLL(None, use_errno=True).tgkill
    for t in psutil.Process(pid).threads():  # a short-lived one (a request's) may be gone: ESRCH, the next
        if t.id != pid and tgkill(pid, t.id, sig) == 0:
            return
    pytest.fail(f"no thread of {pid} but its main one took the signal: {os.strerror(ctypes.get_errno())}")


@pytest.mark.parametrize(
    ("sig", "marker", "code", "to_thread"),
    [
        (signal.SIGTERM, "stops it all", 0, False),  # in --keep's wait, under the trickle of load
        (signal.SIGINT, "stops it all", 0, True),  # taken by a thread of the trickle, not the main one
        (signal.SIGTERM, "clients for", 128 + signal.SIGTERM, False),  # in the middle of the load
    ],
    ids=["sigterm-keep", "sigint-keep-thread", "sigterm-load"],
)
def test_a_signal_stops_every_process_and_removes_every_temporary_directory(tmp_path, sig, marker, code, to_thread):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    stderr = (tmp_path / "stderr").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "modeltel"), "demo", "--keep", "--duration", "2", "--concurrency", "2"],
        stdout=subprocess.PIPE, stderr=stderr, text=True,
        env={**os.environ, "TMPDIR": str(tmp), "PYTHONFAULTHANDLER": "1"},  # a hang then tells where it is
        start_new_session=True,  # its own session: every process it starts is found by session id
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        _lines_until(proc, marker, lines)
        started = _left_in_session(proc.pid)
        assert len(started) >= 3, started  # the demo, its collector, its model server (and Prometheus ...)
        assert any(tmp.iterdir())
        if to_thread:
            _signal_a_thread_other_than_main(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)  # to the demo alone, not its group: it must stop its children itself
        assert _exit_code(proc, tmp_path / "stderr") == code
        assert _left_in_session(proc.pid) == []
        assert list(tmp.iterdir()) == []
    finally:
        stderr.close()
        for p in _left_in_session(proc.pid):
            p.kill()


def _exit_code(proc: subprocess.Popen, stderr: Path, timeout: float = 120) -> int:
    """``proc``'s exit code; if it is still running after ``timeout``, a failure that says where it waits:
    its main thread's kernel state and signal masks, then every Python thread's stack (faulthandler on
    SIGABRT), so a hang seen once in CI explains itself."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        wanted = ("State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
        masks = [line for line in status if line.startswith(wanted)]
        wchan = Path(f"/proc/{proc.pid}/wchan").read_text()
        psutil.Process(proc.pid).rlimit(psutil.RLIMIT_CORE, (0, 0))  # the abort leaves no core file
        os.kill(proc.pid, signal.SIGABRT)
        proc.wait(timeout=30)
        stacks = stderr.read_text()[-6000:]
        pytest.fail(f"still running {timeout:.0f} s after the signal; main thread in {wchan!r}, {masks}\n{stacks}")


def test_stopping_several_processes_takes_one_bound_not_the_sum():
    """Ctrl-C stops the demo's collector, servers, Prometheus and Alertmanager; one that ignores SIGTERM
    must not make the next wait its own full bound."""
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"
    procs = [subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE) for _ in range(3)]
    try:
        for proc in procs:
            proc.stdout.readline()  # SIGTERM is ignored from here on
        start = time.monotonic()
        stop_process(*procs, timeout=2.0)
        took = time.monotonic() - start
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            proc.stdout.close()
    assert [proc.returncode for proc in procs] == [-signal.SIGKILL] * 3
    assert 2.0 <= took < 5.0, took  # one bound of 2 s (6 s or more when each waits its own)


def _families_with(meters_nvml) -> dict:
    """The GPU and host meters as Prometheus exposes them (the demo reads the collector's /metrics)."""
    registry = CollectorRegistry()
    reader = prometheus_reader_class()(registry=registry)  # the SDK's endpoint: same names as the collector's
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    meters = install_meters(provider, gpu=True, host=True, nvml=meters_nvml)
    meters_helpers.settle()
    text = generate_latest(registry).decode()
    meters.shutdown()
    provider.shutdown()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_demo_reports_gpus_from_the_exported_meters():
    lines = resource_lines(_families_with(make_fake_nvml([FakeDevice()])))
    assert lines[0].startswith("  host: cpu ")
    (gpu,) = [line for line in lines if line.startswith("  GPU")]
    assert gpu == "  GPU 0 NVIDIA H100 80GB HBM3: 42% busy, memory 20.0 / 80.0 GiB"


def test_demo_says_no_gpu_found_once():
    from pynvml import NVMLError_LibraryNotFound

    lines = resource_lines(_families_with(make_fake_nvml(init_error=NVMLError_LibraryNotFound)))
    assert [line for line in lines if "GPU" in line] == ["  GPU: no GPU found"]


def test_stage_table_sums_workers_like_promql():
    text = "\n".join(
        [
            "# TYPE model_stage_latency_seconds histogram",
            *(
                f'model_stage_latency_seconds_bucket{{stage="inference",instance="{i}",le="{le}"}} {c}'
                for i in ("a", "b")
                for le, c in (("0.1", 5), ("0.2", 10), ("+Inf", 10))
            ),
            *(
                f'model_stage_latency_seconds_{k}{{stage="inference",instance="{i}"}} {v}'
                for i in ("a", "b")
                for k, v in (("count", 10), ("sum", 1.2))
            ),
            "# TYPE model_predictions_total counter",
            'model_predictions_total{status="success",instance="a"} 9',
            'model_predictions_total{status="error",instance="b"} 1',
            "",
        ]
    )
    families = {f.name: f for f in text_string_to_metric_families(text)}
    ((stage, count, p50, p95, _p99),) = stage_table(families)
    assert (stage, count) == ("inference", 20)
    assert p50 == pytest.approx(0.1) and p95 == pytest.approx(0.19)
    assert prediction_counts(families) == {"success": 9, "error": 1}
