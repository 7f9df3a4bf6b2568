"""The taxonomy's GPU instruments, all observable, and their callbacks over one collection's readings.

The first-registered callback (utilization) takes the snapshot of every device; the others, registered
after it, only turn that snapshot into Observations. The SDK runs callbacks in registration order under
its collection lock, so a collection costs one pass over NVML whatever the number of instruments. A
field that was not read (``None``) gives no Observation. The collection-errors counter is registered
last, so its counts include the failures of the same collection, and is registered even without a GPU
so that "no NVML" or "no device" is visible rather than just absent data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from modeltel import taxonomy as tx
from modeltel.meters.gpu.failures import Failures
from modeltel.meters.gpu.readings import GpuReading

Callback = Callable[[CallbackOptions], Iterable[Observation]]

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


class GpuInstruments:
    """Observable callbacks: ``collect`` takes this collection's readings, ``latest`` returns them."""

    def __init__(
        self,
        collect: Callable[[], object],
        latest: Callable[[], Mapping[str, GpuReading]],
        failures: Failures,
        model_name: str | None,
    ) -> None:
        self._collect = collect
        self._latest = latest
        self._failures = failures
        self._model_name = model_name

    def register(self, meter: Meter, *, devices: bool) -> None:
        """The device instruments when there are ``devices``, then the collection-errors counter."""
        if devices:
            # Registration order matters: the first callback takes the snapshot.
            specs: list[tuple[tx.Instrument, str, Callback]] = [
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
        self._collect()
        return self._observations("utilization", {tx.ATTR_HW_GPU_TASK: "general"})

    def _simple(self, key: str) -> Callback:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return self._observations(key)

        callback.__name__ = f"observe_{key}"
        return callback

    def _observations(self, key: str, extra: dict[str, Any] | None = None) -> list[Observation]:
        out = []
        for reading in self._latest().values():
            value = getattr(reading, key)
            if value is None:
                continue
            attrs = reading.device.attributes
            out.append(Observation(value, attrs if extra is None else {**attrs, **extra}))
        return out

    def _observe_throttle(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for reading in self._latest().values():
            mask = reading.throttle
            if mask is None:
                continue
            attrs = reading.device.attributes
            for bit, reason in THROTTLE_REASONS:
                out.append(Observation(1 if mask & bit else 0, {**attrs, tx.ATTR_GPU_THROTTLE_REASON: reason}))
        return out

    def _observe_ecc(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for reading in self._latest().values():
            attrs = reading.device.attributes
            if reading.ecc_corrected is not None:
                out.append(Observation(reading.ecc_corrected, {**attrs, tx.ATTR_ERROR_TYPE: tx.ECC_CORRECTED}))
            if reading.ecc_uncorrected is not None:
                out.append(Observation(reading.ecc_uncorrected, {**attrs, tx.ATTR_ERROR_TYPE: tx.ECC_UNCORRECTED}))
        return out

    def resource_usage_observations(self) -> list[Observation]:
        """``model.resource_usage{resource_type="gpu"}`` per device, from this collection's readings."""
        out = []
        for reading in self._latest().values():
            pct = reading.utilization_percent
            if pct is None:
                continue
            attrs = {**reading.device.attributes, tx.ATTR_RESOURCE_TYPE: tx.RESOURCE_TYPE_GPU}
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


def _create(meter: Meter, kind: str, inst: tx.Instrument, callback: Callback) -> Any:
    factory = {
        "gauge": meter.create_observable_gauge,
        "updown": meter.create_observable_up_down_counter,
        "counter": meter.create_observable_counter,
    }[kind]
    return factory(inst.otel_name, callbacks=[callback], unit=inst.unit, description=inst.description)
