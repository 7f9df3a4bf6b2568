"""What a ``/metrics`` render costs per series: the scrape must fit Prometheus' timeout (10 s by default)
at whatever ``max_series`` lets clients grow, and the render holds the store's lock meanwhile.

Fills a store with span-derived series (a prediction latency histogram and a prediction counter per model
name, ``--per-resource`` model names per resource, so the per-resource bound stays out of the way) and
times renders in text and OpenMetrics. Prints seconds per render, microseconds and bytes per series, what
a full ``max_series`` store would take at that rate, and the longest wait for the store's lock seen by a
thread that takes it as ingest does (every millisecond) during the renders: what a scrape stalls ingest.

    python benchmarks/exposition.py [--series 20000] [--per-resource 400] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from modeltel import taxonomy as tx
from modeltel_collector.process.spanmetrics import process_traces
from modeltel_collector.serve.exposition import render
from modeltel_collector.store.metrics import MetricStore


def fill(store: MetricStore, series: int, per_resource: int) -> None:
    names = series // 2
    for first in range(0, names, per_resource):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = "bench"
        rs.resource.attributes.add(key="service.instance.id").value.string_value = f"i{first}"
        ss, now = rs.scope_spans.add(), time.time_ns()
        for i in range(first, min(first + per_resource, names)):
            sp = ss.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name="predict")
            sp.start_time_unix_nano, sp.end_time_unix_nano = now - 5_000_000, now
            sp.attributes.add(key=tx.SPAN_ATTR_KIND).value.string_value = tx.SPAN_KIND_PREDICTION
            sp.attributes.add(key=tx.ATTR_MODEL_NAME).value.string_value = f"model-{i}"
        process_traces(req, store)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=20_000)
    ap.add_argument("--per-resource", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    store = MetricStore()
    fill(store, args.series, args.per_resource)
    n = store.n_series
    print(f"{n} series (resources included), max_series {store.max_series}")
    for openmetrics in (False, True):
        best, size = float("inf"), 0
        with _LockWatch(store.lock) as watch:
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                size = len(render(store, None, openmetrics))
                best = min(best, time.perf_counter() - t0)
        fmt = "openmetrics" if openmetrics else "text 0.0.4"
        print(f"{fmt:12} {best:.3f} s per render, {best / n * 1e6:.1f} us and {size / n:.0f} B per series, "
              f"{size / 2**20:.1f} MiB; at max_series: {best / n * store.max_series:.1f} s, "
              f"{size / n * store.max_series / 2**20:.0f} MiB;"
              f" longest lock wait {watch.longest * 1e3:.0f} ms")  # fmt: skip


class _LockWatch:
    """A thread that takes ``lock`` every millisecond, as the ingest worker would, and keeps the longest wait."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock, self.longest, self.done = lock, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(0.001):
            t0 = time.perf_counter()
            with self.lock:
                self.longest = max(self.longest, time.perf_counter() - t0)

    def __enter__(self) -> _LockWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


if __name__ == "__main__":
    main()
