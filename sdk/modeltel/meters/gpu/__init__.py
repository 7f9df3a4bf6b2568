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

Layout: ``nvml`` (loading, the per-process session, error kinds), ``failures`` (counting and logging
once), ``devices`` (GPUs and MIG instances), ``readings`` (one :class:`GpuReading` per device per
collection), ``processes`` (memory of this process and its workers), ``instruments`` (the observable
callbacks); :class:`GpuMeters` here ties them together.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

from opentelemetry.metrics import MeterProvider, Observation

from modeltel import taxonomy as tx
from modeltel.meters.gpu.devices import GpuDevice, acquire_handle, enumerate_devices
from modeltel.meters.gpu.failures import ErrorKey, Failures
from modeltel.meters.gpu.instruments import THROTTLE_REASONS, GpuInstruments
from modeltel.meters.gpu.nvml import NvmlSession, error_kind
from modeltel.meters.gpu.processes import ANCESTRY_TTL_S, ProcessAttribution
from modeltel.meters.gpu.readings import FIELDS, DeviceReader, GpuReading

__all__ = ["ANCESTRY_TTL_S", "FIELDS", "THROTTLE_REASONS", "GpuDevice", "GpuMeters", "GpuReading", "error_kind"]


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
        self._lock = threading.Lock()  # one collection (or describe_gpus read) at a time
        self._failures = Failures()
        self._session = NvmlSession(nvml, getpid, self._failures)
        self._processes = ProcessAttribution(getpid, self._failures)
        self._reader: DeviceReader | None = None  # once NVML is up
        self._instruments = GpuInstruments(self.collect, lambda: self._snapshot, self._failures, model_name)
        self._closed = False
        self._devices: list[GpuDevice] = []
        self._snapshot: dict[str, GpuReading] = {}
        self._atexit: Callable[[], None] | None = None

    @property
    def available(self) -> bool:
        return self._session.initialised and bool(self._devices)

    @property
    def devices(self) -> list[GpuDevice]:
        return list(self._devices)

    @property
    def errors(self) -> dict[ErrorKey, int]:
        return dict(self._failures.counts)

    def start(self) -> bool:
        """Initialise NVML, enumerate devices and register the instruments. Never raises."""
        session, failures = self._session, self._failures
        try:
            if session.open():
                self._reader = DeviceReader(session.nvml, failures, self._processes)
                self._devices = enumerate_devices(session.nvml, session.driver_version, failures)
        except Exception as exc:  # any surprise in a third-party library must not break the server
            failures.fail(
                None, "init", exc, "GPU metrics disabled: NVML initialisation failed (%s)", exc, level=logging.WARNING
            )
        # The error counter exists even without a GPU so "no NVML" is visible, not just absent data.
        self._instruments.register(self._provider.get_meter(tx.METER_NAME_GPU), devices=self.available)
        if session.initialised and not self._devices:
            failures.record(None, "init", "NoDevice")
            failures.log_once((None, "init", "NoDevice"), logging.INFO, "no GPU found: NVML reports 0 devices")
            session.close()
        if session.initialised:
            ref = weakref.WeakMethod(self.shutdown)

            def _at_exit() -> None:
                method = ref()
                if method is not None:
                    method()

            self._atexit = _at_exit
            atexit.register(_at_exit)
        return self.available

    def describe_gpus(self) -> list[dict[str, Any]]:
        return [
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
            for dev in self._devices
        ]

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

    def collect(self) -> dict[str, GpuReading]:
        """Take one snapshot of every live device (by UUID); a failed reading is None in it."""
        with self._lock:
            if self._closed or self._reader is None or not self._session.initialised:
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

    def resource_usage_observations(self) -> list[Observation]:
        """``model.resource_usage{resource_type="gpu"}`` per device, from this collection's snapshot."""
        return self._instruments.resource_usage_observations()

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
