"""The keep-alive transport of the OTLP/HTTP exporters: one connection for many batches, upstream's
``requests`` where only it would do the same, and failures reported as ``requests`` reported them."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from modeltel.export.otlp.http_exporters import HttpSpanExporter
from modeltel.export.otlp.transport import KeepAliveTransport
from tests.collector_helpers import self_signed_cert


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.connections: set[tuple[str, int]] = set()
        self.bodies: list[bytes] = []
        self.answer = 200
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Receiver

    def do_POST(self) -> None:
        self.server.connections.add(self.client_address)
        self.server.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(self.server.answer)
        self.send_header("Content-Length", "0")
        if self.server.answer == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _spans(n: int = 3) -> list[Any]:
    tracer = TracerProvider().get_tracer("t")
    out = []
    for i in range(n):
        span = tracer.start_span(f"s{i}")
        span.end()
        out.append(span)
    return out


def test_batches_share_one_kept_alive_connection(receiver: _Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{receiver.server_port}/v1/traces")
    assert isinstance(exporter._client._transport, KeepAliveTransport)
    for _ in range(5):
        assert exporter.export(_spans()) is SpanExportResult.SUCCESS
    assert len(receiver.bodies) == 5
    assert len(receiver.connections) == 1  # requests would also reuse it; a connection per batch would not do
    exporter.shutdown()


def test_a_closed_connection_is_reopened_for_the_next_batch(receiver: _Receiver) -> None:
    transport = KeepAliveTransport()
    url = f"http://127.0.0.1:{receiver.server_port}/v1/traces"
    assert transport.request("POST", url, data=b"a", timeout=5).status_code == 200
    transport._connections[("http", "127.0.0.1", receiver.server_port)].sock.shutdown(socket.SHUT_RDWR)
    first = transport.request("POST", url, data=b"b", timeout=5)  # fails on the dead socket, or reconnects
    if first.status_code is None:
        assert transport.is_connection_error(first.error)  # so upstream retries it at once
        assert transport.request("POST", url, data=b"b", timeout=5).status_code == 200
    assert receiver.bodies[-1] == b"b"


def test_a_proxy_from_the_environment_keeps_upstreams_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    exporter = HttpSpanExporter(endpoint="http://collector.example:4318/v1/traces")
    assert type(exporter._client._transport).__name__ == "RequestsHTTPTransport"


def test_http_sent_to_a_non_http_port_reads_as_requests_said_it() -> None:
    """The words ``exportlog`` turns into its hint about the gRPC port must still be in the error."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer_in_http2() -> None:
            conn, _ = server.accept()
            request = b""
            while not request.endswith(b"\r\n\r\nx"):  # the whole request (headers, then the body may follow):
                request += conn.recv(65536)  # closing on an unread body would reset the connection instead
            conn.sendall(b"\x00\x00\x18\x04\x00\x00\x00\x00\x00")
            conn.close()

        threading.Thread(target=answer_in_http2, daemon=True).start()
        result = KeepAliveTransport().request("POST", f"http://127.0.0.1:{port}/v1/traces", data=b"x", timeout=5)
    assert result.status_code is None and isinstance(result.error, ConnectionError)
    assert "BadStatusLine" in str(result.error)


def test_retry_after_is_read_from_the_response(receiver: _Receiver) -> None:
    receiver.answer = 429
    result = KeepAliveTransport().request("POST", f"http://127.0.0.1:{receiver.server_port}/", data=b"x", timeout=5)
    assert result.status_code == 429 and result.headers()["retry-after"] == "0"


def test_https_verifies_with_the_configured_certificate(receiver: _Receiver, tmp_path) -> None:
    cert, key = self_signed_cert(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    receiver.socket = tls.wrap_socket(receiver.socket, server_side=True)
    url = f"https://127.0.0.1:{receiver.server_port}/v1/traces"
    trusted = HttpSpanExporter(endpoint=url, certificate_file=str(cert))
    assert isinstance(trusted._client._transport, KeepAliveTransport)
    assert trusted.export(_spans()) is SpanExportResult.SUCCESS
    untrusted = KeepAliveTransport().request("POST", url, data=b"x", timeout=5)  # certifi's bundle: not ours
    assert untrusted.status_code is None and isinstance(untrusted.error, ssl.SSLError)
    assert KeepAliveTransport(verify=False).request("POST", url, data=b"x", timeout=5).status_code == 200
