"""Limits a hostile client must not get around: chunked framing, gzip members, connections, memory, fetch size."""

from __future__ import annotations

import gzip
import socket

from tests.collector_helpers import PB, http_post, running_collector, trace_request

_HEAD = (
    "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def _raw_exchange(url: str, data: bytes, timeout_s: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection (without closing our side) and read the answer's status line."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as s:
        s.sendall(data)
        try:
            return s.recv(4096).split(b"\r\n", 1)[0]
        except TimeoutError:
            return b"(no answer)"


def test_chunked_framing_is_strict() -> None:
    with running_collector(max_request_bytes=64 * 1024) as c:
        url = c.urls["otlp_http"]
        body = trace_request(2).SerializeToString()
        good = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        assert _raw_exchange(url, _HEAD.encode() + good) == b"HTTP/1.1 200 OK"
        cases = {
            "negative size": b"-1\r\n" + b"x" * 200_000,  # used to read to EOF, past max_request_bytes
            "sign": b"+5\r\nhello\r\n0\r\n\r\n",
            "0x prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
            "not hex": b"zz\r\nhello\r\n0\r\n\r\n",
            "no CRLF after data": b"5\r\nhelloXX0\r\n\r\n",
            "endless size line": b"1" * 5000,
            "endless trailers": b"0\r\n" + b"X-T: 1\r\n" * 100,
        }
        for what, chunked in cases.items():
            assert _raw_exchange(url, _HEAD.encode() + chunked) == b"HTTP/1.1 400 Bad Request", what
        huge = _HEAD.encode() + b"ffffffff\r\n" + b"x" * 1000
        assert _raw_exchange(url, huge) == b"HTTP/1.1 413 Request Entity Too Large"
        assert http_post(url + "/v1/traces", body, PB)[0] == 200


def test_gzip_with_several_members_is_read_whole() -> None:
    with running_collector(max_request_bytes=1 << 20) as c:
        first, second = trace_request(3), trace_request(4)  # concatenated protobuf messages merge
        body = gzip.compress(first.SerializeToString()) + gzip.compress(second.SerializeToString())
        assert http_post(c.urls["otlp_http"] + "/v1/traces", body, {**PB, "Content-Encoding": "gzip"})[0] == 200
        assert c.flush() and c.spans.count == 7
        trailing = gzip.compress(first.SerializeToString()) + b"garbage"
        assert http_post(c.urls["otlp_http"] + "/v1/traces", trailing, {**PB, "Content-Encoding": "gzip"})[0] == 400
        bomb = gzip.compress(b"\0" * 600_000) * 20  # each member under the limit, together over it
        assert http_post(c.urls["otlp_http"] + "/v1/traces", bomb, {**PB, "Content-Encoding": "gzip"})[0] == 413
