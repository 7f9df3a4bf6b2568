"""NVML access: loading ``pynvml``, one initialised session per process, and NVML error kinds.

NVML handles are only valid in the process that called ``nvmlInit``. A session remembers that pid; after
``os.fork()`` the child's first collection re-initialises NVML and drops the parent's handles (a pid
check, no global fork hook). Shutdown only calls ``nvmlShutdown`` in the process that owns the session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modeltel.meters.gpu.devices import GpuDevice
    from modeltel.meters.gpu.failures import Failures

_log = logging.getLogger("modeltel.meters.gpu")

# Errors that will not go away while the driver is loaded: stop reading that field on that device.
PERMANENT = ("NotSupported", "NoPermission", "FunctionNotFound")


def error_kind(exc: BaseException) -> str:
    """``NVMLError_NotSupported`` -> ``NotSupported``; other exceptions keep their class name."""
    name = type(exc).__name__
    return name[len("NVMLError_") :] if name.startswith("NVMLError_") else name


def text(value: Any) -> str:
    """NVML strings: ``bytes`` from older pynvml releases, ``str`` from newer ones."""
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlSession:
    """The ``pynvml`` module in use, whether ``nvmlInit`` succeeded, in which process, and the driver version."""

    def __init__(self, nvml: Any, getpid: Callable[[], int], failures: Failures) -> None:
        self._nvml_arg = nvml  # a replacement for pynvml (tests pass a fake); None: import pynvml
        self._getpid = getpid
        self._failures = failures
        self.nvml: Any = None
        self.pid = 0  # pid in which NVML was initialised; 0 = not initialised
        self.initialised = False
        self.driver_version = ""

    def open(self) -> bool:
        """Import pynvml (unless given one) and initialise NVML; True when it is up. Expected failures are
        counted and logged once; anything else propagates to the caller."""
        nvml = self._nvml_arg
        if nvml is None:
            try:
                import pynvml as nvml  # nvidia-ml-py
            except ImportError as exc:
                self._failures.record(None, "init", "LibraryNotFound")
                self._failures.log_once(
                    (None, "init", "LibraryNotFound"),
                    logging.INFO,
                    "no GPU metrics: the nvidia-ml-py package (pynvml) is not installed (%s)",
                    exc,
                )
                return False
        self.nvml = nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            kind = error_kind(exc)
            reason = {
                "LibraryNotFound": "no NVML library (libnvidia-ml.so) found",
                "DriverNotLoaded": "the NVIDIA driver is not loaded",
            }.get(kind, f"nvmlInit failed: {exc}")
            self._failures.fail(None, "init", exc, "no GPU metrics: %s", reason, level=logging.INFO)
            return False
        self.initialised = True
        self.pid = self._getpid()
        try:
            self.driver_version = text(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError as exc:
            self._failures.fail(None, "driver_version", exc, "cannot read the NVIDIA driver version: %s", exc)
        return True

    def ensure_pid(self, devices: Iterable[GpuDevice]) -> bool:
        """Re-initialise NVML in a forked child (handles from the parent are not valid there)."""
        pid = self._getpid()
        if pid == self.pid:
            return True
        try:
            self.nvml.nvmlInit()
        except Exception as exc:
            self._failures.fail(
                None, "init", exc, "GPU metrics stopped in forked process %d: nvmlInit failed: %s", pid, exc
            )
            return False
        self.pid = pid
        for dev in devices:
            dev.handle = None
        return True

    def close(self) -> None:
        """``nvmlShutdown`` if this process initialised NVML; idempotent."""
        if not self.initialised:
            return
        self.initialised = False
        if self.pid != self._getpid():
            return  # the NVML session belongs to the parent; this child never re-initialised
        try:
            self.nvml.nvmlShutdown()
        except Exception as exc:
            _log.debug("nvmlShutdown failed: %s", exc)
