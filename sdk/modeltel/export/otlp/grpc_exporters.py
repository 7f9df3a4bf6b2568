"""OTLP/gRPC: the upstream exporters with modeltel's encoder in place of theirs, and nothing else changed.

Each class subclasses the upstream exporter and replaces only the step that turns SDK data into a
request: the encoded bytes go through upstream's own channel (TLS credentials, compression, channel
options), with its metadata (headers), deadline (timeout) and retry loop (backoff on UNAVAILABLE,
RESOURCE_EXHAUSTED with retry info, ..., reconnecting on UNAVAILABLE), through a unary call whose
request serializer is the identity.
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

_TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


class _PreEncodedStub:
    """Stands in for the generated gRPC stub: ``Export`` sends bytes that are already a request."""

    def __init__(self, channel: Any, method: str, response: Any) -> None:
        self.Export = channel.unary_unary(method, request_serializer=bytes, response_deserializer=response.FromString)


class GrpcSpanExporter(_GrpcSpanExporter):
    """OTLP/gRPC span exporter: upstream's channel, metadata, deadline and retry, our bytes.

    An upstream version that builds its stub without ``_initialize_channel_and_stub`` keeps its own
    encoding (``_translate_data`` checks which stub is in place).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._encoder = SpanEncoder()
        super().__init__(*args, **kwargs)

    def _initialize_channel_and_stub(self) -> None:  # also called by upstream to reconnect on UNAVAILABLE
        super()._initialize_channel_and_stub()
        self._client = _PreEncodedStub(self._channel, _TRACE_METHOD, ExportTraceServiceResponse)

    def _translate_data(self, data: Sequence[ReadableSpan]) -> Any:
        if isinstance(self._client, _PreEncodedStub):
            return self._encoder.encode(data)
        return super()._translate_data(data)


class GrpcMetricExporter(_GrpcMetricExporter):
    """OTLP/gRPC metric exporter: upstream's (batch splitting included), our bytes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._encoder = MetricEncoder()
        super().__init__(*args, **kwargs)

    def _initialize_channel_and_stub(self) -> None:
        super()._initialize_channel_and_stub()
        self._client = _PreEncodedStub(self._channel, _METRICS_METHOD, ExportMetricsServiceResponse)

    def _translate_data(self, data: MetricsData) -> Any:
        if isinstance(self._client, _PreEncodedStub):
            return self._encoder.encode(data)
        return super()._translate_data(data)
