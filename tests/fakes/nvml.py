"""A fake NVML installed at the pynvml boundary.

Same function names, argument order, return types and units as nvidia-ml-py's ``pynvml`` (memory in
bytes, power in milliwatts, clocks in MHz, temperature in degrees C, strings as ``str``), and the REAL
error classes and constants taken from the installed ``pynvml``. Handles are only valid in the process
that called ``nvmlInit`` (as with the real library after ``fork``): using one elsewhere raises
``NVMLError_Uninitialized``.
"""

from __future__ import annotations

import os
import types
from dataclasses import dataclass, field
from typing import Any

import pynvml as real

ERROR_NAMES = [n for n in dir(real) if n.startswith("NVMLError")]
CONSTANT_NAMES = [n for n in dir(real) if n.startswith(("NVML_", "nvmlClocksEventReason", "nvmlClocksThrottleReason"))]


@dataclass
class FakeDevice:
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    name: str = "NVIDIA H100 80GB HBM3"
    gpu_util: int = 42  # percent
    mem_util: int = 17  # percent (memory controller busy)
    total: int = 80 * 1024**3  # bytes
    used: int = 20 * 1024**3
    temperature: int = 55  # C
    power_mw: int = 312_500
    power_limit_mw: int = 700_000
    sm_mhz: int = 1980
    mem_mhz: int = 2619
    throttle: int = 0x004 | 0x040  # sw power cap + hw thermal slowdown
    ecc_corrected: int = 3
    ecc_uncorrected: int = 1
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, usedGpuMemory bytes)
    mig: list[FakeDevice] | None = None  # MIG instances (slots; None entries = empty slot)
    # field name -> exception class raised when read; e.g. {"temperature": NVMLError_NotSupported}
    errors: dict[str, type[BaseException]] = field(default_factory=dict)
    lost: bool = False


@dataclass
class _Handle:
    device: FakeDevice
    pid: int


class _Obj:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def make_fake_nvml(
    devices: list[FakeDevice] | None = None,
    *,
    init_error: type[BaseException] | None = None,
    driver: str = "550.54.15",
) -> types.ModuleType:
    """Return a module-like fake; ``fake.calls`` counts calls per function name."""
    m = types.ModuleType("fake_pynvml")
    for name in ERROR_NAMES + CONSTANT_NAMES:
        setattr(m, name, getattr(real, name))
    m.devices = list(devices or [])
    m.calls = {}
    m.init_pid = None
    m.init_count = 0
    m.shutdown_count = 0

    def count(name: str) -> None:
        m.calls[name] = m.calls.get(name, 0) + 1

    def check_init() -> None:
        if m.init_pid != os.getpid():
            raise real.NVMLError_Uninitialized()

    def dev(handle: _Handle, fld: str) -> FakeDevice:
        check_init()
        if handle.pid != os.getpid():
            raise real.NVMLError_Uninitialized()
        d = handle.device
        if d.lost:
            raise real.NVMLError_GpuIsLost()
        if fld in d.errors:
            raise d.errors[fld]()
        return d

    def nvmlInit() -> None:
        count("nvmlInit")
        if init_error is not None:
            raise init_error()
        m.init_pid = os.getpid()
        m.init_count += 1

    def nvmlShutdown() -> None:
        count("nvmlShutdown")
        check_init()
        m.shutdown_count += 1
        m.init_pid = None

    def nvmlSystemGetDriverVersion() -> str:
        check_init()
        return driver

    def nvmlDeviceGetCount() -> int:
        check_init()
        return len(m.devices)

    def nvmlDeviceGetHandleByIndex(index: int) -> _Handle:
        count("nvmlDeviceGetHandleByIndex")
        check_init()
        if not 0 <= index < len(m.devices):
            raise real.NVMLError_InvalidArgument()
        if m.devices[index].lost:
            raise real.NVMLError_GpuIsLost()
        return _Handle(m.devices[index], os.getpid())

    def nvmlDeviceGetUUID(h: _Handle) -> str:
        return dev(h, "uuid").uuid

    def nvmlDeviceGetName(h: _Handle) -> str:
        return dev(h, "name").name

    def nvmlDeviceGetUtilizationRates(h: _Handle):
        count("nvmlDeviceGetUtilizationRates")
        d = dev(h, "utilization")
        return _Obj(gpu=d.gpu_util, memory=d.mem_util)

    def nvmlDeviceGetMemoryInfo(h: _Handle, version=None):
        d = dev(h, "memory")
        return _Obj(total=d.total, used=d.used, free=d.total - d.used)

    def nvmlDeviceGetTemperature(h: _Handle, sensor: int) -> int:
        assert sensor == real.NVML_TEMPERATURE_GPU
        return dev(h, "temperature").temperature

    def nvmlDeviceGetPowerUsage(h: _Handle) -> int:
        return dev(h, "power").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(h: _Handle) -> int:
        return dev(h, "power_limit").power_limit_mw

    def nvmlDeviceGetClockInfo(h: _Handle, clock_type: int) -> int:
        if clock_type == real.NVML_CLOCK_SM:
            return dev(h, "clock_sm").sm_mhz
        if clock_type == real.NVML_CLOCK_MEM:
            return dev(h, "clock_memory").mem_mhz
        raise real.NVMLError_InvalidArgument()

    def nvmlDeviceGetCurrentClocksEventReasons(h: _Handle) -> int:
        return dev(h, "throttle").throttle

    def nvmlDeviceGetCurrentClocksThrottleReasons(h: _Handle) -> int:
        return dev(h, "throttle").throttle

    def nvmlDeviceGetTotalEccErrors(h: _Handle, error_type: int, counter_type: int) -> int:
        assert counter_type == real.NVML_VOLATILE_ECC
        if error_type == real.NVML_MEMORY_ERROR_TYPE_CORRECTED:
            return dev(h, "ecc_corrected").ecc_corrected
        return dev(h, "ecc_uncorrected").ecc_uncorrected

    def nvmlDeviceGetComputeRunningProcesses(h: _Handle) -> list:
        d = dev(h, "process_memory")
        return [_Obj(pid=pid, usedGpuMemory=mem, gpuInstanceId=0, computeInstanceId=0) for pid, mem in d.processes]

    def nvmlDeviceGetMigMode(h: _Handle) -> list[int]:
        d = dev(h, "mig_mode")
        if d.mig is None:
            raise real.NVMLError_NotSupported()
        return [real.NVML_DEVICE_MIG_ENABLE, real.NVML_DEVICE_MIG_ENABLE]

    def nvmlDeviceGetMaxMigDeviceCount(h: _Handle) -> int:
        return len(dev(h, "mig_count").mig or [])

    def nvmlDeviceGetMigDeviceHandleByIndex(h: _Handle, index: int) -> _Handle:
        d = dev(h, "mig_handle")
        slots = d.mig or []
        if index >= len(slots) or slots[index] is None:
            raise real.NVMLError_NotFound()
        return _Handle(slots[index], os.getpid())

    for fn in list(locals().values()):
        if callable(fn) and getattr(fn, "__name__", "").startswith("nvml"):
            setattr(m, fn.__name__, fn)
    return m
