"""OTLP/gRPC receiver: TraceService/Export and MetricsService/Export on grpcio's server.

Handlers take raw bytes (no grpc-side deserializer) so that a malformed message is answered with
INVALID_ARGUMENT and its reason instead of grpcio's generic INTERNAL, and so that forwarding can reuse the
bytes. A full ingest queue answers RESOURCE_EXHAUSTED with a google.rpc.RetryInfo, which OTel exporters
honour as a retry delay.
"""

from __future__ import annotations

import socket
from concurrent import futures

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo

from modeltel_collector import otlp
from modeltel_collector.config import split_address
from modeltel_collector.httpbase import ssl_context, token_ok
from modeltel_collector.process.ingest import Overloaded
from modeltel_collector.receive.otlp_http import IngestDeps
from modeltel_collector.validate import response

_SERVICES = {
    otlp.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    otlp.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
}


class GrpcReceiver:
    def __init__(self, deps: IngestDeps, *, workers: int = 8) -> None:
        """Listens on ``deps.config.otlp_grpc``; submits to ``deps.ingest``."""
        config = deps.config
        address = config.otlp_grpc
        self.config = config
        self.ingest = deps.ingest
        self.stats = deps.stats
        options = [
            ("grpc.max_receive_message_length", config.max_request_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.http2.bdp_probe", 0),
        ]
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modeltel-grpc"),
            options=options,
            # beyond this grpcio answers RESOURCE_EXHAUSTED itself: bounds request bytes held in memory
            maximum_concurrent_rpcs=config.max_connections,
            compression=None,
        )
        for signal, service in _SERVICES.items():
            handler = grpc.unary_unary_rpc_method_handler(
                self._make_handler(signal), request_deserializer=None, response_serializer=_serialize
            )
            self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Export": handler}),))
        if config.tls_cert:
            ssl_context(config.tls_cert, config.tls_key)  # a bad cert/key: one line with the reason
            with open(config.tls_cert, "rb") as c, open(config.tls_key, "rb") as k:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        _check_free(address)
        try:  # grpcio returns port 0 or, since 1.60, raises RuntimeError when it cannot bind
            if config.tls_cert:
                self.port = self.server.add_secure_port(address, creds)
            else:
                self.port = self.server.add_insecure_port(address)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise OSError(f"address in use or not available: {address}")

    def start(self) -> None:
        self.server.start()

    def stop(self, grace_s: float) -> None:
        self.server.stop(grace_s).wait()

    def _make_handler(self, signal: str):
        def export(body: bytes, context: grpc.ServicerContext):
            if self.config.auth_token:
                md = dict(context.invocation_metadata())
                if not token_ok(md.get("authorization"), self.config.auth_token):
                    self.stats.inc("modeltel_collector_refused_requests", "unauthorized")
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
            try:
                self.ingest.check_room(len(body))
                with self.ingest.reserve(len(body) * (1 + otlp.PROTOBUF_DECODE_FACTOR)):
                    request = otlp.parse_protobuf(signal, body)  # bad payloads are refused here, with the reason
                    self.ingest.submit(signal, body, "grpc")
                    return response(signal, request, self.ingest.points_over_limit(signal, request))
            except otlp.PayloadError as e:
                self.stats.inc("modeltel_collector_refused_requests", "invalid")
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            except Overloaded as e:
                self.stats.inc("modeltel_collector_refused_requests", "overloaded")
                secs = max(e.retry_after_s, 0.001)
                info = RetryInfo(retry_delay=Duration(seconds=int(secs), nanos=int((secs % 1) * 1e9)))
                context.set_trailing_metadata((("google.rpc.retryinfo-bin", info.SerializeToString()),))
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))

        return export


def _check_free(address: str) -> None:
    """Raise the OSError a bind would (a port in use, mostly) before grpcio logs its own C-level error."""
    host, port = split_address(address)
    if port:
        socket.create_server((host, port)).close()


def _serialize(msg) -> bytes:
    return msg.SerializeToString()
