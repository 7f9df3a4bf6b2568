"""Failure accounting: every failed reading counted by (hw.id, field, error kind), each kind logged once.

A failed reading is never replaced by a stand-in value; the count is what
``modeltel.gpu.collection.errors{hw.id, field, error.type}`` reports, so a missing series can be told
from a quiet device. The log says it once per (device, field, error kind), not once per collection.
What a field failure does to the device (stop reading the field, or the whole device) is decided here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from modeltel.meters.gpu.nvml import PERMANENT, error_kind

if TYPE_CHECKING:
    from modeltel.meters.gpu.devices import GpuDevice

_log = logging.getLogger("modeltel.meters.gpu")

# (hw.id or None for the whole library, field, error kind)
ErrorKey = tuple[str | None, str, str]


class Failures:
    """Counts of failures by :data:`ErrorKey` and the keys already logged."""

    def __init__(self) -> None:
        self.counts: dict[ErrorKey, int] = {}
        self._logged: set[ErrorKey] = set()

    def record(self, hw_id: str | None, fld: str, kind: str) -> None:
        key = (hw_id, fld, kind)
        self.counts[key] = self.counts.get(key, 0) + 1

    def log_once(self, key: ErrorKey, level: int, msg: str, *args: Any) -> None:
        if key in self._logged:
            return
        self._logged.add(key)
        _log.log(level, msg, *args)

    def fail(self, hw_id: str | None, fld: str, exc: BaseException, msg: str, *args: Any, level=logging.WARNING):
        """Count ``exc`` under its error kind and log ``msg`` the first time that key fails."""
        kind = error_kind(exc)
        self.record(hw_id, fld, kind)
        self.log_once((hw_id, fld, kind), level, msg, *args)

    def field_failed(self, dev: GpuDevice, fld: str, exc: BaseException) -> None:
        """A reading of ``fld`` on ``dev`` raised ``exc``: count it, log it once, and stop reading what will
        not come back (the field for a permanent error, the whole device for ``GpuIsLost``)."""
        kind = error_kind(exc)
        if kind == "GpuIsLost":
            dev.lost = True
            dev.handle = None
            self.record(dev.uuid, fld, kind)
            self.log_once(
                (dev.uuid, "device", kind),
                logging.WARNING,
                "GPU %s (index %s) is lost; it is no longer read, other GPUs are",
                dev.uuid,
                dev.index,
            )
            return
        if kind in PERMANENT:
            dev.disabled.add(fld)
        if isinstance(exc, AttributeError):
            kind = "FunctionNotFound"  # an older pynvml without this call
            dev.disabled.add(fld)
        level = logging.INFO if kind in ("NotSupported", "FunctionNotFound") else logging.WARNING
        self.record(dev.uuid, fld, kind)
        self.log_once(
            (dev.uuid, fld, kind),
            level,
            "GPU %s: reading %r failed (%s); skipped%s",
            dev.uuid,
            fld,
            kind,
            " from now on" if fld in dev.disabled else "",
        )
