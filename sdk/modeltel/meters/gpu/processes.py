"""Process-memory attribution: the GPU memory used by this process and its descendants (worker processes).

NVML lists the compute processes on a device with their memory. Ours are this pid and every pid whose
parent chain reaches it. When the figure cannot be known it is not reported at all, never guessed as 0:
NVML may give no memory figure for a process (WDDM, no permission), or list pids this process cannot
see (another pid namespace, e.g. a container without hostPID), among which ours may hide under another
number. A device listing no process of ours reports a true 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from modeltel.meters.gpu.devices import GpuDevice
from modeltel.meters.gpu.failures import Failures

ANCESTRY_TTL_S = 30.0


class ProcessAttribution:
    """Sums the memory of our processes among those NVML lists; remembers who is ours for a while."""

    def __init__(self, getpid: Callable[[], int], failures: Failures) -> None:
        self._getpid = getpid
        self._failures = failures
        # pid -> (is this process or a descendant, when checked); psutil costs ~100 µs a pid, so results
        # are kept for ANCESTRY_TTL_S (a pid reused within that window is vanishingly unlikely).
        self._ancestry: dict[int, tuple[bool, float]] = {}
        self._ancestry_pid = 0

    def own_memory(self, dev: GpuDevice, procs: list[Any]) -> int | None:
        """Bytes used on ``dev`` by this process and its descendants; None when it cannot be known."""
        total = 0
        found = False
        invisible = 0
        for proc in procs:
            ours = self.is_ours(proc.pid)
            if ours is None:
                invisible += 1
                continue
            if not ours:
                continue
            found = True
            if proc.usedGpuMemory is None:
                # NVML could not say (e.g. WDDM, or no permission): the sum would be a lie.
                self._skip(dev, "NotAvailable", f"NVML gives no memory figure for process {proc.pid}")
                return None
            total += int(proc.usedGpuMemory)
        if invisible and not found:
            # NVML lists pids this process cannot see: another pid namespace (a container without hostPID)
            # or a process that just exited. Ours may be among them under another number: 0 would be a guess.
            self._skip(dev, "PidNotVisible", "NVML lists process ids not visible here")
            return None
        return total

    def _skip(self, dev: GpuDevice, kind: str, why: str) -> None:
        self._failures.record(dev.uuid, "process_memory", kind)
        self._failures.log_once(
            (dev.uuid, "process_memory", kind), logging.INFO, "GPU %s: %s; process memory not reported", dev.uuid, why
        )

    def is_ours(self, pid: int) -> bool | None:
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
