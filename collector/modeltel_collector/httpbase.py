"""Shared HTTP server plumbing: a thread-per-connection server with a hard connection cap, TLS, auth, bodies.

The stdlib ThreadingHTTPServer is enough here: OTLP exporters send few, large, batched requests over
keep-alive connections, so per-request overhead is negligible next to protobuf decoding; it adds no
dependency, and the connection cap keeps threads (and memory) bounded under any load.

A cap alone lets idle or slow clients lock everyone out, so: a connection waiting for its next request
(keep-alive, or a request head trickling in) is evicted, longest-waiting first, when a new connection
needs its slot; and once a request's head has arrived, its body must arrive within ``read_timeout_s``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn
from urllib.parse import unquote_plus

from modeltel.plainjson import dumps
from modeltel_collector.otlp import PayloadError

_log = logging.getLogger("modeltel_collector")
_BUSY_BODY = b"too many open connections"
_BUSY = (
    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


_STREAM_CHUNK = 64 << 10  # bytes of JSON per chunk of a streamed answer
_HEADERS = {"X-Content-Type-Options": "nosniff"}  # on every answer: JSON or text is never sniffed into HTML


class BoundedHTTPServer(ThreadingHTTPServer):
    """At most ``max_connections`` handler threads; connections beyond get an immediate 429 and are closed."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(
        self,
        address: tuple[str, int],
        handler: type,
        deps: Any,
        *,
        max_connections: int,
        read_timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``deps``: what the handlers serve from, the collector's ``wiring.Deps`` (each handler module names
        the part it reads as a Protocol: ``receive.otlp_http.IngestDeps``, ``serve.deps.ServeDeps``)."""
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self.read_timeout_s = read_timeout_s
        self._waiting: dict[Any, float] = {}  # connections waiting for a request -> since (monotonic)
        self._waiting_lock = threading.Lock()
        self.deps = deps  # what the handlers serve from (ingest queue, stores, config)
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def waiting(self, conn, *, since: float | None) -> None:
        """Mark ``conn`` as waiting for a request (evictable) since ``since``, or as busy (None)."""
        with self._waiting_lock:
            if since is None:
                self._waiting.pop(conn, None)
            else:
                self._waiting[conn] = since

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for a request (a quarter second at least)."""
        with self._waiting_lock:
            if not self._waiting:
                return False
            conn, since = min(self._waiting.items(), key=lambda kv: kv[1])
            if time.monotonic() - since < 0.25:
                return False  # all in active use: refusing the newcomer is fairer than churning them
            del self._waiting[conn]
        with contextlib.suppress(OSError):  # the plain socket's shutdown: wakes its handler's read with EOF
            socket.socket.shutdown(conn, socket.SHUT_RDWR)
        return True

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False) and not (self._evict_one() and self._slots.acquire(timeout=2.0)):
            with contextlib.suppress(OSError):
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        """Client resets and TLS failures are the client's problem; never print tracebacks for them."""


def ssl_context(cert: str, key: str) -> ssl.SSLContext | None:
    if not cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise OSError(f"cannot load TLS certificate {cert!r} with key {key!r}: {e}") from e
    return ctx


def token_ok(header: str | None, token: str) -> bool:
    """Constant-time check of an ``Authorization: Bearer <token>`` header (always true without a token).

    The scheme is case-insensitive (RFC 7235 2.1): "bearer", "BEARER" and "Bearer" are the same.
    """
    if not token:
        return True
    scheme, _, credentials = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


_CREDENTIAL_NAME = re.compile(r"token|secret|passw|auth|credential|key", re.IGNORECASE)


def credential_param(name: str) -> bool:
    """Whether a query parameter's (percent-encoded) name looks like it carries a credential: ``token``,
    ``access_token``, ``api_key``, ``password``... A URL is kept by browsers and logged by proxies, so the
    collector logs no such value and the console refuses them (it takes its token from a form)."""
    return bool(_CREDENTIAL_NAME.search(unquote_plus(name)))


def loggable(path: str) -> str:
    """``path`` fit for a log line: each credential-like query parameter's value redacted, then cut to
    200 characters (a request line can be 64 KiB)."""
    base, sep, query = path.partition("?")
    if sep:
        parts = (
            p.partition("=")[0] + "=<redacted>" if credential_param(p.partition("=")[0]) else p
            for p in query.split("&")
        )
        base = f"{base}?{'&'.join(parts)}"
    return base[:200]


class Handler(BaseHTTPRequestHandler):
    server: BoundedHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "modeltel-collector"
    # headers and body are separate writes: with Nagle's algorithm the body of a small answer waited for
    # the client's delayed ACK of the headers, 40 ms per request on a kept-alive connection
    disable_nagle_algorithm = True
    _deadline = 0.0  # monotonic time by which the current request's body must have arrived

    def setup(self) -> None:
        self.timeout = self.server.read_timeout_s
        super().setup()

    _answered = False  # a status line was sent for the current request

    def handle_one_request(self) -> None:
        """One request; a failure nobody foresaw still gets an answer (500, logged), never a silent close."""
        self.server.waiting(self.connection, since=time.monotonic())
        self._answered = False
        try:
            super().handle_one_request()
        except OSError:
            raise  # the client is gone (reset, timeout): nobody to answer
        except Exception:
            request = f"{getattr(self, 'command', '')} {loggable(getattr(self, 'path', ''))}"  # unset before parsing
            _log.exception("modeltel collector: %s failed", request)
            self.close_connection = True
            if not self._answered:
                self.send_json(500, {"error": "internal error (the collector logged it)"})

    def send_response(self, code: int, message: str | None = None) -> None:
        self._answered = True
        super().send_response(code, message)

    def parse_request(self) -> bool:
        self.server.waiting(self.connection, since=None)
        self._deadline = time.monotonic() + self.server.read_timeout_s
        return super().parse_request()

    def finish(self) -> None:
        self.server.waiting(self.connection, since=None)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging (it would dominate CPU at high request rates)."""

    def send_body(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**_HEADERS, **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self.send_body(status, dumps(doc).encode(), "application/json", headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (414 URI too long, 400 bad request line, 431 ...) as JSON, like every
        other answer, instead of its HTML page; the connection closes, as the stdlib's does."""
        self.close_connection = True
        reason = message or self.responses.get(code, ("error",))[0]
        self.send_json(code, {"error": reason}, {"Connection": "close"})

    def send_json_stream(self, doc: dict[str, Any], key: str, items: Iterable[Any]) -> None:
        """200 with ``doc`` plus ``items`` as its ``key`` list, serialized item by item and sent in chunks
        (chunked transfer encoding), so a large answer is never built as one string."""
        self.send_json_parts(json_list_parts(doc, key, ((dumps(item),) for item in items)))

    def send_json_parts(self, parts: Iterable[str], headers: dict[str, str] | None = None) -> None:
        """200 with a JSON document given as consecutive pieces of its text, sent in chunks of about
        ``_STREAM_CHUNK`` bytes as the pieces come (chunked transfer encoding)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in {**_HEADERS, **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        buffered, size = [], 0
        for part in parts:
            buffered.append(part.encode())
            size += len(buffered[-1])
            if size >= _STREAM_CHUNK:
                self._send_chunk(b"".join(buffered))
                buffered, size = [], 0
        if size:
            self._send_chunk(b"".join(buffered))
        self.wfile.write(b"0\r\n\r\n")

    def _send_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def read_body(self, limit: int, reserve: Callable[[int], None] | None = None) -> bytes:
        """The request body (Content-Length or chunked), refusing anything over ``limit`` bytes.

        ``reserve(n)`` is called before ``n`` more bytes are read, and may refuse them by raising; the
        connection is then closed, since its body was not read.
        """
        self.close_connection = True  # until the body is read whole, the connection cannot be reused
        body = self._read_body(limit, reserve or (lambda n: None))
        self.close_connection = False
        return body

    def _read_body(self, limit: int, reserve: Callable[[int], None]) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit, reserve)
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise PayloadError("Content-Length or chunked encoding required", 411)
        try:
            length = int(length_header)
        except ValueError as e:
            raise PayloadError("invalid Content-Length") from e
        if length < 0:
            raise PayloadError("invalid Content-Length")
        if length > limit:
            raise PayloadError(f"body of {length} bytes exceeds the {limit}-byte limit", 413)
        try:
            reserve(length)
        except Exception:
            self._discard(length)
            raise
        body = self._read_exact(length)
        if len(body) != length:
            raise PayloadError(f"truncated body: got {len(body)} of {length} bytes")
        return body

    def _discard(self, length: int) -> None:
        """Read and drop a refused body, a piece at a time, so the client reads the refusal (429) rather
        than a connection reset while it is still sending, and the connection stays usable."""
        left = length
        with contextlib.suppress(PayloadError, OSError):
            while left > 0:
                piece = self._read_exact(min(left, 64 << 10))
                if not piece:
                    return
                left -= len(piece)
            self.close_connection = False

    def _read_chunked(self, limit: int, reserve: Callable[[int], None]) -> bytes:
        """A chunked body, parsed strictly (RFC 9112 7.1): a bad size line or chunk end closes the connection.

        A size must be 1-8 hex digits: ``int(x, 16)`` alone accepts "-1", "+a" and "0x10", and a negative
        size made ``read`` consume the connection to EOF, past every limit.
        """
        parts, total = [], 0
        while True:
            size = _chunk_size(self._framing_line())
            if size == 0:
                for _ in range(_MAX_TRAILERS):
                    if self._framing_line() in (b"\r\n", b"\n"):
                        return b"".join(parts)
                self._malformed("too many trailer lines")
            total += size
            if total > limit:
                raise PayloadError(f"body exceeds the {limit}-byte limit", 413)
            reserve(size)
            chunk = self._read_exact(size)
            if len(chunk) != size:
                self._malformed(f"truncated chunk: got {len(chunk)} of {size} bytes")
            parts.append(chunk)
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                self._malformed("chunk data not followed by CRLF")

    def _read_exact(self, n: int) -> bytes:
        """``n`` bytes (fewer at EOF), or 408 once the request's read deadline passes: a client trickling
        a body byte by byte would otherwise hold its connection slot for as long as it likes."""
        parts, left = [], n
        try:
            while left > 0:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self.connection.settimeout(remaining)
                part = self.rfile.read1(min(left, 1 << 20))
                if not part:
                    break
                parts.append(part)
                left -= len(part)
        except TimeoutError as e:
            self.close_connection = True
            raise PayloadError(f"request body not received within {self.server.read_timeout_s:g} s", 408) from e
        finally:
            self.connection.settimeout(self.timeout)
        return b"".join(parts)

    def _framing_line(self) -> bytes:
        if self._deadline - time.monotonic() <= 0:
            raise PayloadError(f"request body not received within {self.server.read_timeout_s:g} s", 408)
        line = self.rfile.readline(1024)
        if not line.endswith(b"\n"):
            self._malformed("truncated chunked body" if len(line) < 1024 else "chunk line too long")
        return line

    def _malformed(self, reason: str) -> NoReturn:
        raise PayloadError(f"malformed chunked body: {reason}")


def json_list_parts(doc: dict[str, Any], key: str, items: Iterable[Iterable[str]]) -> Iterator[str]:
    """The text of ``doc`` with a ``key`` list appended, piece by piece; each item of the list is given as
    the pieces of its JSON text."""
    yield f'{dumps(doc)[:-1]}{", " if doc else ""}"{key}": ['
    for i, pieces in enumerate(items):
        if i:
            yield ", "
        yield from pieces
    yield "]}"


_MAX_TRAILERS = 64
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].rstrip(b"\r\n").rstrip(b" \t")  # chunk extensions are ignored
    if not _CHUNK_SIZE.fullmatch(text):
        raise PayloadError(f"malformed chunked body: bad chunk size {text[:20]!r}")
    return int(text, 16)
