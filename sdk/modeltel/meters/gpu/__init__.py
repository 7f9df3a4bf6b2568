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
import weakref
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from modeltel import taxonomy as tx
from modeltel.meters.gpu.devices import GpuDevice, acquire_handle, enumerate_devices
from modeltel.meters.gpu.failures import Failures
from modeltel.meters.gpu.nvml import NvmlSession, error_kind
from modeltel.meters.gpu.processes import ANCESTRY_TTL_S, ProcessAttribution
from modeltel.meters.gpu.readings import FIELDS, DeviceReader, GpuReading

__all__ = ["ANCESTRY_TTL_S", "FIELDS", "THROTTLE_REASONS", "GpuDevice", "GpuMeters", "GpuReading", "error_kind"]

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
        self._processes = ProcessAttribution(getpid, self._failures)
        self._reader: DeviceReader | None = None  # once NVML is up
        self._snapshot: dict[str, GpuReading] = {}
        self._atexit: Callable[[], None] | None = None

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
                self._reader = DeviceReader(self._session.nvml, self._failures, self._processes)
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
            value = None if reading is None else getattr(reading, key)
            if value is None:
                continue
            attrs = dev.attributes if extra is None else {**dev.attributes, **extra}
            out.append(Observation(value, attrs))
        return out

    def _observe_throttle(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for dev in self._devices:
            reading = self._snapshot.get(dev.uuid)
            mask = None if reading is None else reading.throttle
            if mask is None:
                continue
            for bit, reason in THROTTLE_REASONS:
                out.append(Observation(1 if mask & bit else 0, {**dev.attributes, tx.ATTR_GPU_THROTTLE_REASON: reason}))
        return out

    def _observe_ecc(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for dev in self._devices:
            reading = self._snapshot.get(dev.uuid)
            if reading is None:
                continue
            for count, kind in (
                (reading.ecc_corrected, tx.ECC_CORRECTED),
                (reading.ecc_uncorrected, tx.ECC_UNCORRECTED),
            ):
                if count is not None:
                    out.append(Observation(count, {**dev.attributes, tx.ATTR_ERROR_TYPE: kind}))
        return out

    def resource_usage_observations(self) -> list[Observation]:
        """``model.resource_usage{resource_type="gpu"}`` per device, from this collection's snapshot."""
        out = []
        for dev in self._devices:
            reading = self._snapshot.get(dev.uuid)
            pct = None if reading is None else reading.utilization_percent
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
    def collect(self) -> dict[str, GpuReading]:
        """Take one snapshot of every live device (by UUID); failed readings are None in it."""
        with self._lock:
            if self._closed or not self._session.initialised or self._reader is None:
                self._snapshot = {}
                return self._snapshot
            if not self._session.ensure_pid(self._devices):
                self._snapshot = {}
                return self._snapshot
            snapshot = {}
            for dev in self._devices:
                if dev.lost:
                    continue
                snapshot[dev.uuid] = self._reader.read(dev)
            self._snapshot = snapshot
            return snapshot

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
