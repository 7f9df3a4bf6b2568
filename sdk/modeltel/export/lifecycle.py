"""The process events a pipeline must survive: ``fork()`` into workers, and SIGTERM.

Why here and not in the SDK: the SDK restarts its reader and span-processor threads in a forked child,
but it keeps the parent's ``service.instance.id`` (so workers' series would collide) and the fast
series the child inherited (which the parent exports itself). And a SIGTERM with the default action
ends the process without ``atexit``, losing the last export interval.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.resources import Resource

SIGTERM_FLUSH_SECONDS = 10.0


def new_instance() -> Resource:
    """The resource attributes that tell one forked worker from another."""
    return Resource({"service.instance.id": str(uuid.uuid4()), "process.pid": os.getpid()})


def on_fork_in_child(callback: Callable[[], None]) -> None:
    """Call the bound method ``callback`` in every forked child, for as long as its object lives."""
    if hasattr(os, "register_at_fork"):
        weak = weakref.WeakMethod(callback)  # type: ignore[arg-type]
        os.register_at_fork(after_in_child=lambda: (m := weak()) and m())


def flush_on_sigterm(shutdown: Callable[[], None]) -> None:
    """Flush on SIGTERM where nothing else handles it, then die by the signal as before.

    uvicorn, for one, restores the handler it found and re-raises SIGTERM after its graceful shutdown.
    The flush is bounded and runs in a thread, so a lock held by the interrupted main thread cannot
    wedge it. It is only installed over the default action, never over an application's own handler.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    weak = weakref.WeakMethod(shutdown)  # type: ignore[arg-type]

    def on_sigterm(signum: int, frame: Any) -> None:
        method = weak()
        if method is not None:
            flusher = threading.Thread(target=method, name="modeltel-sigterm-flush", daemon=True)
            flusher.start()
            flusher.join(SIGTERM_FLUSH_SECONDS)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, on_sigterm)
