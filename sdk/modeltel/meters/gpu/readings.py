"""One collection's readings of one device, in reporting units, taken with one NVML call per field.

Each field is read on its own and a failure skips only that field: it stays ``None`` in the
:class:`GpuReading` (no stand-in 0) and is counted and logged by :class:`Failures`. A field that failed
permanently on a device is not read again there; once a device is lost, the rest of it is not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeltel.meters.gpu.devices import GpuDevice, acquire_handle
from modeltel.meters.gpu.failures import Failures
from modeltel.meters.gpu.processes import ProcessAttribution

# The fields of a snapshot, in read order. Each is skipped independently.
FIELDS = (
    "utilization",
    "memory",
    "temperature",
    "power",
    "power_limit",
    "clock_sm",
    "clock_memory",
    "throttle",
    "ecc_corrected",
    "ecc_uncorrected",
    "process_memory",
)

_ECC_FN = "nvmlDeviceGetTotalEccErrors"


@dataclass(slots=True)
class GpuReading:
    """What one collection read from ``device``; ``None`` = not read (failed, unsupported, device lost)."""

    device: GpuDevice
    utilization_percent: float | None = None  # 0-100, for model.resource_usage
    utilization: float | None = None  # 0-1
    memory_controller_utilization: float | None = None  # 0-1
    memory_total: int | None = None  # bytes
    memory_used: int | None = None  # bytes
    memory_free: int | None = None  # bytes
    memory_utilization: float | None = None  # 0-1; None when the total is 0
    temperature: float | None = None  # degrees C
    power: float | None = None  # W
    power_limit: float | None = None  # W
    clock_sm: int | None = None  # Hz
    clock_memory: int | None = None  # Hz
    throttle: int | None = None  # clock-event reason bits
    ecc_corrected: int | None = None  # volatile count
    ecc_uncorrected: int | None = None  # volatile count
    process_memory: int | None = None  # bytes used by this process and its descendants


class DeviceReader:
    """Reads every field of a device through NVML into a :class:`GpuReading`."""

    def __init__(self, nvml: Any, failures: Failures, processes: ProcessAttribution) -> None:
        self._nvml = nvml
        self._failures = failures
        self._processes = processes
        self._reasons_fn = (
            "nvmlDeviceGetCurrentClocksEventReasons"
            if hasattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons")
            else "nvmlDeviceGetCurrentClocksThrottleReasons"
        )

    def read(self, dev: GpuDevice) -> GpuReading:
        reading = GpuReading(dev)
        handle = acquire_handle(self._nvml, dev, self._failures)
        if handle is None:
            return reading
        self._read_load(dev, handle, reading)
        self._read_sensors(dev, handle, reading)
        self._read_health(dev, handle, reading)
        procs = self._get(dev, handle, "process_memory", "nvmlDeviceGetComputeRunningProcesses")
        if procs is not None:
            reading.process_memory = self._processes.own_memory(dev, procs)
        return reading

    def _get(self, dev: GpuDevice, handle: Any, fld: str, fn_name: str, *args: Any) -> Any:
        """``nvml.<fn_name>(handle, *args)``, or None when it failed or ``fld`` is not read on ``dev``."""
        if dev.lost or fld in dev.disabled:
            return None
        try:
            return getattr(self._nvml, fn_name)(handle, *args)
        except Exception as exc:
            self._failures.field_failed(dev, fld, exc)
            return None

    def _read_load(self, dev: GpuDevice, handle: Any, reading: GpuReading) -> None:
        util = self._get(dev, handle, "utilization", "nvmlDeviceGetUtilizationRates")
        if util is not None:
            reading.utilization_percent = float(util.gpu)
            reading.utilization = util.gpu / 100.0
            reading.memory_controller_utilization = util.memory / 100.0
        mem = self._get(dev, handle, "memory", "nvmlDeviceGetMemoryInfo")
        if mem is not None:
            total, used = int(mem.total), int(mem.used)
            dev.memory_total = total
            reading.memory_total = total
            reading.memory_used = used
            reading.memory_free = int(mem.free)
            if total > 0:
                reading.memory_utilization = used / total

    def _read_sensors(self, dev: GpuDevice, handle: Any, reading: GpuReading) -> None:
        nvml = self._nvml
        temp = self._get(dev, handle, "temperature", "nvmlDeviceGetTemperature", nvml.NVML_TEMPERATURE_GPU)
        if temp is not None:
            reading.temperature = float(temp)
        milliwatts = self._get(dev, handle, "power", "nvmlDeviceGetPowerUsage")
        if milliwatts is not None:
            reading.power = milliwatts / 1000.0
        milliwatts = self._get(dev, handle, "power_limit", "nvmlDeviceGetEnforcedPowerLimit")
        if milliwatts is not None:
            reading.power_limit = milliwatts / 1000.0
        mhz = self._get(dev, handle, "clock_sm", "nvmlDeviceGetClockInfo", nvml.NVML_CLOCK_SM)
        if mhz is not None:
            reading.clock_sm = mhz * 1_000_000
        mhz = self._get(dev, handle, "clock_memory", "nvmlDeviceGetClockInfo", nvml.NVML_CLOCK_MEM)
        if mhz is not None:
            reading.clock_memory = mhz * 1_000_000

    def _read_health(self, dev: GpuDevice, handle: Any, reading: GpuReading) -> None:
        nvml = self._nvml
        mask = self._get(dev, handle, "throttle", self._reasons_fn)
        if mask is not None:
            reading.throttle = int(mask)
        volatile = nvml.NVML_VOLATILE_ECC
        count = self._get(dev, handle, "ecc_corrected", _ECC_FN, nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, volatile)
        if count is not None:
            reading.ecc_corrected = int(count)
        count = self._get(dev, handle, "ecc_uncorrected", _ECC_FN, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, volatile)
        if count is not None:
            reading.ecc_uncorrected = int(count)
