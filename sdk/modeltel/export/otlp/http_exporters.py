"""OTLP/HTTP: the upstream exporters with modeltel's encoder in place of theirs, and nothing else changed.

Each class subclasses the upstream exporter and replaces the step that turns SDK data into bytes, and
(:mod:`.transport`) the ``requests`` transport by a keep-alive ``http.client`` one where that changes
nothing else. Endpoint, headers, compression, timeout, certificates, retry with backoff on
429/502/503/504, the size limit and the exporter's self-metrics all stay the upstream code's, reading the
same ``OTEL_EXPORTER_OTLP_*`` variables.

Sending our bytes means re-running upstream's export step on its private parts (listed in
:func:`_upstream_parts`). They are looked up when an exporter is built, never at import: an upstream
release that renamed one makes that exporter use upstream's whole ``export`` (its own encoding, still
exporting) and logs one warning, instead of failing the import and leaving the process with no exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as _HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as _HttpSpanExporter
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE

from .. import exportlog
from ..delivery import _points
from .metrics import MetricEncoder
from .spans import SpanEncoder
from .transport import use_keep_alive
from .upstream import missing

_log = logging.getLogger(__name__)


class _Upstream(NamedTuple):
    """What the export step needs from upstream's private ``_common`` module."""

    too_large: Callable[[bytes, int], bool]  # _is_request_too_large(data, max_request_size)
    too_large_error: type[Exception]  # RequestPayloadTooLargeError


def _upstream_parts(exporter: Any) -> _Upstream | None:
    """The upstream internals our export step goes through, or None (warned once) if one is missing."""
    try:
        from opentelemetry.exporter.otlp.proto.http import _common
    except ImportError:
        missing("http", "_common module")
        return None
    for owner, name, part in (
        (_common, "_is_request_too_large", "_common._is_request_too_large"),
        (_common, "RequestPayloadTooLargeError", "_common.RequestPayloadTooLargeError"),
        (exporter, "_shutdown", "exporter._shutdown"),
        (exporter, "_max_request_size", "exporter._max_request_size"),
        (getattr(exporter, "_metrics", None), "export_operation", "exporter._metrics.export_operation"),
        (getattr(exporter, "_client", None), "export", "exporter._client.export"),
    ):
        if not hasattr(owner, name):
            missing("http", part)
            return None
    return _Upstream(_common._is_request_too_large, _common.RequestPayloadTooLargeError)


def _set(result: Any, **fields: Any) -> None:
    """Fill upstream's self-metrics record; a field it no longer has only loses that detail."""
    for name, value in fields.items():
        try:
            setattr(result, name, value)
        except AttributeError:
            missing("http", f"export_operation().{name}")


def _send_http(exporter: Any, upstream: _Upstream, body: Callable[[], bytes], count: int, kind: str) -> bool:
    """The upstream HTTP exporters' export step (their ``export`` body) with our bytes: one request
    through their client, which owns headers, compression, timeout, TLS and the retry loop."""
    with exporter._metrics.export_operation(count) as result:
        try:
            data = body()
        except Exception as error:  # as upstream: a batch that cannot be encoded is dropped, logged
            _log.error("Failed to encode %s batch: %s", kind, error)
            _set(result, error=error)
            return False
        if upstream.too_large(data, exporter._max_request_size):
            _log.warning("Dropping %s batch: serialized size %d bytes exceeds max_request_size", kind, len(data))
            _set(result, error=upstream.too_large_error(f"Serialized request size {len(data)} bytes is too large."))
            return False
        sent = exporter._client.export(data)
        if not hasattr(sent, "success"):  # sent, outcome unknown: later batches take upstream's own export
            missing("http", "_client.export() result's success")
            exporter._upstream = None
            return True
        if not sent.success:  # upstream's last line may not say why ("due to timeout, max retries or shutdown")
            exportlog.note_failure(f"{getattr(sent, 'error', None)} (HTTP {getattr(sent, 'status_code', None)})")
            status = getattr(sent, "status_code", None)
            attrs = {HTTP_RESPONSE_STATUS_CODE: status} if status is not None else None
            _set(result, error=getattr(sent, "error", None), error_attrs=attrs)
            return False
    return True


class HttpSpanExporter(_HttpSpanExporter):
    """OTLP/HTTP span exporter: upstream's, encoding with :class:`SpanEncoder`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = SpanEncoder()
        self._upstream = _upstream_parts(self)
        use_keep_alive(self)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._upstream is None:
            return super().export(spans)
        if self._shutdown:
            _log.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        sent = _send_http(self, self._upstream, lambda: self._encoder.encode(spans), len(spans), "span")
        return SpanExportResult.SUCCESS if sent else SpanExportResult.FAILURE


class HttpMetricExporter(_HttpMetricExporter):
    """OTLP/HTTP metric exporter: upstream's, encoding with :class:`MetricEncoder`.

    With ``max_export_batch_size`` set, upstream splits the encoded message; that path stays upstream's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = MetricEncoder()
        self._upstream = _upstream_parts(self)
        use_keep_alive(self)

    def export(self, metrics_data: MetricsData, timeout_millis: float | None = 10_000, **kwargs: Any) -> Any:
        upstream = self._upstream
        if upstream is None or self._shutdown or getattr(self, "_max_export_batch_size", None) is not None:
            return super().export(metrics_data, timeout_millis, **kwargs)
        encode = self._encoder.encode
        sent = _send_http(self, upstream, lambda: encode(metrics_data), _points(metrics_data), "metrics")
        return MetricExportResult.SUCCESS if sent else MetricExportResult.FAILURE
