"""GPU (NVML) and host (psutil) meters. See the README for every metric and its DCGM equivalent.

The SDK pipeline calls :func:`install_meters` once it has built its ``MeterProvider`` and
``Meters.shutdown()`` when it shuts down. Nothing here keeps module-level state.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from modeltel import taxonomy as tx
from modeltel.meters.gpu import GpuMeters
from modeltel.meters.host import HostMeters

__all__ = ["GpuMeters", "HostMeters", "Meters", "install_meters"]

_log = logging.getLogger("modeltel.meters")


class Meters:
    """Handle on the installed meters."""

    def __init__(self, gpu: GpuMeters | None, host: HostMeters | None) -> None:
        self.gpu = gpu
        self.host = host
        self._closed = False

    def _observe_resource_usage(self, options: CallbackOptions) -> list[Observation]:
        if self._closed:
            return []
        out: list[Observation] = []
        for part in (self.host, self.gpu):
            if part is not None:
                out.extend(part.resource_usage_observations())
        return out

    @property
    def gpu_available(self) -> bool:
        """True when NVML initialised and reported at least one device."""
        return self.gpu is not None and self.gpu.available

    def describe_gpus(self) -> list[dict[str, Any]]:
        """index, mig_index, name, uuid, parent_uuid, driver_version, memory_limit_bytes, lost; [] without GPU."""
        if not self.gpu_available:
            return []
        try:
            return self.gpu.describe_gpus()
        except Exception as exc:
            _log.warning("cannot describe GPUs: %s", exc)
            return []

    def shutdown(self) -> None:
        """Stop every callback from reporting, uninstrument and shut NVML down. Idempotent."""
        self._closed = True
        for part in (self.gpu, self.host):
            if part is None:
                continue
            try:
                part.shutdown()
            except Exception as exc:  # pragma: no cover
                _log.warning("meter shutdown failed: %s", exc)


def install_meters(
    meter_provider: MeterProvider,
    *,
    gpu: bool = True,
    host: bool = True,
    model_name: str | None = None,
    nvml: ModuleType | Any | None = None,
) -> Meters:
    """Install GPU and/or host meters on ``meter_provider``. Never raises.

    ``nvml`` replaces the ``pynvml`` module (tests pass a fake); by default ``import pynvml`` is tried
    and an ImportError means "no NVML library".
    """
    gpu_meters = host_meters = None
    if gpu:
        try:
            gpu_meters = GpuMeters(meter_provider, nvml=nvml, model_name=model_name)
            gpu_meters.start()
        except Exception as exc:
            _log.warning("GPU metrics off: %s", exc)
    if host:
        try:
            host_meters = HostMeters(meter_provider, model_name=model_name)
            host_meters.start()
        except Exception as exc:
            _log.warning("host metrics off: %s", exc)
    meters = Meters(gpu_meters, host_meters)
    if gpu_meters is not None or host_meters is not None:
        try:
            # One instrument for cpu, memory and gpu points, registered after the GPU instruments so the
            # GPU snapshot of this collection is already taken when it runs.
            meter_provider.get_meter(tx.METER_NAME_RESOURCES).create_observable_gauge(
                tx.RESOURCE_USAGE.otel_name,
                callbacks=[meters._observe_resource_usage],
                unit=tx.RESOURCE_USAGE.unit,
                description=tx.RESOURCE_USAGE.description,
            )
        except Exception as exc:
            _log.warning("model.resource_usage off: %s", exc)
    return meters
