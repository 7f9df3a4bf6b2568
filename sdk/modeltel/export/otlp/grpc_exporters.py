"""OTLP/gRPC: the upstream exporters with modeltel's encoder in place of theirs, and nothing else changed.

Each class subclasses the upstream exporter and replaces only the step that turns SDK data into a
request: the encoded bytes go through upstream's own channel (TLS credentials, compression, channel
options), with its metadata (headers), deadline (timeout) and retry loop (backoff on UNAVAILABLE,
RESOURCE_EXHAUSTED with retry info, ..., reconnecting on UNAVAILABLE), through a unary call whose
request serializer is the identity.

Upstream has no public seam for that: it builds channel and stub together in the private
``_initialize_channel_and_stub`` (also its reconnect) and encodes in ``_translate_data``. The one private
attribute read is the channel it just built, ``_channel``, in :func:`_pre_encode` only; an upstream
release without one of the three keeps upstream's stub and encoding (still exporting) and warns once
(:mod:`.upstream`). ``tests/test_otlp_exporters.py`` fails when the installed release lacks one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as _GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as _GrpcSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.trace import ReadableSpan

from .metrics import MetricEncoder
from .spans import SpanEncoder
from .upstream import missing

_TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


class _PreEncodedStub:
    """Stands in for the generated gRPC stub: ``Export`` sends bytes that are already a request."""

    def __init__(self, channel: Any, method: str, response: Any) -> None:
        self.Export = channel.unary_unary(method, request_serializer=bytes, response_deserializer=response.FromString)


def _pre_encode(exporter: Any, upstream: type, method: str, response: Any) -> None:
    """Replace the stub upstream just built on its channel by a :class:`_PreEncodedStub`; leave upstream's
    (warned once) when this release has no ``_channel`` or no ``_translate_data`` to replace."""
    for owner, part in ((upstream, "_translate_data"), (exporter, "_channel")):
        if not hasattr(owner, part):
            missing("grpc", part)
            return
    exporter._client = _PreEncodedStub(exporter._channel, method, response)


def _check_reconnect(upstream: type) -> None:
    """Warn, once, when upstream builds its stub elsewhere than ``_initialize_channel_and_stub``: the
    override is then never called, and ``_translate_data`` keeps upstream's encoding."""
    if not hasattr(upstream, "_initialize_channel_and_stub"):
        missing("grpc", "_initialize_channel_and_stub")


class GrpcSpanExporter(_GrpcSpanExporter):
    """OTLP/gRPC span exporter: upstream's channel, metadata, deadline and retry, our bytes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._encoder = SpanEncoder()
        super().__init__(*args, **kwargs)
        _check_reconnect(_GrpcSpanExporter)

    def _initialize_channel_and_stub(self) -> None:  # also called by upstream to reconnect on UNAVAILABLE
        super()._initialize_channel_and_stub()
        _pre_encode(self, _GrpcSpanExporter, _TRACE_METHOD, ExportTraceServiceResponse)

    def _translate_data(self, data: Sequence[ReadableSpan]) -> Any:
        if isinstance(self._client, _PreEncodedStub):
            return self._encoder.encode(data)
        return super()._translate_data(data)


class GrpcMetricExporter(_GrpcMetricExporter):
    """OTLP/gRPC metric exporter: upstream's (batch splitting included), our bytes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._encoder = MetricEncoder()
        super().__init__(*args, **kwargs)
        _check_reconnect(_GrpcMetricExporter)

    def _initialize_channel_and_stub(self) -> None:
        super()._initialize_channel_and_stub()
        _pre_encode(self, _GrpcMetricExporter, _METRICS_METHOD, ExportMetricsServiceResponse)

    def _translate_data(self, data: MetricsData) -> Any:
        if isinstance(self._client, _PreEncodedStub):
            return self._encoder.encode(data)
        return super()._translate_data(data)
