"""Host meters, read for real from psutil through opentelemetry-instrumentation-system-metrics."""

from __future__ import annotations

import os
import time

import psutil
from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

from modeltel.meters import install_meters
from tests.meters_helpers import collect, provider, settle


def usage(pts, resource_type):
    return [(a, v) for a, v in pts.get("model.resource_usage", []) if a["resource_type"] == resource_type]


def test_resource_usage_cpu_and_memory_percentages():
    mp, reader = provider()
    meters = install_meters(mp, gpu=False, host=True, model_name="iris")
    settle()  # let one CPU clock tick pass so the cpu percentage has an interval
    end = time.monotonic() + 0.2
    while time.monotonic() < end:  # burn a little CPU so the interval has something in it
        sum(range(10_000))
    pts = collect(reader)
    ((cpu_attrs, cpu),) = usage(pts, "cpu")
    ((mem_attrs, mem),) = usage(pts, "memory")
    assert cpu_attrs == {"model.name": "iris", "resource_type": "cpu"}
    assert mem_attrs == {"model.name": "iris", "resource_type": "memory"}
    assert 0.0 < cpu <= 100.0  # this process kept one CPU busy for 0.2 s
    assert 0.0 < mem <= 100.0
    assert abs(mem - psutil.virtual_memory().percent) < 5.0
    assert not usage(pts, "gpu")
    meters.shutdown()


def test_model_name_omitted_when_none():
    mp, reader = provider()
    meters = install_meters(mp, gpu=False, host=True)
    settle()  # let one CPU clock tick pass so the cpu percentage has an interval
    pts = collect(reader)
    assert {a["resource_type"] for a, _ in pts["model.resource_usage"]} == {"cpu", "memory"}
    assert all("model.name" not in a for a, _ in pts["model.resource_usage"])
    meters.shutdown()


def test_system_and_process_metrics_come_from_the_instrumentation():
    mp, reader = provider()
    meters = install_meters(mp, gpu=False, host=True)
    settle()  # let one CPU clock tick pass so the cpu percentage has an interval
    assert meters.host.system_metrics_installed
    pts = collect(reader)
    for name in (
        "system.cpu.utilization",
        "system.memory.usage",
        "system.memory.utilization",
        "system.network.io",
        "process.cpu.utilization",
        "process.memory.usage",
        "process.thread.count",
    ):
        assert pts.get(name), name
    rss = pts["process.memory.usage"][0][1]
    assert abs(rss - psutil.Process().memory_info().rss) < 64 * 1024**2
    assert not pts.get("system.disk.io")  # outside the chosen subset
    meters.shutdown()


def test_install_twice_on_two_providers_both_report():
    """The instrumentor is a singleton that ignores a second instrument(); each install gets its own."""
    mp1, reader1 = provider()
    mp2, reader2 = provider()
    m1 = install_meters(mp1, gpu=False, host=True)
    settle()  # let one CPU clock tick pass so the cpu percentage has an interval
    m2 = install_meters(mp2, gpu=False, host=True)
    settle()  # let one CPU clock tick pass so the cpu percentage has an interval
    assert collect(reader1).get("process.memory.usage")
    assert collect(reader2).get("process.memory.usage")
    assert not SystemMetricsInstrumentor().is_instrumented_by_opentelemetry  # the global one is untouched
    m1.shutdown()
    assert not collect(reader1).get("process.memory.usage")
    assert collect(reader2).get("process.memory.usage")
    m2.shutdown()


def test_shutdown_stops_host_metrics_and_is_idempotent():
    mp, reader = provider()
    meters = install_meters(mp, gpu=False, host=True)
    settle()  # let one CPU clock tick pass so the cpu percentage has an interval
    assert collect(reader)
    meters.shutdown()
    meters.shutdown()
    assert not meters.host._instrumentor.is_instrumented_by_opentelemetry
    assert {n: v for n, v in collect(reader).items() if v} == {}
    # a fresh install after shutdown works
    mp2, reader2 = provider()
    again = install_meters(mp2, gpu=False, host=True)
    settle()  # let one CPU clock tick pass so the cpu percentage has an interval
    assert usage(collect(reader2), "cpu")
    again.shutdown()


def test_host_off():
    mp, reader = provider()
    meters = install_meters(mp, gpu=False, host=False)
    assert meters.host is None and collect(reader) == {}


def test_forked_child_reports_its_own_process():
    mp, reader = provider()
    meters = install_meters(mp, gpu=False, host=True)
    settle()  # let one CPU clock tick pass so the cpu percentage has an interval
    collect(reader)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rfd)
            pts = collect(reader)
            ok = meters.host._instrumentor._proc.pid == os.getpid() and bool(usage(pts, "memory"))
            os.write(wfd, b"ok" if ok else b"bad")
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd) as f:
        answer = f.read()
    os.waitpid(pid, 0)
    assert answer == "ok"
    assert meters.host._instrumentor._proc.pid == os.getpid()
    meters.shutdown()
