"""OTLP ``ExportMetricsServiceRequest`` bytes from the SDK's ``MetricsData``, without message objects.

A collection is small next to the span stream (one request per export interval), so this encoder aims at
being exact rather than clever: it mirrors the upstream ``encode_metrics`` field by field (sums, gauges,
explicit and exponential histograms, exemplars with and without a trace), reusing the span encoder's
wire primitives. Resources and scopes are cached by identity, as they live as long as the provider.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import (
    ExponentialHistogram,
    Gauge,
    Histogram,
    MetricsData,
    Sum,
)

from . import wire


class MetricEncoder:
    """Encodes collections; keeps the resource and scope bytes between them. One per exporter."""

    def __init__(self) -> None:
        self._parts: dict[int, tuple[Any, bytes]] = {}

    def encode(self, data: MetricsData) -> bytes:
        out = []
        for rm in data.resource_metrics:
            body = [self._cached(rm.resource, lambda r: wire.field_bytes(1, wire.resource(r)))]
            for sm in rm.scope_metrics:
                scope = self._cached(sm.scope, lambda s: wire.field_bytes(1, wire.scope(s)))
                metrics = [wire.field_bytes(2, _metric(m)) for m in sm.metrics]
                body.append(wire.field_bytes(2, b"".join((scope, *metrics, wire.field_str(3, sm.scope.schema_url)))))
            body.append(wire.field_str(3, rm.resource.schema_url))
            out.append(wire.field_bytes(1, b"".join(body)))
        return b"".join(out)

    def _cached(self, obj: Any, encode: Any) -> bytes:
        entry = self._parts.get(id(obj))
        if entry is None or entry[0] is not obj:
            if len(self._parts) > 256:
                self._parts.clear()
            entry = self._parts[id(obj)] = (obj, encode(obj))
        return entry[1]


def _metric(metric: Any) -> bytes:
    head = wire.field_str(1, metric.name) + wire.field_str(2, metric.description) + wire.field_str(3, metric.unit)
    data = metric.data
    if not getattr(data, "data_points", None):
        return head  # upstream creates the sum/gauge/histogram message only while adding a point
    if isinstance(data, Gauge):
        return head + wire.field_bytes(
            5, b"".join(wire.field_bytes(1, _number(p, start=False)) for p in data.data_points)
        )
    if isinstance(data, Sum):
        points = b"".join(wire.field_bytes(1, _number(p, start=True)) for p in data.data_points)
        tail = wire.field_varint(2, data.aggregation_temporality) + wire.field_varint(3, data.is_monotonic)
        return head + wire.field_bytes(7, points + tail)
    if isinstance(data, Histogram):
        points = b"".join(wire.field_bytes(1, _histogram(p)) for p in data.data_points)
        return head + wire.field_bytes(9, points + wire.field_varint(2, data.aggregation_temporality))
    if isinstance(data, ExponentialHistogram):
        points = b"".join(wire.field_bytes(1, _exponential(p)) for p in data.data_points)
        return head + wire.field_bytes(10, points + wire.field_varint(2, data.aggregation_temporality))
    return head  # an unknown data type: upstream logs it and sends the bare metric too


def _number(point: Any, *, start: bool) -> bytes:
    """A ``NumberDataPoint``: a gauge's carries no start time (upstream leaves it out)."""
    value = point.value
    is_int = isinstance(value, int)
    return b"".join(
        (
            wire.field_fixed64(2, point.start_time_unix_nano) if start else b"",
            wire.field_fixed64(3, point.time_unix_nano),
            b"" if is_int else wire.field_double(4, value, present=True),  # a oneof: written even when zero
            _exemplars(5, point.exemplars),
            wire.field_sfixed64(6, value) if is_int else b"",
            wire.attributes(7, point.attributes),
        )
    )


def _histogram(point: Any) -> bytes:
    return b"".join(
        (
            wire.field_fixed64(2, point.start_time_unix_nano),
            wire.field_fixed64(3, point.time_unix_nano),
            wire.field_fixed64(4, point.count),
            wire.field_double(5, point.sum, present=True),
            wire.packed_fixed64(6, point.bucket_counts),
            wire.packed_double(7, point.explicit_bounds),
            _exemplars(8, point.exemplars),
            wire.attributes(9, point.attributes),
            wire.field_double(11, point.min, present=True),
            wire.field_double(12, point.max, present=True),
        )
    )


def _exponential(point: Any) -> bytes:
    return b"".join(
        (
            wire.attributes(1, point.attributes),
            wire.field_fixed64(2, point.start_time_unix_nano),
            wire.field_fixed64(3, point.time_unix_nano),
            wire.field_fixed64(4, point.count),
            wire.field_double(5, point.sum, present=True),
            wire.field_sint32(6, point.scale),
            wire.field_fixed64(7, point.zero_count),
            _buckets(8, point.positive),
            _buckets(9, point.negative),
            wire.field_varint(10, point.flags),
            _exemplars(11, point.exemplars),
            wire.field_double(12, point.min, present=True),
            wire.field_double(13, point.max, present=True),
        )
    )


def _buckets(field: int, buckets: Any) -> bytes:
    """Upstream sends no ``Buckets`` message at all when there are no bucket counts."""
    if not buckets.bucket_counts:
        return b""
    return wire.field_bytes(field, wire.field_sint32(1, buckets.offset) + wire.packed_varint(2, buckets.bucket_counts))


def _exemplars(field: int, exemplars: Any) -> bytes:
    out = []
    for ex in exemplars:
        value = ex.value
        if isinstance(value, float):
            as_double, as_int = wire.field_double(3, value, present=True), b""
        elif isinstance(value, int):
            as_double, as_int = b"", wire.field_sfixed64(6, value)
        else:
            raise ValueError("Exemplar value must be an int or float")
        traced = ex.span_id is not None and ex.trace_id is not None
        body = b"".join(
            (
                wire.field_fixed64(2, ex.time_unix_nano),
                as_double,
                wire.field_bytes(4, ex.span_id.to_bytes(8, "big")) if traced else b"",
                wire.field_bytes(5, ex.trace_id.to_bytes(16, "big")) if traced else b"",
                as_int,
                wire.attributes(7, ex.filtered_attributes),
            )
        )
        out.append(wire.field_bytes(field, body))
    return b"".join(out)
