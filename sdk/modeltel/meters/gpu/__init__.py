"""GPU meters read through NVML (nvidia-ml-py's ``pynvml``) at collection time.

Every instrument is observable. The first-registered instrument's callback takes one snapshot of every
device (one NVML call per field per device); the others read that snapshot, so a collection costs one
pass over NVML whatever the number of instruments. The SDK runs callbacks in registration order, under
its collection lock.

Failure handling: a reading that fails is skipped (no Observation, never a stand-in 0), counted in
``modeltel.gpu.collection.errors{hw.id, field, error.type}`` and logged once per (device, field, error
kind). ``NotSupported``, ``NoPermission`` and ``FunctionNotFound`` do not change while the driver runs,
so that field is not read again on that device (counted once). ``GpuIsLost`` stops all reads of that
device (counted and logged once); other devices carry on. After ``os.fork()`` the first collection in
the child re-initialises NVML and re-acquires handles (a pid check, no global hook).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from modeltel import taxonomy as tx
from modeltel.meters.gpu.devices import GpuDevice, acquire_handle, enumerate_devices
from modeltel.meters.gpu.failures import Failures
from modeltel.meters.gpu.nvml import NvmlSession, error_kind

__all__ = ["ANCESTRY_TTL_S", "FIELDS", "THROTTLE_REASONS", "GpuDevice", "GpuMeters", "error_kind"]

ANCESTRY_TTL_S = 30.0

# Clock-event (throttle) reason bits, as in nvml.h, with the label value we report.
THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)

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


class GpuMeters:
    """NVML-backed observable GPU instruments; state lives here, not in module globals."""

    def __init__(
        self,
        meter_provider: MeterProvider,
        *,
        nvml: ModuleType | Any | None = None,
        model_name: str | None = None,
        getpid: Callable[[], int] = os.getpid,
    ) -> None:
        self._provider = meter_provider
        self._model_name = model_name
        self._getpid = getpid
        self._lock = threading.Lock()
        self._failures = Failures()
        self._session = NvmlSession(nvml, getpid, self._failures)
        self._closed = False
        self._devices: list[GpuDevice] = []
        self._snapshot: dict[str, dict[str, Any]] = {}
        self._atexit: Callable[[], None] | None = None
        # pid -> (is this process or a descendant, when checked); psutil costs ~100 µs a pid, so results
        # are kept for ANCESTRY_TTL_S (a pid reused within that window is vanishingly unlikely).
        self._ancestry: dict[int, tuple[bool, float]] = {}
        self._ancestry_pid = 0

    # ---------------------------------------------------------------------------------------------
    # Set-up
    # ---------------------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self._session.initialised and bool(self._devices)

    @property
    def devices(self) -> list[GpuDevice]:
        return list(self._devices)

    def start(self) -> bool:
        """Initialise NVML, enumerate devices and register the instruments. Never raises."""
        try:
            if self._session.open():
                self._devices = enumerate_devices(self._session.nvml, self._session.driver_version, self._failures)
        except Exception as exc:  # any surprise in a third-party library must not break the server
            self._failures.fail(
                None, "init", exc, "GPU metrics disabled: NVML initialisation failed (%s)", exc, level=logging.WARNING
            )
        # The error counter exists even without a GPU so "no NVML" is visible, not just absent data.
        self._register()
        if self._session.initialised and not self._devices:
            self._failures.record(None, "init", "NoDevice")
            self._failures.log_once((None, "init", "NoDevice"), logging.INFO, "no GPU found: NVML reports 0 devices")
            self._session.close()
        if self._session.initialised:
            ref = weakref.WeakMethod(self.shutdown)

            def _at_exit() -> None:
                method = ref()
                if method is not None:
                    method()

            self._atexit = _at_exit
            atexit.register(_at_exit)
        return self.available

    def describe_gpus(self) -> list[dict[str, Any]]:
        out = []
        for dev in self._devices:
            out.append(
                {
                    "index": dev.index,
                    "mig_index": dev.mig_index,
                    "name": dev.name,
                    "uuid": dev.uuid,
                    "parent_uuid": dev.parent_uuid,
                    "driver_version": self._session.driver_version,
                    "memory_limit_bytes": self._memory_total(dev),
                    "lost": dev.lost,
                }
            )
        return out

    def _memory_total(self, dev: GpuDevice) -> int | None:
        if dev.memory_total is None and not dev.lost and self._session.initialised and not self._closed:
            with self._lock:
                self._session.ensure_pid(self._devices)
                handle = acquire_handle(self._session.nvml, dev, self._failures)
                if handle is not None:
                    try:
                        dev.memory_total = int(self._session.nvml.nvmlDeviceGetMemoryInfo(handle).total)
                    except Exception as exc:
                        self._failures.field_failed(dev, "memory", exc)
        return dev.memory_total

    # ---------------------------------------------------------------------------------------------
    # Instruments
    # ---------------------------------------------------------------------------------------------
    def _register(self) -> None:
        meter = self._provider.get_meter(tx.METER_NAME_GPU)
        if self.available:
            # Registration order matters: the first callback takes the snapshot.
            specs: list[tuple[tx.Instrument, str, Callable[[CallbackOptions], Iterable[Observation]]]] = [
                (tx.GPU_UTILIZATION, "gauge", self._observe_utilization),
                (tx.GPU_MEMORY_USAGE, "updown", self._simple("memory_used")),
                (tx.GPU_MEMORY_LIMIT, "updown", self._simple("memory_total")),
                (tx.GPU_MEMORY_UTILIZATION, "gauge", self._simple("memory_utilization")),
                (tx.GPU_MEMORY_FREE, "updown", self._simple("memory_free")),
                (tx.GPU_MEMORY_CONTROLLER_UTILIZATION, "gauge", self._simple("memory_controller_utilization")),
                (tx.GPU_TEMPERATURE, "gauge", self._simple("temperature")),
                (tx.GPU_POWER, "gauge", self._simple("power")),
                (tx.GPU_POWER_LIMIT, "gauge", self._simple("power_limit")),
                (tx.GPU_CLOCK_SM, "gauge", self._simple("clock_sm")),
                (tx.GPU_CLOCK_MEMORY, "gauge", self._simple("clock_memory")),
                (tx.GPU_THROTTLE, "gauge", self._observe_throttle),
                (tx.GPU_ERRORS, "counter", self._observe_ecc),
                (tx.GPU_PROCESS_MEMORY, "updown", self._simple("process_memory")),
            ]
            for inst, kind, cb in specs:
                _create(meter, kind, inst, cb)
        # Last, so the counts include the failures of this very collection.
        _create(meter, "counter", tx.GPU_COLLECTION_ERRORS, self._observe_errors)

    def _observe_utilization(self, options: CallbackOptions) -> Iterable[Observation]:
        self.collect()
        extra = {tx.ATTR_HW_GPU_TASK: "general"}
        return self._observations("utilization", extra)

    def _simple(self, key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return self._observations(key)

        callback.__name__ = f"observe_{key}"
        return callback

    def _observations(self, key: str, extra: dict[str, Any] | None = None) -> list[Observation]:
        out = []
        for dev in self._devices:
            reading = self._snapshot.get(dev.uuid)
            if reading is None or key not in reading:
                continue
            attrs = dev.attributes if extra is None else {**dev.attributes, **extra}
            out.append(Observation(reading[key], attrs))
        return out

    def _observe_throttle(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for dev in self._devices:
            mask = self._snapshot.get(dev.uuid, {}).get("throttle")
            if mask is None:
                continue
            for bit, reason in THROTTLE_REASONS:
                out.append(Observation(1 if mask & bit else 0, {**dev.attributes, tx.ATTR_GPU_THROTTLE_REASON: reason}))
        return out

    def _observe_ecc(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for dev in self._devices:
            reading = self._snapshot.get(dev.uuid, {})
            for key, kind in (("ecc_corrected", tx.ECC_CORRECTED), ("ecc_uncorrected", tx.ECC_UNCORRECTED)):
                if key in reading:
                    out.append(Observation(reading[key], {**dev.attributes, tx.ATTR_ERROR_TYPE: kind}))
        return out

    def resource_usage_observations(self) -> list[Observation]:
        """``model.resource_usage{resource_type="gpu"}`` per device, from this collection's snapshot."""
        out = []
        for dev in self._devices:
            pct = self._snapshot.get(dev.uuid, {}).get("utilization_percent")
            if pct is None:
                continue
            attrs = {**dev.attributes, tx.ATTR_RESOURCE_TYPE: tx.RESOURCE_TYPE_GPU}
            if self._model_name is not None:
                attrs[tx.ATTR_MODEL_NAME] = self._model_name
            out.append(Observation(pct, attrs))
        return out

    def _observe_errors(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for (hw_id, fld, kind), count in list(self._failures.counts.items()):
            attrs = {tx.ATTR_GPU_FIELD: fld, tx.ATTR_ERROR_TYPE: kind}
            if hw_id is not None:
                attrs[tx.ATTR_HW_ID] = hw_id
            out.append(Observation(count, attrs))
        return out

    # ---------------------------------------------------------------------------------------------
    # Reading
    # ---------------------------------------------------------------------------------------------
    def collect(self) -> dict[str, dict[str, Any]]:
        """Take one snapshot of every live device; failed readings are absent from it."""
        with self._lock:
            if self._closed or not self._session.initialised:
                self._snapshot = {}
                return self._snapshot
            if not self._session.ensure_pid(self._devices):
                self._snapshot = {}
                return self._snapshot
            snapshot = {}
            for dev in self._devices:
                if dev.lost:
                    continue
                snapshot[dev.uuid] = self._read(dev)
            self._snapshot = snapshot
            return snapshot

    def _read(self, dev: GpuDevice) -> dict[str, Any]:
        nvml = self._session.nvml
        out: dict[str, Any] = {}
        handle = acquire_handle(self._session.nvml, dev, self._failures)
        if handle is None:
            return out

        def get(fld: str, fn_name: str, *args: Any) -> Any:
            if dev.lost or fld in dev.disabled:
                return None
            try:
                return getattr(nvml, fn_name)(handle, *args)
            except Exception as exc:
                self._failures.field_failed(dev, fld, exc)
                return None

        util = get("utilization", "nvmlDeviceGetUtilizationRates")
        if util is not None:
            out["utilization_percent"] = float(util.gpu)
            out["utilization"] = util.gpu / 100.0
            out["memory_controller_utilization"] = util.memory / 100.0
        mem = get("memory", "nvmlDeviceGetMemoryInfo")
        if mem is not None:
            total, used = int(mem.total), int(mem.used)
            dev.memory_total = total
            out["memory_total"] = total
            out["memory_used"] = used
            out["memory_free"] = int(mem.free)
            if total > 0:
                out["memory_utilization"] = used / total
        temp = get("temperature", "nvmlDeviceGetTemperature", nvml.NVML_TEMPERATURE_GPU)
        if temp is not None:
            out["temperature"] = float(temp)
        milliwatts = get("power", "nvmlDeviceGetPowerUsage")
        if milliwatts is not None:
            out["power"] = milliwatts / 1000.0
        milliwatts = get("power_limit", "nvmlDeviceGetEnforcedPowerLimit")
        if milliwatts is not None:
            out["power_limit"] = milliwatts / 1000.0
        mhz = get("clock_sm", "nvmlDeviceGetClockInfo", nvml.NVML_CLOCK_SM)
        if mhz is not None:
            out["clock_sm"] = mhz * 1_000_000
        mhz = get("clock_memory", "nvmlDeviceGetClockInfo", nvml.NVML_CLOCK_MEM)
        if mhz is not None:
            out["clock_memory"] = mhz * 1_000_000
        reasons_fn = (
            "nvmlDeviceGetCurrentClocksEventReasons"
            if hasattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons")
            else "nvmlDeviceGetCurrentClocksThrottleReasons"
        )
        mask = get("throttle", reasons_fn)
        if mask is not None:
            out["throttle"] = int(mask)
        for fld, error_type in (
            ("ecc_corrected", nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED),
            ("ecc_uncorrected", nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
        ):
            count = get(fld, "nvmlDeviceGetTotalEccErrors", error_type, nvml.NVML_VOLATILE_ECC)
            if count is not None:
                out[fld] = int(count)
        procs = get("process_memory", "nvmlDeviceGetComputeRunningProcesses")
        if procs is not None:
            used = self._own_process_memory(dev, procs)
            if used is not None:
                out["process_memory"] = used
        return out

    def _own_process_memory(self, dev: GpuDevice, procs: list[Any]) -> int | None:
        """Bytes used on ``dev`` by this process and its descendants; None when it cannot be known."""
        total = 0
        found = False
        invisible = 0
        for proc in procs:
            ours = self._is_ours(proc.pid)
            if ours is None:
                invisible += 1
                continue
            if not ours:
                continue
            found = True
            if proc.usedGpuMemory is None:
                # NVML could not say (e.g. WDDM, or no permission): the sum would be a lie.
                self._skip_process_memory(dev, "NotAvailable", f"NVML gives no memory figure for process {proc.pid}")
                return None
            total += int(proc.usedGpuMemory)
        if invisible and not found:
            # NVML lists pids this process cannot see: another pid namespace (a container without hostPID)
            # or a process that just exited. Ours may be among them under another number: 0 would be a guess.
            self._skip_process_memory(dev, "PidNotVisible", "NVML lists process ids not visible here")
            return None
        return total

    def _skip_process_memory(self, dev: GpuDevice, kind: str, why: str) -> None:
        self._failures.record(dev.uuid, "process_memory", kind)
        self._failures.log_once(
            (dev.uuid, "process_memory", kind), logging.INFO, "GPU %s: %s; process memory not reported", dev.uuid, why
        )

    def _is_ours(self, pid: int) -> bool | None:
        """True for this process and its descendants, False for others, None for a pid not visible here."""
        me = self._getpid()
        if pid == me:
            return True
        now = time.monotonic()
        if self._ancestry_pid != me:
            self._ancestry, self._ancestry_pid = {}, me
        cached = self._ancestry.get(pid)
        if cached is not None and now - cached[1] < ANCESTRY_TTL_S:
            return cached[0]
        if len(self._ancestry) > 4096:
            self._ancestry.clear()
        import psutil

        ours: bool | None = False
        try:
            proc = psutil.Process(pid)
        except Exception:
            return None  # not cached: it may be a process that just exited
        try:
            for _ in range(32):
                ppid = proc.ppid()
                if ppid == me:
                    ours = True
                    break
                if ppid <= 1:
                    break
                proc = psutil.Process(ppid)
        except Exception:
            ours = False  # an ancestor exited: re-parented, so not a descendant any more
        self._ancestry[pid] = (ours, now)
        return ours

    @property
    def errors(self) -> dict[tuple[str | None, str, str], int]:
        return dict(self._failures.counts)

    # ---------------------------------------------------------------------------------------------
    # Shutdown
    # ---------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop reporting and shut NVML down; idempotent. Instruments stay registered but observe nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._snapshot = {}
            self._session.close()
        if self._atexit is not None:
            atexit.unregister(self._atexit)
            self._atexit = None


def _create(meter: Any, kind: str, inst: tx.Instrument, callback: Callable) -> Any:
    factory = {
        "gauge": meter.create_observable_gauge,
        "updown": meter.create_observable_up_down_counter,
        "counter": meter.create_observable_counter,
    }[kind]
    return factory(inst.otel_name, callbacks=[callback], unit=inst.unit, description=inst.description)
