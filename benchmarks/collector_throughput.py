"""Drive ``modeltel collector`` with the real OTel OTLP exporters over HTTP and gRPC and print throughput.

The collector runs in its own process (so it has one core to itself on a 2-core machine); this process
re-exports pre-built batches of SDK spans / metric data with OTLPSpanExporter / OTLPMetricExporter, the
same code path as an instrumented app's BatchSpanProcessor and PeriodicExportingMetricReader. Reported:
spans/s and metric points/s accepted (exports answered 200/OK), the rate fully processed (merged and
written to SQLite, read back from the collector's self-metrics), collector CPU-seconds used, and p50/p99
export latency.

    python benchmarks/collector_throughput.py [--seconds 10] [--batch 512] [--clients 1]
    python benchmarks/collector_throughput.py --console compare   # what the web console costs ingest
    python benchmarks/collector_throughput.py --console poll-cost # collector CPU per console document
    python benchmarks/collector_throughput.py --analytics compare # what the degradation detectors cost

``--console compare`` runs everything three times, each against a fresh collector: with the console
off (no metric history), on but unwatched (the history sampler only), and open (the history plus a
poller fetching what the polling pages fetch, ``--poll-s`` apart: the models and model documents; a
trace search runs only when a user searches), and prints each run's processed rate, and processed
items per collector CPU-second (steadier on a shared machine), as ratios of the console-off run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import grpc
import psutil
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modeltel import taxonomy as tx


def make_spans(n: int) -> list:
    """n spans shaped like modeltel's: 1 prediction root + 3 stage children per request."""
    mem = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "bench", "service.instance.id": "b1"}))
    tp.add_span_processor(SimpleSpanProcessor(mem))
    tracer = tp.get_tracer(tx.TRACER_NAME, "0.1.0")
    model = {tx.ATTR_MODEL_NAME: "iris", tx.ATTR_MODEL_VERSION: "v1"}
    while len(mem.get_finished_spans()) < n:
        with tracer.start_as_current_span("predict", attributes={tx.SPAN_ATTR_KIND: "prediction", **model}):
            for stage in (*tx.CANONICAL_STAGES,):
                attrs = {tx.SPAN_ATTR_KIND: "stage", tx.SPAN_ATTR_STAGE: stage, **model}
                with tracer.start_as_current_span(stage, attributes=attrs):
                    pass
    return list(mem.get_finished_spans()[:n])


def make_metrics(series: int):
    """One collection of `series` histogram + counter streams (what one periodic export carries)."""
    reader = InMemoryMetricReader()
    mp = MeterProvider(resource=Resource.create({"service.name": "bench", "service.instance.id": "b1"}),
                       metric_readers=[reader])  # fmt: skip
    meter = mp.get_meter(tx.METER_NAME)
    hist = meter.create_histogram(tx.STAGE_LATENCY.otel_name, unit="s",
                                  explicit_bucket_boundaries_advisory=list(tx.LATENCY_BUCKETS_SECONDS))  # fmt: skip
    counter = meter.create_counter(tx.PREDICTIONS.otel_name, unit=tx.PREDICTIONS.unit)
    for i in range(series):
        attrs = {tx.ATTR_MODEL_NAME: f"m{i}", tx.ATTR_MODEL_VERSION: "v1", tx.ATTR_STAGE: "inference"}
        hist.record(0.01 * (i % 50), attrs)
        counter.add(1, {**attrs, tx.ATTR_STATUS: "success"})
    data = reader.get_metrics_data()
    points = sum(len(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
    return data, points


def start_collector(tmp: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, dict]:
    ready = os.path.join(tmp, "ready.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modeltel_collector", "--otlp-http", "127.0.0.1:0", "--otlp-grpc", "127.0.0.1:0",
         "--listen", "127.0.0.1:0", "--trace-db", os.path.join(tmp, "traces.db"), "--ready-file", ready],
        stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not os.path.exists(ready) or not os.path.getsize(ready):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("collector did not start")
        time.sleep(0.05)
    with open(ready) as f:
        return proc, json.load(f)["urls"]


def self_metric(listen: str, name: str) -> float:
    text = urllib.request.urlopen(listen + "/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def queue_depth(listen: str) -> int:
    with urllib.request.urlopen(listen + "/healthz", timeout=10) as resp:
        return json.load(resp)["queue_depth"]


def drive(exports: list, items_per_call: int, seconds: float) -> tuple[int, int, list[float]]:
    """Call each export function in its own thread until time is up; one thread per client."""
    ok = failed = 0
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def loop(export) -> None:
        nonlocal ok, failed
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            success = export()
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                ok += items_per_call if success else 0
                failed += 0 if success else items_per_call

    threads = [threading.Thread(target=loop, args=(e,)) for e in exports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ok, failed, latencies


def raw_sender(protocol: str, urls: dict, body: bytes):
    """Replay one exporter-encoded request as fast as possible (measures the collector, not the client)."""
    if protocol == "http":
        host, port = urls["otlp_http"].removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port))

        def send() -> bool:
            conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200

        return send
    channel = grpc.insecure_channel(urls["otlp_grpc"])
    call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")

    def send_grpc() -> bool:
        try:
            call(body, timeout=30)
            return True
        except grpc.RpcError:
            return False

    return send_grpc


def run(protocol: str, signal: str, args, urls: dict, proc: psutil.Process) -> dict:
    closers = []
    if signal == "traces-raw":
        body = encode_spans(make_spans(args.batch)).SerializeToString()
        n, exports = args.batch, [raw_sender(protocol, urls, body) for _ in range(args.raw_clients)]
        counter = "modeltel_collector_received_spans_total"
    elif signal == "traces":
        batch, n, exports = make_spans(args.batch), args.batch, []
        for _ in range(args.clients):
            if protocol == "http":
                exporter = HttpSpanExporter(endpoint=urls["otlp_http"] + "/v1/traces")
            else:
                exporter = GrpcSpanExporter(endpoint=urls["otlp_grpc"], insecure=True)
            exports.append(lambda e=exporter: e.export(batch) is SpanExportResult.SUCCESS)
            closers.append(exporter.shutdown)
        counter = "modeltel_collector_received_spans_total"
    else:
        (data, n), exports = make_metrics(args.series), []
        for _ in range(args.clients):
            if protocol == "http":
                exporter = HttpMetricExporter(endpoint=urls["otlp_http"] + "/v1/metrics")
            else:
                exporter = GrpcMetricExporter(endpoint=urls["otlp_grpc"], insecure=True)
            exports.append(lambda e=exporter: e.export(data) is MetricExportResult.SUCCESS)
            closers.append(exporter.shutdown)
        counter = "modeltel_collector_received_metric_points_total"
    before = self_metric(urls["listen"], counter)
    cpu0, t0 = sum(proc.cpu_times()[:2]), time.perf_counter()
    ok, failed, lat = drive(exports, n, args.seconds)
    accepted_s = time.perf_counter() - t0
    rss_mb = proc.memory_info().rss / 2**20
    while queue_depth(urls["listen"]) > 0:  # /healthz: cheap, unlike rendering /metrics
        time.sleep(0.1)
    processed_s = time.perf_counter() - t0
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    processed = self_metric(urls["listen"], counter) - before
    for close in closers:
        close()
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
    return {
        "protocol": protocol, "signal": signal, "per_export": n, "accepted_per_s": ok / accepted_s,
        "processed_per_s": processed / processed_s, "per_cpu_s": processed / cpu if cpu else 0.0,
        "refused": failed, "rss_mb": rss_mb, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000,
    }  # fmt: skip


CONSOLE_PAGES = (  # what the console's polling pages fetch: the models table and a model's charts
    "/api/v1/console/models",
    "/api/v1/console/model?name=iris&version=v1",
)
TRACE_SEARCH = "/api/traces?model=iris&sort=recent&limit=100"  # the Traces page, once per search


class ConsolePoller(threading.Thread):
    """Fetch what an open console page fetches, every ``interval`` seconds, until stopped."""

    def __init__(self, listen: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.listen, self.interval, self.stop, self.fetches = listen, interval, threading.Event(), 0

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            for path in CONSOLE_PAGES:
                with urllib.request.urlopen(self.listen + path, timeout=30) as resp:
                    resp.read()
                self.fetches += 1


def run_all(args, env: dict[str, str] | None = None, poll_s: float = 0.0, label: str = "") -> list[dict]:
    """One fresh collector; every requested signal over both protocols; one printed row per run."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        collector, urls = start_collector(tmp, env)
        poller = ConsolePoller(urls["listen"], poll_s) if poll_s else None
        if poller is not None:
            poller.start()
        try:
            proc = psutil.Process(collector.pid)
            for signal in args.signals.split(","):
                for protocol in ("http", "grpc"):
                    r = run(protocol, signal, args, urls, proc)
                    results.append(r)
                    print(f"{label}{signal:10} {protocol:5} {r['per_export']:>10} {r['accepted_per_s']:>11.0f} "
                          f"{r['processed_per_s']:>12.0f} {r['per_cpu_s']:>10.0f} {r['refused']:>8} "
                          f"{r['rss_mb']:>7.0f} "
                          f"{r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f}", flush=True)  # fmt: skip
        finally:
            if poller is not None:
                poller.stop.set()
                poller.join()
            collector.terminate()
            collector.wait(timeout=30)
    return results


COMPARISONS = {  # --compare: (mode, collector environment, console poll interval or None for --poll-s)
    "console": (
        ("off", {"MODELTEL_COLLECTOR_CONSOLE": "false"}, 0.0),
        ("on", {"MODELTEL_COLLECTOR_CONSOLE": "true"}, 0.0),
        ("open", {"MODELTEL_COLLECTOR_CONSOLE": "true"}, None),
    ),
    "analytics": (
        ("off", {"MODELTEL_COLLECTOR_ANALYTICS": "false"}, 0.0),
        ("on", {"MODELTEL_COLLECTOR_ANALYTICS": "true"}, 0.0),
    ),
}


def compare(args, what: str) -> None:
    """Each mode of ``COMPARISONS[what]`` in turn, ``--repeat`` rounds, as ratios of the first ("off").

    Each ratio is taken within its round (then the median over rounds), so load from elsewhere on the
    machine hits every mode alike.
    """
    modes = [(name, env, args.poll_s if poll is None else poll) for name, env, poll in COMPARISONS[what]]
    rounds = [{name: run_all(args, env, poll, f"{name:5} ") for name, env, poll in modes} for _ in range(args.repeat)]
    others = [name for name, _, _ in modes[1:]]
    print(f"\nmedian of {args.repeat} rounds, relative to {what} off (open: pages polled every {args.poll_s:g} s):")
    head = [f"processed/s {m}" for m in others] + [f"per CPU-s {m}" for m in others]
    print(f"  {'signal':10} {'proto':5} " + " ".join(f"{h:>16}" for h in head) + "  RSS MB " + "/".join(rounds[0]))
    for i, base in enumerate(rounds[0]["off"]):

        def ratio(mode: str, key: str, i: int = i) -> float:
            return statistics.median(r[mode][i][key] / r["off"][i][key] for r in rounds)

        cells = [ratio(m, "processed_per_s") for m in others] + [ratio(m, "per_cpu_s") for m in others]
        rss = "/".join(f"{statistics.median(r[m][i]['rss_mb'] for r in rounds):.0f}" for m in rounds[0])
        print(f"  {base['signal']:10} {base['protocol']:5} " + " ".join(f"{c:>16.3f}" for c in cells) + f"  {rss}")


def poll_cost(args) -> None:
    """Collector CPU per console document, with a full ring: 720 samples (what 1 h at 5 s holds),
    filled in 7 s by sampling every 10 ms while traces and metrics arrive."""
    env = {"MODELTEL_COLLECTOR_CONSOLE_STEP_S": "0.01", "MODELTEL_COLLECTOR_CONSOLE_HISTORY_S": "7.2"}
    with tempfile.TemporaryDirectory() as tmp:
        collector, urls = start_collector(tmp, env)
        try:
            proc = psutil.Process(collector.pid)
            fill = argparse.Namespace(**{**vars(args), "seconds": 4.0})
            for signal in ("traces", "metrics"):
                run("http", signal, fill, urls, proc)
            for path in (*CONSOLE_PAGES, TRACE_SEARCH):
                cpu0 = sum(proc.cpu_times()[:2])
                t0 = time.perf_counter()
                for _ in range(50):
                    with urllib.request.urlopen(urls["listen"] + path, timeout=30) as resp:
                        size = len(resp.read())
                cpu = (sum(proc.cpu_times()[:2]) - cpu0) / 50
                wall = (time.perf_counter() - t0) / 50
                print(f"  {path:45} {size / 1024:6.1f} KiB  CPU {cpu * 1e3:6.2f} ms  wall {wall * 1e3:6.2f} ms")
        finally:
            collector.terminate()
            collector.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=512, help="spans per export (BatchSpanProcessor default)")
    ap.add_argument("--series", type=int, default=500, help="metric streams per export")
    ap.add_argument("--clients", type=int, default=1, help="concurrent exporters per run")
    ap.add_argument("--signals", default="traces,metrics,traces-raw", help="runs to do, comma-separated")
    ap.add_argument("--raw-clients", type=int, default=2, help="concurrent senders for the traces-raw runs")
    ap.add_argument("--console", choices=("default", "compare", "poll-cost"), default="default",
                    help="compare: run with the web console off, on, and open (polled); "
                         "poll-cost: collector CPU per console document")  # fmt: skip
    ap.add_argument("--analytics", choices=("default", "compare"), default="default",
                    help="compare: run with the degradation detectors off and on")  # fmt: skip
    ap.add_argument("--poll-s", type=float, default=1.0, help="poll interval of the open console (a page polls 5 s)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the compare runs")
    args = ap.parse_args()
    if args.console == "poll-cost":
        poll_cost(args)
        return
    what = "console" if args.console == "compare" else "analytics" if args.analytics == "compare" else ""
    label = f"{'mode ':6}" if what else ""
    print(f"{label}{'signal':10} {'proto':5} {'per export':>10} {'accepted/s':>11} {'processed/s':>12} "
          f"{'per CPU-s':>10} {'refused':>8} {'RSS MB':>7} {'p50 ms':>7} {'p99 ms':>7}")  # fmt: skip
    if what:
        compare(args, what)
    else:
        run_all(args)


if __name__ == "__main__":
    main()
