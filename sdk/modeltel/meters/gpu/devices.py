"""The devices NVML reports: physical GPUs and, on a GPU in MIG mode, each MIG instance as a device of its own.

Enumeration happens once, at start. A device that cannot be listed is skipped (counted and logged once)
and the others are kept. Each device carries its OTel attributes, computed once. Its handle is acquired
again after a fork; the device is dropped (``lost``) if a different GPU now answers at its index.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from modeltel import taxonomy as tx
from modeltel.meters.gpu.failures import Failures
from modeltel.meters.gpu.nvml import text


@dataclass
class GpuDevice:
    """One NVML device: a physical GPU or a MIG instance. Static identity plus a lazily acquired handle."""

    index: int
    uuid: str
    name: str
    mig_index: int | None = None
    parent_uuid: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    handle: Any = None
    lost: bool = False
    disabled: set[str] = field(default_factory=set)
    memory_total: int | None = None

    @property
    def is_mig(self) -> bool:
        return self.mig_index is not None


def enumerate_devices(nvml: Any, driver_version: str, failures: Failures) -> list[GpuDevice]:
    """Every GPU in index order, each followed by its MIG instances."""
    try:
        count = nvml.nvmlDeviceGetCount()
    except Exception as exc:
        failures.fail(None, "device_count", exc, "cannot count GPUs: %s", exc, level=logging.WARNING)
        return []
    devices: list[GpuDevice] = []
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            dev = GpuDevice(index=index, uuid=text(nvml.nvmlDeviceGetUUID(handle)), handle=handle, name="")
        except Exception as exc:
            failures.fail(f"index:{index}", "handle", exc, "GPU %d skipped: %s", index, exc, level=logging.WARNING)
            continue
        _name_and_describe(nvml, dev, driver_version, failures)
        devices.append(dev)
        devices.extend(_enumerate_mig(nvml, dev, driver_version, failures))
    return devices


def _enumerate_mig(nvml: Any, parent: GpuDevice, driver_version: str, failures: Failures) -> list[GpuDevice]:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(parent.handle)
    except nvml.NVMLError:
        return []  # NotSupported on GPUs without MIG: not a failure
    if current != nvml.NVML_DEVICE_MIG_ENABLE:
        return []
    out: list[GpuDevice] = []
    try:
        slots = nvml.nvmlDeviceGetMaxMigDeviceCount(parent.handle)
    except Exception as exc:
        failures.fail(parent.uuid, "mig", exc, "MIG instances of GPU %d not listed: %s", parent.index, exc)
        return out
    for mig_index in range(slots):
        try:
            handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent.handle, mig_index)
        except nvml.NVMLError:
            continue  # NotFound: empty slot
        try:
            uuid = text(nvml.nvmlDeviceGetUUID(handle))
        except Exception as exc:
            failures.fail(parent.uuid, "mig", exc, "MIG slot %d of GPU %d skipped: %s", mig_index, parent.index, exc)
            continue
        dev = GpuDevice(
            index=parent.index, uuid=uuid, name="", mig_index=mig_index, parent_uuid=parent.uuid, handle=handle
        )
        _name_and_describe(nvml, dev, driver_version, failures)
        out.append(dev)
    return out


def _name_and_describe(nvml: Any, dev: GpuDevice, driver_version: str, failures: Failures) -> None:
    try:
        dev.name = text(nvml.nvmlDeviceGetName(dev.handle))
    except Exception as exc:
        failures.fail(dev.uuid, "name", exc, "GPU %s: cannot read its name: %s", dev.uuid, exc)
        dev.name = tx.UNKNOWN_VALUE
    attrs: dict[str, Any] = {
        tx.ATTR_HW_ID: dev.uuid,
        tx.ATTR_HW_NAME: dev.name,
        tx.ATTR_HW_TYPE: tx.HW_TYPE_GPU,
        tx.ATTR_HW_DRIVER_VERSION: driver_version or tx.UNKNOWN_VALUE,
        tx.ATTR_GPU_INDEX: dev.index,
    }
    if dev.is_mig:
        attrs[tx.ATTR_HW_PARENT] = dev.parent_uuid
        attrs[tx.ATTR_GPU_MIG_INDEX] = dev.mig_index
    dev.attributes = attrs


def acquire_handle(nvml: Any, dev: GpuDevice, failures: Failures) -> Any:
    """The device's handle, acquired again (by index, checked by UUID) after a fork dropped it; None if
    it cannot be had now. A different GPU at the same index makes the device ``lost`` for good."""
    if dev.handle is not None:
        return dev.handle
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(dev.index)
        if dev.is_mig:
            handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, dev.mig_index)
        uuid = text(nvml.nvmlDeviceGetUUID(handle))
    except Exception as exc:
        failures.field_failed(dev, "handle", exc)
        return None
    if uuid != dev.uuid:
        dev.lost = True
        failures.record(dev.uuid, "handle", "DeviceChanged")
        failures.log_once(
            (dev.uuid, "handle", "DeviceChanged"),
            logging.WARNING,
            "GPU %s no longer at index %s (found %s); no longer read",
            dev.uuid,
            dev.index,
            uuid,
        )
        return None
    dev.handle = handle
    return handle
