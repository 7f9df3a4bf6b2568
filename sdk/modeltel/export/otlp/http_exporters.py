"""OTLP/HTTP: the upstream exporters with modeltel's encoder in place of theirs, and nothing else changed.

Each class subclasses the upstream exporter and replaces only the step that turns SDK data into bytes.
Endpoint, headers, compression, timeout, certificates, the ``requests`` session, retry with backoff on
429/502/503/504, the size limit and the exporter's self-metrics all stay the upstream code's, reading the
same ``OTEL_EXPORTER_OTLP_*`` variables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http._common import RequestPayloadTooLargeError, _is_request_too_large
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as _HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as _HttpSpanExporter
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE

from ..delivery import _points
from .metrics import MetricEncoder
from .spans import SpanEncoder

_log = logging.getLogger(__name__)
_UPSTREAM_PARTS = ("_client", "_metrics", "_max_request_size")  # what _send_http uses of the upstream exporter


def _has_upstream_parts(exporter: Any) -> bool:
    """Whether this upstream version has the parts we send through; if not, it keeps its own encoding."""
    return all(hasattr(exporter, name) for name in _UPSTREAM_PARTS)


def _send_http(exporter: Any, body: Callable[[], bytes], count: int, result_type: Any) -> Any:
    """The upstream HTTP exporters' export step (their ``export`` body) with our bytes: one request
    through their client, which owns headers, compression, timeout, TLS and the retry loop."""
    with exporter._metrics.export_operation(count) as result:
        try:
            data = body()
        except Exception as error:  # as upstream: a batch that cannot be encoded is dropped, logged
            _log.error("Failed to encode %s batch: %s", exporter._client._kind, error)
            result.error = error
            return result_type.FAILURE
        if _is_request_too_large(data, exporter._max_request_size):
            _log.warning("Dropping batch: serialized size %d bytes exceeds max_request_size", len(data))
            result.error = RequestPayloadTooLargeError(f"Serialized request size {len(data)} bytes is too large.")
            return result_type.FAILURE
        sent = exporter._client.export(data)
        if not sent.success:
            result.error = sent.error
            if sent.status_code is not None:
                result.error_attrs = {HTTP_RESPONSE_STATUS_CODE: sent.status_code}
            return result_type.FAILURE
    return result_type.SUCCESS


class HttpSpanExporter(_HttpSpanExporter):
    """OTLP/HTTP span exporter: upstream's, encoding with :class:`SpanEncoder`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = SpanEncoder()
        self._ours = _has_upstream_parts(self)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self._ours:
            return super().export(spans)
        if self._shutdown:
            _log.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        return _send_http(self, lambda: self._encoder.encode(spans), len(spans), SpanExportResult)


class HttpMetricExporter(_HttpMetricExporter):
    """OTLP/HTTP metric exporter: upstream's, encoding with :class:`MetricEncoder`.

    With ``max_export_batch_size`` set, upstream splits the encoded message; that path stays upstream's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = MetricEncoder()
        self._ours = _has_upstream_parts(self)

    def export(self, metrics_data: MetricsData, timeout_millis: float | None = 10_000, **kwargs: Any) -> Any:
        if not self._ours or self._shutdown or getattr(self, "_max_export_batch_size", None) is not None:
            return super().export(metrics_data, timeout_millis, **kwargs)
        encode = self._encoder.encode
        return _send_http(self, lambda: encode(metrics_data), _points(metrics_data), MetricExportResult)
