"""An in-process OTLP receiver (HTTP and gRPC) that keeps what it is sent, for tests.

It speaks what the OTLP exporters send (HTTP: protobuf, optionally gzip; gRPC: the trace and metrics
services) and keeps opentelemetry-proto messages, so assertions are made on exactly what went over
the wire.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_ROUTES = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}


class OtlpSink:
    """``with OtlpSink() as sink:`` then point ``OTEL_EXPORTER_OTLP_ENDPOINT`` at ``sink.endpoint``
    (or, with ``grpc=True``, at ``sink.grpc_endpoint`` with protocol ``grpc``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, grpc: bool = False) -> None:
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.received = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                route = _ROUTES.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                sink._keep(route[0].FromString(body))
                payload = route[1]().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="modeltel-otlp-sink", daemon=True)
        self._grpc = self._grpc_server(host) if grpc else None

    def _keep(self, request: Any) -> None:
        with self.received:
            (self.traces if isinstance(request, ExportTraceServiceRequest) else self.metrics).append(request)
            self.received.notify_all()

    def _grpc_server(self, host: str) -> Any:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as mgrpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc

        sink = self

        class Traces(tgrpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                sink._keep(request)
                return ExportTraceServiceResponse()

        class Metrics(mgrpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                sink._keep(request)
                return ExportMetricsServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        tgrpc.add_TraceServiceServicer_to_server(Traces(), server)
        mgrpc.add_MetricsServiceServicer_to_server(Metrics(), server)
        self.grpc_port = server.add_insecure_port(f"{host}:0")
        self.grpc_endpoint = f"http://{host}:{self.grpc_port}"
        return server

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> OtlpSink:
        self._thread.start()
        if self._grpc is not None:
            self._grpc.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace=None)

    def spans(self) -> Iterator[tuple[dict[str, Any], Any]]:
        """Every span received, with its resource's attributes."""
        for request in list(self.traces):
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        yield resource, span

    def metric_points(self, name: str) -> Iterator[tuple[dict[str, Any], Any, Any]]:
        """(resource attributes, metric, data point) for every point of metric ``name`` received."""
        for request in list(self.metrics):
            for rm in request.resource_metrics:
                resource = attributes(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name != name:
                            continue
                        data = getattr(metric, metric.WhichOneof("data"))
                        for point in data.data_points:
                            yield resource, metric, point

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        """Wait until ``predicate(self)`` is true or ``timeout`` seconds pass; returns the last result."""
        with self.received:
            return self.received.wait_for(lambda: predicate(self), timeout)


def attributes(kvs: Any) -> dict[str, Any]:
    """OTLP KeyValue list -> plain dict (scalar values only, which is all modeltel sends)."""
    out = {}
    for kv in kvs:
        field = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, field) if field else None
    return out
