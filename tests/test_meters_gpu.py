"""GPU meters against a fake NVML at the pynvml boundary (real pynvml error classes and constants)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pynvml
import pytest

from modeltel import taxonomy as tx
from modeltel.meters import install_meters
from tests.fakes.nvml import FakeDevice, make_fake_nvml
from tests.meters_helpers import by_device, collect, provider, settle, units

GIB = 1024**3
G0 = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
G1 = "GPU-bbbbbbbb-0000-0000-0000-000000000000"
MIG_ONLY = {  # what a MIG instance answers NotSupported to on real hardware
    f: pynvml.NVMLError_NotSupported
    for f in ("utilization", "temperature", "power", "power_limit", "clock_sm", "clock_memory", "throttle")
}


def two_gpus(**kw0) -> list[FakeDevice]:
    return [
        FakeDevice(uuid=G0, processes=[(os.getpid(), 3 * GIB), (1, 5 * GIB)], **kw0),
        FakeDevice(uuid=G1, name="NVIDIA A10G", gpu_util=7, total=24 * GIB, used=6 * GIB, throttle=0),
    ]


def install(fake, model_name="iris", host=False):
    mp, reader = provider()
    meters = install_meters(mp, gpu=True, host=host, model_name=model_name, nvml=fake)
    return meters, reader


def errors(points, field=None):
    return {
        (a.get("hw.id"), a["field"], a["error.type"]): v
        for a, v in points.get("modeltel.gpu.collection.errors", [])
        if field is None or a["field"] == field
    }


def gpu_log_lines(caplog):
    return [r for r in caplog.records if r.name.startswith("modeltel.meters")]


# ------------------------------------------------------------------------------------------------
# Values and units
# ------------------------------------------------------------------------------------------------
def test_values_units_and_device_attributes():
    fake = make_fake_nvml(two_gpus())
    meters, reader = install(fake)
    assert meters.gpu_available
    pts = collect(reader)

    assert by_device(pts["hw.gpu.utilization"], hw__gpu__task="general") == {G0: 0.42, G1: 0.07}
    assert by_device(pts["hw.gpu.memory.usage"]) == {G0: 20 * GIB, G1: 6 * GIB}
    assert by_device(pts["hw.gpu.memory.limit"]) == {G0: 80 * GIB, G1: 24 * GIB}
    assert by_device(pts["hw.gpu.memory.utilization"]) == {G0: 0.25, G1: 0.25}
    assert by_device(pts["modeltel.gpu.memory.free"]) == {G0: 60 * GIB, G1: 18 * GIB}
    assert by_device(pts["modeltel.gpu.memory_controller.utilization"])[G0] == pytest.approx(0.17)
    assert by_device(pts["modeltel.gpu.temperature"]) == {G0: 55.0, G1: 55.0}
    assert by_device(pts["hw.power"]) == {G0: 312.5, G1: 312.5}  # mW -> W
    assert by_device(pts["modeltel.gpu.power.limit"]) == {G0: 700.0, G1: 700.0}
    assert by_device(pts["modeltel.gpu.clock.sm"])[G0] == 1_980_000_000  # MHz -> Hz
    assert by_device(pts["modeltel.gpu.clock.memory"])[G0] == 2_619_000_000
    assert by_device(pts["hw.errors"], error__type="corrected") == {G0: 3, G1: 3}
    assert by_device(pts["hw.errors"], error__type="uncorrected") == {G0: 1, G1: 1}
    # own pid counted, pid 1 (not ours) not; G1 has no process of ours: a true 0
    assert by_device(pts["modeltel.gpu.process.memory.usage"]) == {G0: 3 * GIB, G1: 0}

    throttle = {(a["hw.id"], a["modeltel.gpu.throttle.reason"]): v for a, v in pts["modeltel.gpu.throttle"]}
    assert throttle[(G0, "sw_power_cap")] == 1
    assert throttle[(G0, "hw_thermal_slowdown")] == 1
    assert throttle[(G0, "gpu_idle")] == 0
    assert sum(v for (d, _), v in throttle.items() if d == G1) == 0
    assert len(throttle) == 2 * 9

    usage = pts["model.resource_usage"]
    assert by_device(usage, resource_type="gpu", model__name="iris") == {G0: 42.0, G1: 7.0}

    attrs = next(a for a, _ in pts["hw.power"] if a["hw.id"] == G1)
    assert attrs == {
        "hw.id": G1,
        "hw.name": "NVIDIA A10G",
        "hw.type": "gpu",
        "hw.driver_version": "550.54.15",
        "modeltel.gpu.index": 1,
    }
    u = units(reader)
    assert u["hw.gpu.memory.usage"] == "By" and u["hw.gpu.memory.limit"] == "By"
    assert u["hw.gpu.utilization"] == "1" and u["hw.gpu.memory.utilization"] == "1"
    assert u["hw.power"] == "W" and u["modeltel.gpu.temperature"] == "Cel"
    assert u["modeltel.gpu.clock.sm"] == "Hz" and u["model.resource_usage"] == "{percent}"
    assert "modeltel.gpu.collection.errors" not in pts  # nothing failed


def test_instrument_kinds_follow_semconv():
    from opentelemetry.sdk.metrics.export import Gauge, Sum

    _meters, reader = install(make_fake_nvml(two_gpus()))
    data = reader.get_metrics_data()
    kinds = {m.name: m.data for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert isinstance(kinds["hw.gpu.memory.usage"], Sum) and not kinds["hw.gpu.memory.usage"].is_monotonic
    assert isinstance(kinds["hw.errors"], Sum) and kinds["hw.errors"].is_monotonic
    assert isinstance(kinds["hw.gpu.utilization"], Gauge)


def test_model_name_omitted_when_none():
    _meters, reader = install(make_fake_nvml(two_gpus()), model_name=None)
    usage = collect(reader)["model.resource_usage"]
    assert usage and all("model.name" not in a for a, _ in usage)


def test_one_nvml_pass_per_collection():
    fake = make_fake_nvml(two_gpus())
    _meters, reader = install(fake)
    fake.calls.clear()
    collect(reader)
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == 2  # not once per instrument that uses it
    collect(reader)
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == 4


def test_describe_gpus():
    meters, _ = install(make_fake_nvml(two_gpus()))
    rows = meters.describe_gpus()
    assert [(r["index"], r["uuid"], r["name"], r["memory_limit_bytes"]) for r in rows] == [
        (0, G0, "NVIDIA H100 80GB HBM3", 80 * GIB),
        (1, G1, "NVIDIA A10G", 24 * GIB),
    ]


# ------------------------------------------------------------------------------------------------
# MIG
# ------------------------------------------------------------------------------------------------
def test_mig_instances_are_devices_of_their_own():
    mig = [
        FakeDevice(uuid="MIG-1", name="NVIDIA A100 MIG 3g.40gb", total=40 * GIB, used=1 * GIB, errors=MIG_ONLY),
        None,  # empty slot
        FakeDevice(uuid="MIG-2", name="NVIDIA A100 MIG 3g.40gb", total=40 * GIB, used=2 * GIB, errors=MIG_ONLY),
    ]
    fake = make_fake_nvml([FakeDevice(uuid=G0, name="NVIDIA A100-SXM4-80GB", mig=mig)])
    meters, reader = install(fake)
    pts = collect(reader)
    assert by_device(pts["hw.gpu.memory.usage"]) == {G0: 20 * GIB, "MIG-1": 1 * GIB, "MIG-2": 2 * GIB}
    assert by_device(pts["hw.gpu.memory.limit"])["MIG-2"] == 40 * GIB
    # fields a MIG instance cannot report are absent for it, not 0
    assert set(by_device(pts["hw.gpu.utilization"])) == {G0}
    assert set(by_device(pts["modeltel.gpu.temperature"])) == {G0}
    mig_attrs = next(a for a, _ in pts["hw.gpu.memory.usage"] if a["hw.id"] == "MIG-2")
    assert mig_attrs["hw.parent"] == G0
    assert mig_attrs["modeltel.gpu.mig.index"] == 2
    assert mig_attrs["modeltel.gpu.index"] == 0
    assert [r["uuid"] for r in meters.describe_gpus()] == [G0, "MIG-1", "MIG-2"]
    assert errors(pts, "temperature") == {
        ("MIG-1", "temperature", "NotSupported"): 1,
        ("MIG-2", "temperature", "NotSupported"): 1,
    }


# ------------------------------------------------------------------------------------------------
# Failure modes
# ------------------------------------------------------------------------------------------------
def test_no_nvml_library_import_error(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    caplog.set_level(logging.DEBUG, logger="modeltel")
    mp, reader = provider()
    meters = install_meters(mp, gpu=True, host=True)
    settle()  # let one CPU clock tick pass so the cpu percentage has an interval
    assert not meters.gpu_available
    assert meters.describe_gpus() == []
    pts = collect(reader)
    assert errors(pts) == {(None, "init", "LibraryNotFound"): 1}
    assert not [n for n in pts if n.startswith("hw.")]
    assert [a for a, _ in pts["model.resource_usage"] if a["resource_type"] == "cpu"]  # host meters unaffected
    assert len(gpu_log_lines(caplog)) == 1
    meters.shutdown()


@pytest.mark.parametrize(
    ("error", "kind"),
    [(pynvml.NVMLError_LibraryNotFound, "LibraryNotFound"), (pynvml.NVMLError_DriverNotLoaded, "DriverNotLoaded")],
)
def test_no_library_or_no_driver_at_init(error, kind, caplog):
    caplog.set_level(logging.DEBUG, logger="modeltel")
    fake = make_fake_nvml(two_gpus(), init_error=error)
    mp, reader = provider()
    meters = install_meters(mp, host=True, nvml=fake)
    settle()  # let one CPU clock tick pass so the cpu percentage has an interval
    assert not meters.gpu_available and meters.describe_gpus() == []
    for _ in range(3):
        pts = collect(reader)
    assert errors(pts) == {(None, "init", kind): 1}
    assert [a for a, _ in pts["model.resource_usage"] if a["resource_type"] == "cpu"]
    assert len(gpu_log_lines(caplog)) == 1
    meters.shutdown()
    assert fake.shutdown_count == 0  # never initialised, nothing to shut down


def test_no_device_says_no_gpu_found_once(caplog):
    caplog.set_level(logging.DEBUG, logger="modeltel")
    fake = make_fake_nvml([])
    meters, reader = install(fake)
    assert not meters.gpu_available and meters.describe_gpus() == []
    collect(reader)
    pts = collect(reader)
    assert errors(pts) == {(None, "init", "NoDevice"): 1}
    lines = gpu_log_lines(caplog)
    assert len(lines) == 1 and "no GPU found" in lines[0].getMessage()
    assert fake.shutdown_count == 1  # NVML released straight away
    meters.shutdown()
    assert fake.shutdown_count == 1


@pytest.mark.parametrize(
    ("error", "kind", "field", "metric"),
    [
        (pynvml.NVMLError_NotSupported, "NotSupported", "temperature", "modeltel.gpu.temperature"),
        (pynvml.NVMLError_NoPermission, "NoPermission", "process_memory", "modeltel.gpu.process.memory.usage"),
        (pynvml.NVMLError_NotSupported, "NotSupported", "ecc_corrected", "hw.errors"),
    ],
)
def test_permanent_field_error_skips_only_that_reading(error, kind, field, metric, caplog):
    caplog.set_level(logging.DEBUG, logger="modeltel")
    fake = make_fake_nvml(two_gpus(errors={field: error}))
    _meters, reader = install(fake)
    for _ in range(3):
        pts = collect(reader)
    if metric == "hw.errors":
        assert set(by_device(pts[metric], error__type="corrected")) == {G1}
        assert set(by_device(pts[metric], error__type="uncorrected")) == {G0, G1}
    else:
        assert set(by_device(pts[metric])) == {G1}  # no false 0 for G0
    assert by_device(pts["hw.power"]) == {G0: 312.5, G1: 312.5}  # the rest of G0 still read
    assert errors(pts) == {(G0, field, kind): 1}  # not read again, so counted once
    lines = gpu_log_lines(caplog)
    assert len(lines) == 1 and G0 in lines[0].getMessage() and kind in lines[0].getMessage()


def test_transient_error_is_counted_each_time_logged_once_and_recovers(caplog):
    caplog.set_level(logging.DEBUG, logger="modeltel")
    devices = two_gpus(errors={"power": pynvml.NVMLError_Unknown})
    fake = make_fake_nvml(devices)
    _meters, reader = install(fake)
    collect(reader)
    collect(reader)
    pts = collect(reader)
    assert set(by_device(pts["hw.power"])) == {G1}
    assert errors(pts) == {(G0, "power", "Unknown"): 3}
    assert len(gpu_log_lines(caplog)) == 1
    devices[0].errors.clear()
    pts = collect(reader)
    assert by_device(pts["hw.power"]) == {G0: 312.5, G1: 312.5}
    assert errors(pts) == {(G0, "power", "Unknown"): 3}


def test_gpu_lost_mid_run_stops_that_device_only(caplog):
    caplog.set_level(logging.DEBUG, logger="modeltel")
    devices = two_gpus()
    fake = make_fake_nvml(devices)
    mp, reader = provider()
    meters = install_meters(mp, host=True, nvml=fake)
    settle()  # let one CPU clock tick pass so the cpu percentage has an interval
    pts = collect(reader)
    assert set(by_device(pts["hw.gpu.utilization"])) == {G0, G1}

    devices[0].lost = True
    fake.calls.clear()
    for _ in range(3):
        pts = collect(reader)
    for name in ("hw.gpu.utilization", "hw.gpu.memory.usage", "hw.power", "modeltel.gpu.process.memory.usage"):
        assert set(by_device(pts[name])) == {G1}, name
    assert errors(pts) == {(G0, "utilization", "GpuIsLost"): 1}
    # 3 reads of G1 plus the one G0 read that found it lost: the lost GPU is not read again
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == 4
    assert [a for a, _ in pts["model.resource_usage"] if a["resource_type"] == "cpu"]
    assert pts["system.memory.usage"]
    lines = gpu_log_lines(caplog)
    assert len(lines) == 1 and "lost" in lines[0].getMessage()
    assert [r["lost"] for r in meters.describe_gpus()] == [True, False]
    meters.shutdown()


def test_process_with_none_memory_is_not_reported_as_zero(caplog):
    caplog.set_level(logging.DEBUG, logger="modeltel")
    fake = make_fake_nvml(two_gpus())
    fake.devices[0].processes = [(os.getpid(), None)]
    fake.devices[1].processes = [(os.getpid(), 2 * GIB)]
    _meters, reader = install(fake)
    collect(reader)
    pts = collect(reader)
    assert by_device(pts["modeltel.gpu.process.memory.usage"]) == {G1: 2 * GIB}
    assert errors(pts) == {(G0, "process_memory", "NotAvailable"): 2}
    assert len(gpu_log_lines(caplog)) == 1


def test_process_memory_includes_worker_processes():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        fake = make_fake_nvml(two_gpus())
        fake.devices[0].processes = [(os.getpid(), 1 * GIB), (child.pid, 2 * GIB), (1, 4 * GIB)]
        _meters, reader = install(fake)
        pts = collect(reader)
        assert by_device(pts["modeltel.gpu.process.memory.usage"])[G0] == 3 * GIB
    finally:
        child.kill()
        child.wait()


def test_unexpected_exception_in_a_reading_is_contained(caplog):
    caplog.set_level(logging.DEBUG, logger="modeltel")
    fake = make_fake_nvml(two_gpus(errors={"memory": RuntimeError}))
    _meters, reader = install(fake)
    pts = collect(reader)
    assert set(by_device(pts["hw.gpu.memory.usage"])) == {G1}
    assert errors(pts) == {(G0, "memory", "RuntimeError"): 1}


# ------------------------------------------------------------------------------------------------
# Fork, shutdown
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_worker_keeps_its_meters():
    fake = make_fake_nvml(two_gpus())
    mp, reader = provider()
    meters = install_meters(mp, host=True, nvml=fake, model_name="iris")
    settle()  # let one CPU clock tick pass so the cpu percentage has an interval
    collect(reader)
    assert fake.init_count == 1
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the parent's NVML handles are invalid here (the fake enforces it)
        try:
            os.close(rfd)
            fake.devices[0].processes = [(os.getpid(), 123)]
            pts = collect(reader)
            result = {
                "util": by_device(pts.get("hw.gpu.utilization", [])),
                "proc": by_device(pts.get("modeltel.gpu.process.memory.usage", [])),
                "errors": [list(k) for k in errors(pts)],
                "init_count": fake.init_count,
                "host": len([a for a, _ in pts.get("model.resource_usage", []) if "hw.id" not in a]),
                "proc_pid": meters.host._instrumentor._proc.pid,
                "me": os.getpid(),
            }
            meters.shutdown()
            result["shutdown_count"] = fake.shutdown_count
            os.write(wfd, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd) as f:
        result = json.loads(f.read() or "{}")
    os.waitpid(pid, 0)
    assert result["util"] == {G0: 0.42, G1: 0.07}
    assert result["proc"] == {G0: 123, G1: 0}
    assert result["errors"] == []
    assert result["init_count"] == 2  # re-initialised in the child
    assert result["shutdown_count"] == 1  # the child shut down its own NVML session
    assert result["host"] == 2
    assert result["proc_pid"] == result["me"]  # process.* metrics describe the worker, not the parent
    # the parent is untouched
    assert by_device(collect(reader)["hw.gpu.utilization"]) == {G0: 0.42, G1: 0.07}
    meters.shutdown()


def test_shutdown_is_idempotent_and_stops_reporting():
    import atexit

    fake = make_fake_nvml(two_gpus())
    mp, reader = provider()
    meters = install_meters(mp, host=True, nvml=fake)
    settle()  # let one CPU clock tick pass so the cpu percentage has an interval
    assert collect(reader)["hw.gpu.utilization"]
    meters.shutdown()
    meters.shutdown()
    assert fake.shutdown_count == 1
    pts = collect(reader)
    assert not [n for n, v in pts.items() if v and n != "modeltel.gpu.collection.errors"]
    assert meters.gpu._atexit is None
    assert atexit.unregister  # (unregistered in shutdown)


def test_gpu_off_registers_nothing():
    fake = make_fake_nvml(two_gpus())
    mp, reader = provider()
    meters = install_meters(mp, gpu=False, host=False, nvml=fake)
    assert not meters.gpu_available
    assert collect(reader) == {}
    assert fake.calls == {}


# ------------------------------------------------------------------------------------------------
# Prometheus names (what the README lists)
# ------------------------------------------------------------------------------------------------
def test_prometheus_names_match_taxonomy():
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import REGISTRY, generate_latest

    from modeltel.export.readers import prometheus_reader_class

    reader = prometheus_reader_class()()
    try:
        mp = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        fake = make_fake_nvml(two_gpus(errors={"temperature": pynvml.NVMLError_NotSupported}))
        meters = install_meters(mp, host=True, nvml=fake, model_name="iris")
        settle()  # let one CPU clock tick pass so the cpu percentage has an interval
        text = generate_latest(REGISTRY).decode()
        meters.shutdown()
    finally:
        REGISTRY.unregister(reader._collector)
    for inst in tx.GPU_INSTRUMENTS:
        assert f"\n{inst.prometheus_series}{{" in text, inst.prometheus_series
    assert "model_resource_usage{" in text
    rows = [line for line in text.splitlines() if line.startswith("model_resource_usage{")]
    for rt in ("cpu", "memory", "gpu"):  # one family, each row labelled correctly
        assert [r for r in rows if f'resource_type="{rt}"' in r and 'model_name="iris"' in r], rt
    assert len([r for r in rows if 'resource_type="gpu"' in r and 'hw_id="GPU-' in r]) == 2
    assert 'hw_id="GPU-aaaaaaaa-0000-0000-0000-000000000000"' in text


def test_pids_from_another_namespace_are_not_reported_as_zero(caplog):
    caplog.set_level(logging.DEBUG, logger="modeltel")
    invisible = 2**30  # above any pid_max: not a process this one can see
    fake = make_fake_nvml(two_gpus())
    fake.devices[0].processes = [(invisible, 5 * GIB)]  # e.g. a container without hostPID: ours may be this
    fake.devices[1].processes = [(os.getpid(), 2 * GIB), (invisible, 5 * GIB)]  # ours is listed: known
    _meters, reader = install(fake)
    pts = collect(reader)
    assert by_device(pts["modeltel.gpu.process.memory.usage"]) == {G1: 2 * GIB}
    assert errors(pts) == {(G0, "process_memory", "PidNotVisible"): 1}
    assert len(gpu_log_lines(caplog)) == 1


def test_gpu_lost_before_start_is_skipped(caplog):
    caplog.set_level(logging.DEBUG, logger="modeltel")
    devices = two_gpus()
    devices[0].lost = True
    meters, reader = install(make_fake_nvml(devices))
    assert meters.gpu_available
    assert [r["uuid"] for r in meters.describe_gpus()] == [G1]
    pts = collect(reader)
    assert set(by_device(pts["hw.gpu.utilization"])) == {G1}
    assert errors(pts) == {("index:0", "handle", "GpuIsLost"): 1}
    assert len(gpu_log_lines(caplog)) == 1
