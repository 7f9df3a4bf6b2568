"""Receive: the OTLP/HTTP and OTLP/gRPC front doors.

Receivers only authenticate, decode (to validate, with the reason on refusal) and hand the request's
protobuf bytes to the ingest queue in ``process``; they never touch the stores, so a slow store shows up
as a full queue (429 / RESOURCE_EXHAUSTED) instead of stalled connections. OTLP wire decoding is shared
with the other layers and lives in ``modeltel_collector.otlp``.
"""
