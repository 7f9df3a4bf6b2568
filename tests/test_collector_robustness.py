"""Bad input, overload, auth and shutdown: the collector answers with the right status and never wedges."""

from __future__ import annotations

import gzip
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import pytest
from google.rpc import status_pb2

from tests.collector_helpers import (
    PB,
    http_get,
    http_post,
    running_collector,
    scrape,
    self_signed_cert,
    tracer_provider,
)
from tests.collector_helpers import trace_request as _request


def _grpc_export(c, body: bytes, metadata=None):
    with grpc.insecure_channel(c.urls["otlp_grpc"]) as ch:
        call = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        return call.with_call(body, timeout=5, metadata=metadata)


def _stored(c) -> int:
    c.flush()
    return c.spans.count


def test_malformed_truncated_oversized_and_wrong_type_http() -> None:
    with running_collector(max_request_bytes=64 * 1024) as c:
        url = c.urls["otlp_http"] + "/v1/traces"
        good = _request().SerializeToString()
        cases = [
            (b"\xff\xff\xff\xff", PB, 400),  # garbage protobuf
            (good[: len(good) // 2], PB, 400),  # truncated message
            (b"{not json", {"Content-Type": "application/json"}, 400),
            (
                b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
                {"Content-Type": "application/json"},
                400,
            ),
            (b"[1, 2]", {"Content-Type": "application/json"}, 400),
            (b'{"resourceSpans": ' + b"[" * 30_000, {"Content-Type": "application/json"}, 400),  # deep nesting
            (gzip.compress(good)[:-8], {**PB, "Content-Encoding": "gzip"}, 400),  # truncated gzip
            (good, {**PB, "Content-Encoding": "br"}, 415),
            (good, {"Content-Type": "text/plain"}, 415),
            (os.urandom(100 * 1024), PB, 413),
            (gzip.compress(b"\0" * (1 << 20)), {**PB, "Content-Encoding": "gzip"}, 413),  # gzip bomb
        ]
        for body, headers, expected in cases:
            status, resp_headers, resp = http_post(url, body, headers)
            assert status == expected, (headers, status, resp)
            if resp_headers.get("Content-Type") == "application/x-protobuf":
                assert status_pb2.Status.FromString(resp).message
            else:
                assert json.loads(resp)["message"]
        assert http_post(c.urls["otlp_http"] + "/v1/logs", good, PB)[0] == 404
        # still healthy and accepting good data, gzip included
        assert http_post(url, gzip.compress(good), {**PB, "Content-Encoding": "gzip"})[0] == 200
        assert http_post(url, good, PB)[0] == 200
        assert _stored(c) == 6
        fams = scrape(c)
        refused = {
            dict(lb)["reason"]: v for (_, lb), v in fams["modeltel_collector_refused_requests"]["samples"].items()
        }
        assert refused["invalid"] >= 7 and refused["too_large"] == 2 and refused["unsupported_media_type"] == 2


def test_malformed_and_oversized_grpc() -> None:
    with running_collector(max_request_bytes=64 * 1024) as c:
        good = _request().SerializeToString()
        for body, code in [(b"\xff\xff\xff", grpc.StatusCode.INVALID_ARGUMENT),
                           (good[:-5], grpc.StatusCode.INVALID_ARGUMENT),
                           (os.urandom(100 * 1024), grpc.StatusCode.RESOURCE_EXHAUSTED)]:  # fmt: skip
            with pytest.raises(grpc.RpcError) as err:
                _grpc_export(c, body)
            assert err.value.code() == code
            assert err.value.details()
        _grpc_export(c, good)
        assert _stored(c) == 3


def test_overload_answers_429_and_resource_exhausted_then_recovers() -> None:
    with running_collector(max_queue_bytes=1000) as c:
        gate = threading.Event()
        process = c.pipeline._process
        c.pipeline._process = lambda *a: (gate.wait(10), process(*a))
        body = _request(5).SerializeToString()
        url = c.urls["otlp_http"] + "/v1/traces"
        assert http_post(url, body, PB)[0] == 200  # taken by the (blocked) worker
        assert http_post(url, body, PB)[0] == 200  # queued
        accepted = 10
        status, headers, _ = http_post(url, body, PB)
        while status == 200:  # fill the queue to its byte bound
            accepted += 5
            status, headers, _ = http_post(url, body, PB)
        assert status == 429 and int(headers["Retry-After"]) >= 1
        with pytest.raises(grpc.RpcError) as err:
            _grpc_export(c, body)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        retry = dict(err.value.trailing_metadata()).get("google.rpc.retryinfo-bin")
        assert retry is not None
        assert http_get(c.urls["listen"] + "/healthz")[0] == 200
        gate.set()
        assert c.flush()
        assert http_post(url, body, PB)[0] == 200
        _grpc_export(c, body)
        assert _stored(c) == accepted + 10  # nothing accepted was lost
        fams = scrape(c)
        assert ("modeltel_collector_refused_requests_total", (("reason", "overloaded"),)) in fams[
            "modeltel_collector_refused_requests"
        ]["samples"]


def test_exporter_retries_through_overload() -> None:
    with running_collector(max_queue_bytes=1) as c:
        gate, blocked = threading.Event(), threading.Event()
        process = c.pipeline._process
        c.pipeline._process = lambda *a: (blocked.set(), gate.wait(10), process(*a))
        url = c.urls["otlp_http"] + "/v1/traces"
        assert http_post(url, _request(1).SerializeToString(), PB)[0] == 200
        assert blocked.wait(10)  # the worker took the first request off the queue and now waits
        assert http_post(url, _request(1).SerializeToString(), PB)[0] == 200  # queue holds one
        tp = tracer_provider(c, "grpc")
        tp.get_tracer("t").start_span("retried").end()
        threading.Timer(0.5, gate.set).start()
        assert tp.force_flush(timeout_millis=20_000)  # refused with RetryInfo(1s), retried, accepted
        assert c.flush()
        names = [s["name"] for s in json.loads(http_get(c.urls["listen"] + "/api/traces?name=retried")[2])["traces"]]
        assert names == ["retried"]
        tp.shutdown()


def test_bearer_token_auth() -> None:
    with running_collector(auth_token="s3cret") as c:
        body = _request().SerializeToString()
        url = c.urls["otlp_http"] + "/v1/traces"
        assert http_post(url, body, PB)[0] == 401
        assert http_post(url, body, {**PB, "Authorization": "Bearer wrong"})[0] == 401
        assert http_post(url, body, {**PB, "Authorization": "Bearer s3cret"})[0] == 200
        with pytest.raises(grpc.RpcError) as err:
            _grpc_export(c, body)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        _grpc_export(c, body, metadata=(("authorization", "Bearer s3cret"),))
        assert http_get(c.urls["listen"] + "/api/traces")[0] == 401
        assert http_get(c.urls["listen"] + "/api/traces", {"Authorization": "Bearer s3cret"})[0] == 200


def test_cli_sigterm_drains_and_config_precedence(tmp_path) -> None:
    cfg = tmp_path / "collector.toml"
    db = tmp_path / "traces.db"
    cfg.write_text(f'[collector]\notlp_http = "127.0.0.1:0"\notlp_grpc = "127.0.0.1:1"\ntrace_db = "{db}"\n')
    ready = tmp_path / "ready.json"
    env = {**os.environ, "MODELTEL_COLLECTOR_LISTEN": "127.0.0.1:0", "MODELTEL_COLLECTOR_OTLP_GRPC": "127.0.0.1:2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modeltel_collector", "--config", str(cfg), "--otlp-grpc", "127.0.0.1:0",
         "--ready-file", str(ready)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        assert set(info["ports"]) == {"listen", "otlp_http", "otlp_grpc"}  # CLI beat env, env beat file
        body = _request(50).SerializeToString()
        for _ in range(20):
            assert http_post(info["urls"]["otlp_http"] + "/v1/traces", body, PB)[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT SUM(span_count) FROM traces").fetchone()[0] == 1000


def test_trace_store_bounded_by_size_and_age() -> None:
    # one write per request (flushed each time): past 100 spans the oldest writes go until 10% under the
    # bound, so the count steps 100 -> 110 -> 90 -> 100 -> ... and ends at 100, the last ten requests
    with running_collector(trace_max_spans=100) as c:
        sent = []
        for _ in range(30):
            sent.append(_request(10))
            assert http_post(c.urls["otlp_http"] + "/v1/traces", sent[-1].SerializeToString(), PB)[0] == 200
            assert c.flush() and c.spans.count <= 100
        assert _stored(c) == 100
        kept = {t for t in _trace_ids(sent) if c.spans.get_trace(t, 1)}
        assert kept == set(_trace_ids(sent[-10:]))
    with running_collector(trace_max_age_s=60.0) as c:  # prune "later" by handing it a later clock
        assert http_post(c.urls["otlp_http"] + "/v1/traces", _request(7).SerializeToString(), PB)[0] == 200
        c.flush()
        after_first = time.time_ns()
        while (between := time.time_ns()) == after_first:  # a clock tick later than the first write
            pass
        assert http_post(c.urls["otlp_http"] + "/v1/traces", _request(3).SerializeToString(), PB)[0] == 200
        c.flush()  # writer idle after flush: pruning from here is safe
        assert c.spans.prune() == 0  # nothing is 60 s old yet
        assert c.spans.prune(now_ns=between + 60 * 10**9) == 7  # 60 s after the first write, before the second
        assert c.spans.count == 3


def _trace_ids(requests) -> list[bytes]:
    return [sp.trace_id for r in requests for sp in r.resource_spans[0].scope_spans[0].spans]


def test_tls_on_both_receivers(tmp_path) -> None:
    cert, key = self_signed_cert(tmp_path)
    with running_collector(tls_cert=str(cert), tls_key=str(key)) as c:
        assert c.urls["otlp_http"].startswith("https://")
        ctx = ssl.create_default_context(cafile=str(cert))
        req = urllib.request.Request(c.urls["otlp_http"] + "/v1/traces", data=_request().SerializeToString(),
                                     headers=PB, method="POST")  # fmt: skip
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            assert resp.status == 200
        creds = grpc.ssl_channel_credentials(cert.read_bytes())
        with grpc.secure_channel(c.urls["otlp_grpc"], creds) as ch:
            ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")(
                _request().SerializeToString(), timeout=10
            )
        assert _stored(c) == 6
