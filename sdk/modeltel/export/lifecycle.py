"""The process events a pipeline must survive: ``fork()`` into workers, SIGTERM, and exit.

Why here and not in the SDK: the SDK restarts its reader and span-processor threads in a forked child,
but it keeps the parent's ``service.instance.id`` (so workers' series would collide) and the fast
series the child inherited (which the parent exports itself). And a SIGTERM with the default action
ends the process without ``atexit``, losing the last export interval.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.resources import Resource


def within(seconds: float, *calls: Callable[[], None]) -> bool:
    """Run each of ``calls`` in a daemon thread of its own, all at once, and wait at most ``seconds`` in
    all; whether every one finished.

    Threads, so that neither a slow exporter nor a lock held by an interrupted main thread can hold the
    caller past ``seconds``, and so that one stuck exporter does not starve the others of the budget;
    daemon, so that an exiting interpreter does not wait for them either.
    """
    workers = [threading.Thread(target=call, name="modeltel-flush", daemon=True) for call in calls]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + seconds
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    return not any(worker.is_alive() for worker in workers)


def new_instance() -> Resource:
    """The resource attributes that tell one forked worker from another."""
    return Resource({"service.instance.id": str(uuid.uuid4()), "process.pid": os.getpid()})


def on_fork_in_child(callback: Callable[[], None]) -> None:
    """Call the bound method ``callback`` in every forked child, for as long as its object lives."""
    if hasattr(os, "register_at_fork"):
        weak = weakref.WeakMethod(callback)  # type: ignore[arg-type]
        os.register_at_fork(after_in_child=lambda: (m := weak()) and m())


def on_exit(shutdown: Callable[[], None]) -> None:
    """Call the bound method ``shutdown`` at interpreter exit, if its object still lives (a weak reference:
    test suites build many pipelines, and exit should not keep every one alive)."""
    weak = weakref.WeakMethod(shutdown)  # type: ignore[arg-type]
    atexit.register(lambda: (method := weak()) and method())


def flush_on_sigterm(shutdown: Callable[..., None]) -> None:
    """Flush on SIGTERM where nothing else handles it, then die by the signal as before.

    uvicorn, for one, restores the handler it found and re-raises SIGTERM after its graceful shutdown.
    ``shutdown(since=...)`` bounds the flush itself (see :func:`within`), counted from when the handler
    was called. The handler is only installed over the default action, never over an application's own.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    weak = weakref.WeakMethod(shutdown)  # type: ignore[arg-type]

    def on_sigterm(signum: int, frame: Any) -> None:
        since = time.monotonic()
        method = weak()
        if method is not None:
            method(since=since)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, on_sigterm)
