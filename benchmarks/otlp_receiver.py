"""A null OTLP receiver (HTTP and gRPC) for the export benchmarks, run as its own process.

It answers every export with success and counts the bytes, nothing else, so that what the benchmark
process spends is the sender's cost alone; in its own process its CPU is not counted. It prints
``HTTP_PORT GRPC_PORT`` on one line, then serves until its standard input closes.
Run: ``python benchmarks/otlp_receiver.py`` (benchmarks/overhead.py starts it for you).
"""

from __future__ import annotations

import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc


class _Http(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector does

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class _Grpc(grpc.GenericRpcHandler):
    """Any unary method: the request stays bytes, the empty response is a valid Export*ServiceResponse."""

    def service(self, handler_call_details: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(lambda request, context: b"")


def main() -> None:
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Http)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((_Grpc(),))
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(http.server_address[1], grpc_port, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    server.stop(grace=None)
    http.shutdown()


if __name__ == "__main__":
    main()
