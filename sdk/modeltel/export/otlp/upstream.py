"""The one warning modeltel's OTLP exporters give when an upstream release lacks a private part they use.

Both protocols send modeltel's encoded bytes through the upstream exporters' own machinery, which has no
public seam for it: each looks its private parts up when an exporter is built, and when one is gone the
exporter keeps upstream's own encoding (slower, same data) and says so here, once per part and process.
"""

from __future__ import annotations

import logging

_log = logging.getLogger(__name__)
_PROTOCOLS = {"http": "OTLP/HTTP", "grpc": "OTLP/gRPC"}
_reported: set[tuple[str, str]] = set()  # (package, part) found missing, each warned about once per process


def missing(package: str, part: str) -> None:
    """Warn, once, that ``opentelemetry-exporter-otlp-proto-<package>`` has no ``part``."""
    if (package, part) not in _reported:
        _reported.add((package, part))
        _log.warning(
            "modeltel: this opentelemetry-exporter-otlp-proto-%s has no %s; %s exports with upstream's own "
            "encoder (slower, same data)",
            package,
            part,
            _PROTOCOLS[package],
        )
