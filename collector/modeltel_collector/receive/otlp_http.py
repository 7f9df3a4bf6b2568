"""OTLP/HTTP receiver: POST /v1/traces and /v1/metrics, protobuf or JSON, optionally gzip-compressed.

Answers follow the OTLP/HTTP spec: 200 with an Export*ServiceResponse in the request's encoding; 400 with a
google.rpc.Status for bad payloads (not retryable); 429 + Retry-After when the ingest queue is full.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

from google.protobuf.message import Message
from google.rpc import status_pb2

from modeltel_collector import otlp
from modeltel_collector.config import Config
from modeltel_collector.httpbase import Handler, token_ok
from modeltel_collector.process.ingest import IngestQueue, Overloaded, Reservation
from modeltel_collector.stats import Stats
from modeltel_collector.validate import response

_PATHS = {"/v1/traces": otlp.TRACES, "/v1/metrics": otlp.METRICS}
_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
_GRPC_CODES = {401: 16, 404: 5, 429: 8}  # UNAUTHENTICATED, NOT_FOUND, RESOURCE_EXHAUSTED; else INVALID_ARGUMENT
_REFUSAL_REASONS = {400: "invalid", 408: "timeout", 411: "invalid", 413: "too_large", 415: "unsupported_media_type"}


class IngestDeps(Protocol):
    """What the receivers read of the collector's ``wiring.Deps``."""

    config: Config
    stats: Stats
    ingest: IngestQueue


class OTLPHandler(Handler):
    def do_POST(self) -> None:
        deps: IngestDeps = self.server.deps
        stats, cfg = deps.stats, deps.config
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        is_json = content_type == _JSON
        signal = _PATHS.get(urlsplit(self.path).path.rstrip("/"))
        try:
            if signal is None:
                self.close_connection = True
                self._error(404, f"no OTLP endpoint at {self.path}; use /v1/traces or /v1/metrics", is_json)
                return
            if not token_ok(self.headers.get("Authorization"), cfg.auth_token):
                self.close_connection = True
                stats.inc("modeltel_collector_refused_requests", "unauthorized")
                self._error(401, "missing or invalid bearer token", is_json, {"WWW-Authenticate": "Bearer"})
                return
            if content_type not in (_PROTOBUF, _JSON):
                self.read_body(cfg.max_request_bytes)
                raise otlp.PayloadError(f"Content-Type must be {_PROTOBUF} or {_JSON}, got {content_type!r}", 415)
            with deps.ingest.reserve() as held:
                response = self._accept(signal, is_json, held)
        except otlp.PayloadError as e:
            stats.inc("modeltel_collector_refused_requests", _REFUSAL_REASONS.get(e.status, "invalid"))
            self._error(e.status, str(e), is_json)
            return
        except Overloaded as e:
            stats.inc("modeltel_collector_refused_requests", "overloaded")
            self._error(429, str(e), is_json, {"Retry-After": f"{max(1, round(e.retry_after_s))}"})
            return
        if is_json:
            self.send_body(200, otlp.to_json(response), _JSON)
        else:
            self.send_body(200, response.SerializeToString(), _PROTOBUF)

    def _accept(self, signal: str, is_json: bool, held: Reservation) -> Message:
        """Read, decompress, validate and queue the body, holding its bytes in ``held`` while in memory;
        returns the response (with partial_success for points that will not be exposed)."""
        deps: IngestDeps = self.server.deps
        cfg, ingest = deps.config, deps.ingest
        body = self.read_body(cfg.max_request_bytes, held.grow)
        ingest.check_room(len(body))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding.strip().lower() not in ("", "identity"):
            body = otlp.decompress(body, encoding, cfg.max_request_bytes)
            held.grow(len(body))
        if is_json:
            held.grow(len(body) * otlp.JSON_DECODE_FACTOR)
            request = otlp.parse_json(signal, body)
            body = request.SerializeToString()
        else:
            held.grow(len(body) * otlp.PROTOBUF_DECODE_FACTOR)
            request = otlp.parse_protobuf(signal, body)  # validate: bad payloads are refused here, with the reason
        ingest.submit(signal, body, "http")
        return response(signal, request, ingest.points_over_limit(signal, request))

    def do_GET(self) -> None:
        self.send_body(405, b"OTLP receiver: POST /v1/traces or /v1/metrics\n", "text/plain", {"Allow": "POST"})

    def _error(self, status: int, message: str, is_json: bool, headers: dict[str, str] | None = None) -> None:
        st = status_pb2.Status(code=_GRPC_CODES.get(status, 3), message=message)
        if is_json:
            self.send_body(status, otlp.to_json(st), _JSON, headers)
        else:
            self.send_body(status, st.SerializeToString(), _PROTOBUF, headers)
