"""A collector that cannot be reached is said once, with the endpoint and the fix; then quietly counted.

With the collector down or misaddressed, the OTLP exporters log every retry of every batch: "Transient
error HTTPConnectionPool(...) Max retries exceeded ... Connection refused", then "Failed to export spans
batch ...", again each export interval, and for an OTLP/HTTP exporter pointed at the gRPC port,
unreadable ``BadStatusLine('\\x00\\x00\\x18...')`` ones. None of those says what to do. So the
exporters' failure lines are kept back (:class:`OncePerReason` notes them for the export in progress),
and when an export fails, :func:`export_failed` says once per place and reason what went wrong and how
to fix it. What was not sent is counted (:mod:`.delivery`) and said once more at exit
(:meth:`modeltel.export.pipeline.Pipeline.shutdown`). The exporters' other lines pass once each.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import urlparse

_log = logging.getLogger("modeltel")

_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
)
# How the upstream exporters (HTTP and gRPC) report a failed attempt or export: kept back, read for the reason.
_FAILURE_LINES = ("Transient error", "Failed to export", "Shutdown in progress, aborting retry")
_START = "is the collector running there? Start it (modeltel collector) or set OTEL_EXPORTER_OTLP_ENDPOINT to it"
_HOST = "check the host name in OTEL_EXPORTER_OTLP_ENDPOINT"
_SLOW = f"{_START}; a slow one needs a larger OTEL_EXPORTER_OTLP_TIMEOUT"
_GRPC_PORT = ("is OTEL_EXPORTER_OTLP_ENDPOINT the collector's gRPC port (4317)? Use its OTLP/HTTP port (4318), or set "
              "OTEL_EXPORTER_OTLP_PROTOCOL=grpc")  # fmt: skip
# (what the exporter's lines may contain, what it means, the fix); the first that matches names the reason
_REASONS = (
    (("BadStatusLine",), "the endpoint did not answer in HTTP", _GRPC_PORT),
    (("Connection refused",), "connection refused", _START),
    (("Name or service not known", "Temporary failure in name resolution", "nodename nor servname"), "unknown host",
     _HOST),
    (("timed out", "DEADLINE_EXCEEDED", "due to timeout"), "no answer within {timeout}", _SLOW),
    (("UNAVAILABLE",), "the collector is unavailable", _START),
)  # fmt: skip
_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+(\.\d+)?")  # retry delays, object addresses, ports
_MAX_REASONS = 256
_MAX_REASON_CHARS = 200


class OncePerReason(logging.Filter):
    """Keeps back the exporters' failure lines (noted for :func:`export_failed` in the exporting thread)
    and passes the first record of each other distinct message (numbers and addresses aside)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(_FAILURE_LINES):
            note_failure(message)
            return False
        return self.first(record.name, message)

    def first(self, *key: str) -> bool:
        """Whether this is the first time of ``key`` (numbers aside); at most ``_MAX_REASONS`` are kept."""
        normal = tuple(_NUMBERS.sub("#", part) for part in key)
        with self._lock:
            if normal in self._seen or len(self._seen) >= _MAX_REASONS:
                return False
            self._seen.add(normal)
        return True


_filter = OncePerReason()
_export = threading.local()  # .lines: the exporter's failure lines of the export in progress in this thread


def quiet_repeated_export_errors() -> None:
    """Install the filter on the OTLP exporters' loggers (idempotent)."""
    for name in _EXPORTER_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)


def export_started() -> None:
    """Begin noting the exporter's failure lines of the export this thread is about to make."""
    _export.lines = []


def note_failure(text: str) -> None:
    """Note why an attempt of the export in progress failed, where the exporter's own lines do not say."""
    lines = getattr(_export, "lines", None)
    if lines is not None and len(lines) < 8:
        lines.append(text)


def export_failed(signal: str, exporter: Any) -> None:
    """Say why exporting ``signal`` ("spans", "metrics") with ``exporter`` failed, once per place and reason."""
    lines, _export.lines = getattr(_export, "lines", None) or [], None
    endpoint = str(getattr(exporter, "_endpoint", "") or "OTEL_EXPORTER_OTLP_ENDPOINT")
    text = " ".join(lines)
    timeout = getattr(getattr(exporter, "_client", None), "_timeout", None) or getattr(exporter, "_timeout", None)
    reason, fix = (text[:_MAX_REASON_CHARS] or "the exporter gave no reason"), _START
    for needles, meaning, advice in _REASONS:
        if any(needle in text for needle in needles):
            reason = meaning.format(timeout=f"{timeout:g} s" if timeout else "OTEL_EXPORTER_OTLP_TIMEOUT")
            fix = advice
            break
    if _filter.first("export failed", urlparse(endpoint).netloc or endpoint, reason):
        _log.warning(
            "modeltel: cannot export %s to %s: %s; %s. Until it answers, what is not sent is counted and said at exit",
            signal,
            endpoint,
            reason,
            fix,
        )
