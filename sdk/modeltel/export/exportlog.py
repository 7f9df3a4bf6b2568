"""One log line per distinct export failure, not one per retry, and a hint where the cause is known.

With the collector down or misaddressed, the OTLP exporters log every retry of every batch: a flood
of "Transient error ... retrying in 1.06s" lines, and for an OTLP/HTTP exporter pointed at the gRPC
port, unreadable ``BadStatusLine('\\x00\\x00\\x18...')`` ones. The first occurrence of each failure
says what there is to say; the count of what was not sent comes once more at exit
(:meth:`modeltel.export.pipeline.Pipeline.shutdown`).
"""

from __future__ import annotations

import logging
import re
import threading

_log = logging.getLogger("modeltel")

_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
)
# A failure whose cause is known: the hint replaces the exporter's own line.
_HINTS = (
    (
        "BadStatusLine",
        "modeltel: the OTLP endpoint did not answer in HTTP; is OTEL_EXPORTER_OTLP_ENDPOINT the collector's gRPC port "
        "(4317)? Use its OTLP/HTTP port (4318), or set OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
    ),
)
_NUMBERS = re.compile(r"\d+(\.\d+)?")
_MAX_REASONS = 256


class OncePerReason(logging.Filter):
    """Passes the first record of each distinct message (numbers aside, so retry delays do not count)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        key = (record.name, _NUMBERS.sub("#", message))
        with self._lock:
            if key in self._seen or len(self._seen) >= _MAX_REASONS:
                return False
            self._seen.add(key)
        for needle, hint in _HINTS:
            if needle in message:
                with self._lock:
                    first = ("hint", hint) not in self._seen
                    self._seen.add(("hint", hint))
                if first:
                    _log.warning(hint)
                return False
        return True


_filter = OncePerReason()


def quiet_repeated_export_errors() -> None:
    """Install the filter on the OTLP exporters' loggers (idempotent)."""
    for name in _EXPORTER_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
