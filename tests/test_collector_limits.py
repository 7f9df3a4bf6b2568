"""Limits a hostile client must not get around: chunked framing, gzip members, connections, memory, fetch size."""

from __future__ import annotations

import gzip
import socket
import threading
import time

import grpc
import pytest

from tests.collector_helpers import PB, http_get, http_post, running_collector, trace_request

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


def _grpc_export(c, body: bytes):
    with grpc.insecure_channel(c.urls["otlp_grpc"]) as ch:
        return ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")(body, timeout=10)


def test_inflight_bytes_are_bounded_across_receivers() -> None:
    with running_collector(max_inflight_bytes=1 << 20) as c:
        body = trace_request(40, payload=15_000).SerializeToString()  # ~600 kB
        host, port = c.urls["otlp_http"].removeprefix("http://").split(":")
        slow = socket.create_connection((host, int(port)), timeout=10)  # holds its body's bytes while sending
        slow.sendall(_HEAD.replace("Transfer-Encoding: chunked", f"Content-Length: {len(body)}").encode())
        slow.sendall(body[:1000])
        deadline = time.monotonic() + 5
        while c.pipeline.inflight_bytes < len(body) and time.monotonic() < deadline:
            time.sleep(0.01)
        status, headers, _ = http_post(c.urls["otlp_http"] + "/v1/traces", body, PB)
        assert status == 429 and headers["Retry-After"]
        with pytest.raises(grpc.RpcError) as err:
            _grpc_export(c, body)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        slow.sendall(body[1000:])
        assert slow.recv(4096).startswith(b"HTTP/1.1 200")
        slow.close()
        assert http_post(c.urls["otlp_http"] + "/v1/traces", body, PB)[0] == 200
        _grpc_export(c, body)
        assert c.flush() and c.spans.count == 120 and c.pipeline.inflight_bytes == 0


def test_trace_store_queue_is_bounded_in_bytes() -> None:
    with running_collector(trace_queue_bytes=200_000, max_queue_bytes=300_000) as c:
        gate = threading.Event()
        write = c.spans._batches._write
        c.spans._batches._write = lambda rows: (gate.wait(20), write(rows))
        body = trace_request(10, payload=5_000).SerializeToString()  # ~50 kB
        url = c.urls["otlp_http"] + "/v1/traces"
        accepted = 0
        while http_post(url, body, PB)[0] == 200:
            accepted += 10
            assert accepted < 1000, "never answered 429: the trace store queue is not bounded"
            time.sleep(0.02)  # let the worker move batches on to the store's queue
        assert c.spans.queued_bytes <= 200_000 + 60_000  # one batch may go over, so one large batch gets in
        assert c.pipeline.queued_bytes <= 300_000
        gate.set()
        assert c.flush() and c.spans.count == accepted  # nothing accepted was lost


def _open(url: str, first_bytes: bytes = b"") -> socket.socket:
    host, port = url.split("://", 1)[-1].split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    if first_bytes:
        s.sendall(first_bytes)
    return s


def test_idle_and_slow_connections_cannot_lock_out_ingest_or_scrapes() -> None:
    with running_collector(max_connections=4) as c:
        hogs = []
        for url in (c.urls["otlp_http"], c.urls["listen"]):
            hogs += [_open(url) for _ in range(2)]  # connected, silent
            hogs += [_open(url, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n") for _ in range(2)]  # slowloris head
        time.sleep(0.5)
        body = trace_request(3).SerializeToString()
        for _ in range(3):  # each answered (not 429, and within the client's timeout): a hog was evicted
            assert http_post(c.urls["otlp_http"] + "/v1/traces", body, PB)[0] == 200
            assert http_get(c.urls["listen"] + "/metrics")[0] == 200
            assert http_get(c.urls["listen"] + "/healthz")[0] == 200
            time.sleep(0.3)  # the hogs left wait past the quarter second that makes them evictable
        for s in hogs:
            s.close()


def test_a_body_trickling_in_is_cut_off_at_the_read_timeout() -> None:
    with running_collector(read_timeout_s=1.0) as c:
        body = trace_request(3).SerializeToString()
        slow = _open(c.urls["otlp_http"])
        slow.sendall(_HEAD.replace("Transfer-Encoding: chunked", f"Content-Length: {len(body)}").encode())
        t0 = time.monotonic()
        for b in body[:-1]:  # one byte every 50 ms: each read is quick, the whole body never arrives in time
            try:
                slow.sendall(bytes([b]))
            except OSError:
                break
            time.sleep(0.05)
            if time.monotonic() - t0 > 4:
                break
        slow.settimeout(5)
        assert slow.recv(4096).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - t0 < 3
        slow.close()
        assert c.stats.counters["modeltel_collector_refused_requests"]["timeout"] == 1
