"""A :class:`Telemetry` over OpenTelemetry's global providers, for processes that never call ``init()``.

It is rebuilt while the globals are still OpenTelemetry's proxies (nothing configured yet), and kept
once real providers are in place, which OpenTelemetry allows to happen only once.
"""

from __future__ import annotations

import functools

from opentelemetry import metrics, trace

from . import __version__, config
from . import taxonomy as tx
from .recorders import SdkRecorder
from .telemetry import Telemetry


@functools.lru_cache(maxsize=4)
def _for(tracer_provider: trace.TracerProvider, meter_provider: metrics.MeterProvider) -> Telemetry:
    settings = config.load()
    recorder = SdkRecorder(meter_provider.get_meter(tx.METER_NAME, __version__), settings.bucket_overrides)
    return Telemetry(settings, recorder, tracer_provider)


def global_telemetry() -> Telemetry:
    return _for(trace.get_tracer_provider(), metrics.get_meter_provider())
