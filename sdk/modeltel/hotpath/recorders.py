"""Where a prediction's measurements go: modeltel's fast aggregation, or plain OpenTelemetry instruments.

Both recorders hand out *bound* series with the same three methods (``record(value, span)``: ``span`` is
the one an exemplar names; ``add(n)``, ``set(value)``), so :mod:`.stage` never branches on which one it has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from opentelemetry import metrics
from opentelemetry.trace import Span

from .. import taxonomy as tx
from .fastmetrics import FastMetrics


class Recorder(Protocol):
    def histogram(self, definition: tx.Instrument, attributes: Mapping[str, str]) -> Any: ...
    def counter(self, definition: tx.Instrument, attributes: Mapping[str, str]) -> Any: ...
    def gauge(self, definition: tx.Instrument, attributes: Mapping[str, str]) -> Any: ...


class FastRecorder:
    """Series from :class:`.fastmetrics.FastMetrics`; exported through modeltel's readers."""

    def __init__(self, fast: FastMetrics) -> None:
        self.fast = fast

    def histogram(self, definition: tx.Instrument, attributes: Mapping[str, str]) -> Any:
        return self.fast[definition.otel_name].bind(attributes)

    counter = gauge = histogram


class _SdkHistogram:
    __slots__ = ("_record", "attributes")

    def __init__(self, instrument: Any, attributes: Mapping[str, str]) -> None:
        self._record = instrument.record
        self.attributes = dict(attributes)

    def record(self, value: float, span: Span | None = None) -> None:
        # The active span is current while a stage records, so the SDK's exemplar filter sees it.
        self._record(value, self.attributes)


class _SdkGauge:
    __slots__ = ("_set", "attributes")

    def __init__(self, instrument: Any, attributes: Mapping[str, str]) -> None:
        self._set = instrument.set
        self.attributes = dict(attributes)

    def set(self, value: float) -> None:
        self._set(value, self.attributes)


class _SdkCounter:
    __slots__ = ("_add", "attributes")

    def __init__(self, instrument: Any, attributes: Mapping[str, str]) -> None:
        self._add = instrument.add
        self.attributes = dict(attributes)

    def add(self, amount: int = 1) -> None:
        self._add(amount, self.attributes)


class SdkRecorder:
    """Series on OpenTelemetry SDK instruments: honours Views, delta temporality, exponential histograms.

    Bucket boundaries are passed as the API's advisory boundaries, so they apply even on a MeterProvider
    that modeltel did not configure.
    """

    def __init__(self, meter: metrics.Meter, buckets: Mapping[str, Sequence[float]] | None = None) -> None:
        buckets = buckets or {}
        self._instruments: dict[str, Any] = {}
        for d in (*tx.INSTRUMENTS, *tx.GENAI_INSTRUMENTS):  # GenAI: recorded by generations only
            if d.kind is tx.InstrumentKind.HISTOGRAM:
                inst = meter.create_histogram(
                    d.otel_name,
                    unit=d.unit,
                    description=d.description,
                    explicit_bucket_boundaries_advisory=list(buckets.get(d.otel_name) or d.buckets),
                )
            elif d.kind is tx.InstrumentKind.COUNTER:
                inst = meter.create_counter(d.otel_name, unit=d.unit, description=d.description)
            elif d is tx.RESOURCE_USAGE:
                continue  # observed by modeltel.meters, never set per request
            else:
                inst = meter.create_gauge(d.otel_name, unit=d.unit, description=d.description)
            self._instruments[d.otel_name] = inst

    def histogram(self, definition: tx.Instrument, attributes: Mapping[str, str]) -> Any:
        return _SdkHistogram(self._instruments[definition.otel_name], attributes)

    def counter(self, definition: tx.Instrument, attributes: Mapping[str, str]) -> Any:
        return _SdkCounter(self._instruments[definition.otel_name], attributes)

    def gauge(self, definition: tx.Instrument, attributes: Mapping[str, str]) -> Any:
        return _SdkGauge(self._instruments[definition.otel_name], attributes)
