"""Peak collector RSS under oversized concurrent load: many 6-8 MiB OTLP/HTTP requests and 7.9 MiB gRPC calls.

The collector runs with its default limits in its own process; this one sends, for ``--seconds``, from
``--http-clients`` keep-alive HTTP senders and ``--grpc-calls`` concurrent gRPC callers, and samples the
collector's RSS every 50 ms. Printed: idle RSS (the baseline), peak RSS and the ratio, requests accepted
and refused (429 / RESOURCE_EXHAUSTED) per protocol, and how long the backlog took to be written after.
Every queue and in-flight buffer is bounded in bytes, so peak RSS must stay flat however many clients.

    python benchmarks/collector_memory.py [--seconds 30] [--http-clients 16] [--grpc-calls 64]
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import threading
import time

import grpc
import psutil
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from collector_throughput import queue_depth, self_metric, start_collector


def trace_request(n_spans: int, span_bytes: int = 0, service: str = "memory-bench", **span_fields) -> bytes:
    """An encoded trace request of ``n_spans`` one-span traces, each with ``span_bytes`` of attribute."""
    now = time.time_ns()
    pad = [KeyValue(key="pad", value=AnyValue(string_value="x" * span_bytes))] if span_bytes else []
    fields = {"start_time_unix_nano": now, "end_time_unix_nano": now + 1000, **span_fields}
    spans = [
        trace_pb2.Span(trace_id=os.urandom(16), span_id=os.urandom(8), name="s", attributes=pad, **fields)
        for _ in range(n_spans)
    ]
    res = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))])
    rs = trace_pb2.ResourceSpans(resource=res, scope_spans=[trace_pb2.ScopeSpans(spans=spans)])
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[rs]).SerializeToString()


def big_request(mib: float, span_bytes: int = 4000) -> bytes:
    """A trace request of about ``mib`` MiB: one-span traces with a padded attribute."""
    return trace_request(int(mib * 2**20 / (span_bytes + 60)), span_bytes)


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, int] = {}

    def add(self, key: str) -> None:
        with self.lock:
            self.values[key] = self.values.get(key, 0) + 1


def http_client(url: str, bodies: list[bytes], stop: threading.Event, counts: Counts) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn, i = None, 0
    while not stop.is_set():
        try:
            conn = conn or http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request("POST", "/v1/traces", body=bodies[i % len(bodies)],
                         headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
            resp = conn.getresponse()
            resp.read()
            counts.add(f"http {resp.status}")
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
            if resp.status == 429:
                time.sleep(0.2)  # exporters back off (Retry-After); a tight loop would only measure the client
        except OSError as e:
            counts.add(f"http {type(e).__name__}")
            conn = None
        i += 1


def grpc_caller(target: str, body: bytes, stop: threading.Event, counts: Counts) -> None:
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        call = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        while not stop.is_set():
            try:
                call(body, timeout=60)
                counts.add("grpc OK")
            except grpc.RpcError as e:
                counts.add(f"grpc {e.code().name}")
                time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--http-clients", type=int, default=16)
    ap.add_argument("--grpc-calls", type=int, default=64)
    args = ap.parse_args()
    bodies = [big_request(mib) for mib in (6.0, 7.0, 7.9)]
    grpc_body = big_request(7.9)
    with tempfile.TemporaryDirectory() as tmp:
        collector, urls = start_collector(tmp)
        proc = psutil.Process(collector.pid)
        try:
            time.sleep(1.0)
            idle = proc.memory_info().rss
            peak, stop, counts = idle, threading.Event(), Counts()
            threads = [threading.Thread(target=http_client, args=(urls["otlp_http"], bodies, stop, counts))
                       for _ in range(args.http_clients)]  # fmt: skip
            threads += [threading.Thread(target=grpc_caller, args=(urls["otlp_grpc"], grpc_body, stop, counts))
                        for _ in range(args.grpc_calls)]  # fmt: skip
            for t in threads:
                t.start()
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                peak = max(peak, proc.memory_info().rss)
                time.sleep(0.05)
            stop.set()
            t0 = time.monotonic()
            while queue_depth(urls["listen"]) > 0:
                peak = max(peak, proc.memory_info().rss)
                time.sleep(0.05)
            drain_s = time.monotonic() - t0
            for t in threads:
                t.join()
            stored = self_metric(urls["listen"], "modeltel_collector_stored_spans")
            print(f"load: {args.http_clients} HTTP clients x 6-8 MiB, {args.grpc_calls} gRPC calls x 7.9 MiB, "
                  f"{args.seconds:.0f} s")  # fmt: skip
            print(f"idle RSS {idle / 2**20:.0f} MB, peak RSS {peak / 2**20:.0f} MB ({peak / idle:.1f}x idle)")
            print("answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.values.items())))
            print(f"spans stored {stored:.0f}; backlog written {drain_s:.1f} s after the load stopped")
        finally:
            collector.terminate()
            collector.wait(timeout=60)


if __name__ == "__main__":
    main()
