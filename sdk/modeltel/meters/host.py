"""Host meters: OpenTelemetry's system-metrics instrumentation plus the spec's cpu/memory percentages.

``SystemMetricsInstrumentor`` is reused as is, with two adjustments made from the outside:

* it gets its own instance (``BaseInstrumentor`` is a process-wide singleton, and a second
  ``instrument()`` on it silently does nothing), so every ``install_meters`` call is honoured;
* its meter is wrapped so that each callback first checks that this handle is still open (its own
  ``_uninstrument`` is a no-op, so without this the callbacks would outlive ``shutdown()``) and that the
  instrumentor's ``psutil.Process`` is this process (it captures the pid at construction, so after
  ``os.fork()`` the process.* metrics would describe the parent).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from modeltel import taxonomy as tx

_log = logging.getLogger("modeltel.meters.host")

# A sensible subset of the instrumentor's metrics: CPU, memory, network and this process.
SYSTEM_METRICS_CONFIG: dict[str, list[str] | None] = {
    "system.cpu.utilization": ["idle", "user", "system", "irq"],
    "system.memory.usage": ["used", "free", "cached"],
    "system.memory.utilization": ["used", "free", "cached"],
    "system.network.io": ["transmit", "receive"],
    "system.network.errors": ["transmit", "receive"],
    "process.cpu.time": ["user", "system"],
    "process.cpu.utilization": ["user", "system"],
    "process.memory.usage": None,
    "process.memory.virtual": None,
    "process.thread.count": None,
    "process.open_file_descriptor.count": None,
}


class HostMeters:
    def __init__(self, meter_provider: MeterProvider, *, model_name: str | None = None) -> None:
        self._provider = meter_provider
        self._model_name = model_name
        self._closed = False
        self._instrumentor: Any = None
        self._system_metrics = False
        self._last_cpu: tuple[float, float] | None = None  # (busy, total) seconds at the previous reading
        self._last_cpu_percent: float | None = None

    @property
    def system_metrics_installed(self) -> bool:
        return self._system_metrics

    def start(self) -> None:
        """Prime the CPU reading and install the system-metrics instrumentation. Never raises."""
        self._cpu_percent()  # prime: the first reading has no interval to measure over
        try:
            from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
        except ImportError as exc:
            _log.warning("host system metrics off: opentelemetry-instrumentation-system-metrics missing (%s)", exc)
            return
        try:
            inst = object.__new__(SystemMetricsInstrumentor)  # a private instance, not the singleton
            inst.__init__(config=dict(SYSTEM_METRICS_CONFIG))
            inst.instrument(meter_provider=_GatedMeterProvider(self._provider, self, inst))
            self._instrumentor = inst
            self._system_metrics = inst.is_instrumented_by_opentelemetry
        except Exception as exc:
            _log.warning("host system metrics off: the system-metrics instrumentation failed (%s)", exc)

    def resource_usage_observations(self) -> list[Observation]:
        """``model.resource_usage`` for cpu (host-wide, since the previous call) and memory (host-wide)."""
        if self._closed:
            return []
        import psutil

        base = {} if self._model_name is None else {tx.ATTR_MODEL_NAME: self._model_name}
        out = []
        try:
            pct = self._cpu_percent()
            if pct is not None:
                out.append(Observation(pct, {**base, tx.ATTR_RESOURCE_TYPE: tx.RESOURCE_TYPE_CPU}))
        except Exception as exc:  # pragma: no cover - psutil does not fail on supported platforms
            _log.debug("cpu percent unavailable: %s", exc)
        try:
            out.append(
                Observation(
                    float(psutil.virtual_memory().percent), {**base, tx.ATTR_RESOURCE_TYPE: tx.RESOURCE_TYPE_MEMORY}
                )
            )
        except Exception as exc:  # pragma: no cover
            _log.debug("memory percent unavailable: %s", exc)
        return out

    def _cpu_percent(self) -> float | None:
        """Host-wide CPU busy percent since the previous call, from our own cpu_times() deltas.

        Same arithmetic as ``psutil.cpu_percent(interval=None)`` but with the previous sample kept here,
        so other callers of psutil.cpu_percent in the process do not shorten our interval.
        """
        import psutil

        t = psutil.cpu_times()
        total = sum(t)
        # guest time is already counted in user/nice on Linux
        total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
        idle = t.idle + getattr(t, "iowait", 0.0)
        busy = total - idle
        last = self._last_cpu
        if last is not None and total - last[1] <= 0:
            # Collected again within one clock tick: repeat the latest real reading (None before the first);
            # psutil.cpu_percent would say 0.0 here, which is not a measurement.
            return self._last_cpu_percent
        self._last_cpu = (busy, total)
        if last is None:
            return None
        pct = min(100.0, max(0.0, (busy - last[0]) / (total - last[1]) * 100.0))
        self._last_cpu_percent = pct
        return pct

    def _before_callback(self, inst: Any) -> bool:
        if self._closed:
            return False
        proc = getattr(inst, "_proc", None)
        if proc is not None and proc.pid != os.getpid():
            import psutil

            inst._proc = psutil.Process(os.getpid())
        return True

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._instrumentor is not None:
            try:
                self._instrumentor.uninstrument()
            except Exception as exc:  # pragma: no cover
                _log.debug("system metrics uninstrument failed: %s", exc)


class _GatedMeterProvider:
    """Hands the instrumentor meters whose observable callbacks honour ``HostMeters`` state."""

    def __init__(self, provider: MeterProvider, owner: HostMeters, inst: Any) -> None:
        self._provider, self._owner, self._inst = provider, owner, inst

    def get_meter(self, name: str, version: str | None = None, schema_url: str | None = None, *args, **kwargs):
        meter = self._provider.get_meter(name, version, schema_url, *args, **kwargs)
        return _GatedMeter(meter, self._owner, self._inst)


class _GatedMeter:
    def __init__(self, meter: Any, owner: HostMeters, inst: Any) -> None:
        self._meter, self._owner, self._inst = meter, owner, inst

    def __getattr__(self, name: str) -> Any:
        return getattr(self._meter, name)

    def _gate(self, callbacks: Iterable[Callable] | None) -> list[Callable] | None:
        if callbacks is None:
            return None
        owner, inst = self._owner, self._inst

        def wrap(cb: Callable) -> Callable:
            def gated(options: CallbackOptions) -> Iterable[Observation]:
                if not owner._before_callback(inst):
                    return []
                return cb(options)

            return gated

        return [wrap(cb) for cb in callbacks]

    def create_observable_counter(self, name, callbacks=None, unit="", description=""):
        return self._meter.create_observable_counter(name, self._gate(callbacks), unit, description)

    def create_observable_gauge(self, name, callbacks=None, unit="", description=""):
        return self._meter.create_observable_gauge(name, self._gate(callbacks), unit, description)

    def create_observable_up_down_counter(self, name, callbacks=None, unit="", description=""):
        return self._meter.create_observable_up_down_counter(name, self._gate(callbacks), unit, description)
