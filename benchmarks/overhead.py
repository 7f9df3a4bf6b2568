"""Per-prediction cost of monitoring a three-stage handler, every variant measured in the same run.

(a) uninstrumented; (b) the monitoring spec's prometheus_client decorator; (c) plain OpenTelemetry SDK
calls doing the same job (root + 3 stage spans, 4 histogram records, 1 counter), fully traced; (c0) the same
calls with the trace not sampled (metrics only: the spans are the SDK's non-recording ones); (d) modeltel
with spans not sampled (metrics only); (e) modeltel fully traced; (f) (d) with ``keep_slow_and_failed``:
every prediction's spans are built and held, then dropped (none is slow or fails), the option's cost.
Like compares with like: (d) with (c0), metrics only both; (e) with (c), both fully traced.
Exporters are in-memory / no-op so the figures are the instrumentation's own cost; spans go through a
BatchSpanProcessor, as in production.

``--export http,grpc`` adds what users pay in production: (d) and (e) again, their spans and metrics
exported over OTLP to a null receiver in another process (``otlp_receiver.py``), once with the upstream
encoder (``MODELTEL_OTLP_ENCODER=upstream``) and once with modeltel's. Each timed run ends with a flush, so
every span it made is encoded and sent inside the run; the span queue is large enough that none is dropped
(checked); metrics are exported every second. With ``--clock cpu`` (the default) the figure is the CPU
time of the whole process per prediction, the export threads (and gRPC's) included. The timed loops run
with the garbage collector on, as an application does, and its share is printed as a column of its own
("of it GC"; figures before part 3's fourth round in docs/performance.md had it off: they left it out).
Run: ``python benchmarks/overhead.py [--n 20000] [--export http,grpc]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

import modeltel
from modeltel import taxonomy as tx
from modeltel.export import otlp
from modeltel.export.delivery import CountingMetricExporter, CountingSpanExporter
from modeltel.export.readers import InMemoryReader


class _NullExporter(SpanExporter):
    def export(self, spans):  # type: ignore[no-untyped-def]
        return SpanExportResult.SUCCESS


def _work() -> int:
    return 1


def uninstrumented() -> Callable[[], int]:
    def predict() -> int:
        _work()
        _work()
        return _work()

    return predict


def spec_prometheus_client() -> Callable[[], int]:
    from functools import wraps

    from prometheus_client import CollectorRegistry, Counter, Histogram

    reg = CollectorRegistry()
    latency = Histogram(
        "model_prediction_latency_seconds", "", buckets=[0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0], registry=reg
    )
    counter = Counter("model_predictions_total", "", ["model_name", "model_version", "status"], registry=reg)

    def monitor(func: Callable[[], int]) -> Callable[[], int]:
        @wraps(func)
        def wrapper() -> int:
            start = time.time()
            status = "success"
            try:
                return func()
            except Exception:
                status = "error"
                raise
            finally:
                latency.observe(time.time() - start)
                counter.labels(model_name="bench", model_version="1", status=status).inc()

        return wrapper

    return monitor(uninstrumented())


def plain_otel(
    span_exporter: SpanExporter | None = None, metric_reader: MetricReader | None = None, *, sampled: bool = True
) -> Callable[[], int]:
    """The same job in SDK calls; ``sampled=False`` samples no trace, as (d) does, so only metrics are recorded."""
    tp = TracerProvider(sampler=ParentBased(ALWAYS_ON if sampled else ALWAYS_OFF))
    tp.add_span_processor(BatchSpanProcessor(span_exporter or _NullExporter()))
    mp = MeterProvider(metric_readers=[metric_reader or InMemoryMetricReader()])
    tracer = tp.get_tracer("bench")
    meter = mp.get_meter("bench")
    lat = meter.create_histogram("model.prediction.latency", unit="s")
    stage_lat = meter.create_histogram("model.stage.latency", unit="s")
    preds = meter.create_counter("model.predictions")
    attrs = {"model.name": "bench", "model.version": "1"}
    stage_attrs = {s: {**attrs, "stage": s} for s in tx.CANONICAL_STAGES}
    ok = {**attrs, "status": "success"}

    def predict() -> int:
        t0 = time.perf_counter()
        with tracer.start_as_current_span("predict", attributes=attrs):
            for s in tx.CANONICAL_STAGES:
                t1 = time.perf_counter()
                with tracer.start_as_current_span(s, attributes=stage_attrs[s]):
                    result = _work()
                stage_lat.record(time.perf_counter() - t1, stage_attrs[s])
            lat.record(time.perf_counter() - t0, attrs)
            preds.add(1, ok)
        return result

    predict.flush = tp.force_flush  # type: ignore[attr-defined]
    predict.close = lambda: (tp.shutdown(), mp.shutdown())  # type: ignore[attr-defined]
    return predict


def modeltel_variant(sampler: str, *, keep_slow_and_failed: bool = False) -> Callable[[], int]:
    modeltel.shutdown()
    modeltel.init(
        set_global=False,
        metric_readers=[InMemoryReader()],
        span_processors=[BatchSpanProcessor(_NullExporter())],
        traces_exporter="none",
        metrics_exporter="none",
        host_metrics=False,
        gpu_metrics=False,
        sampler=sampler,
        model_name="bench",
        model_version="1",
        keep_slow_and_failed=keep_slow_and_failed,
    )
    return modeltel_variant_predict(modeltel.telemetry())


def modeltel_variant_predict(t: modeltel.Telemetry) -> Callable[[], int]:
    @t.monitor_prediction()
    def predict() -> int:
        with t.stage("preprocess"):
            _work()
        with t.stage("inference"):
            _work()
        with t.stage("postprocess"):
            return _work()

    return predict


@contextmanager
def null_receiver() -> Iterator[tuple[int, int]]:
    """The (HTTP, gRPC) ports of a null OTLP receiver in a child process."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "otlp_receiver.py")
    child = subprocess.Popen([sys.executable, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        http_port, grpc_port = map(int, child.stdout.readline().split())
        yield http_port, grpc_port
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)


def _endpoint(protocol: str, port: int, signal: str) -> str:
    return f"http://127.0.0.1:{port}" + ("" if protocol == "grpc" else f"/v1/{signal}")


def plain_otel_export(protocol: str, encoder: str, port: int, *, sampled: bool = True) -> Callable[[], int]:
    """(c) or (c0) with its spans and metrics exported over OTLP by the upstream exporter or modeltel's."""
    spans = CountingSpanExporter(
        otlp.span_exporter_class(protocol, encoder)(endpoint=_endpoint(protocol, port, "traces"))
    )
    metrics = CountingMetricExporter(
        otlp.metric_exporter_class(protocol, encoder)(endpoint=_endpoint(protocol, port, "metrics"))
    )
    reader = PeriodicExportingMetricReader(metrics, export_interval_millis=1000)
    predict = plain_otel(spans, reader, sampled=sampled)
    predict.undelivered = lambda: spans.undelivered() + metrics.undelivered()  # type: ignore[attr-defined]
    return predict


def export_pipeline(sampler: str, protocol: str, port: int, **options: Any) -> Any:
    """The pipeline modeltel builds by default, exporting over OTLP to the null receiver on ``port``."""
    modeltel.shutdown()
    pipeline = modeltel.init(
        set_global=False,
        traces_exporter="otlp",
        metrics_exporter="otlp",
        traces_protocol=protocol,
        metrics_protocol=protocol,
        traces_endpoint=_endpoint(protocol, port, "traces"),
        metrics_endpoint=_endpoint(protocol, port, "metrics"),
        metric_export_interval_ms=1000,
        host_metrics=False,
        gpu_metrics=False,
        sampler=sampler,
        model_name="bench",
        model_version="1",
        **options,
    )
    assert pipeline is not None
    return pipeline


def modeltel_export_variant(sampler: str, protocol: str, encoder: str, port: int) -> Callable[[], int]:
    """(d)/(e) exporting over OTLP: the pipeline modeltel builds by default, pointed at the null receiver."""
    pipeline = export_pipeline(sampler, protocol, port, otlp_encoder=encoder)
    predict = modeltel_variant_predict(pipeline.telemetry)
    predict.flush = pipeline.tracer_provider.force_flush  # type: ignore[attr-defined]
    exports = [e for e in (pipeline._span_export and pipeline._span_export[0], pipeline._metric_export) if e]
    predict.undelivered = lambda: sum(e.undelivered() for e in exports)  # type: ignore[attr-defined]
    return predict


def export_variants(protocols: list[str], ports: dict[str, int]) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(name, builder) of each exported variant; a builder runs only when its turn to be measured comes."""
    for protocol in protocols:
        tag = "gRPC" if protocol == "grpc" else "HTTP"
        port = ports[protocol]
        for letter, build in (
            ("(c) plain OTel SDK", lambda p, e, port=port: plain_otel_export(p, e, port)),
            ("(c0) plain, metrics", lambda p, e, port=port: plain_otel_export(p, e, port, sampled=False)),
            ("(d) metrics only", lambda p, e, port=port: modeltel_export_variant("parentbased_always_off", p, e, port)),
            ("(e) fully traced", lambda p, e, port=port: modeltel_export_variant("parentbased_always_on", p, e, port)),
        ):
            for encoder in ("upstream", "modeltel"):
                yield f"{letter}, {tag}, {encoder}", (lambda b=build, p=protocol, e=encoder: b(p, e))


class GcTime:
    """Time the garbage collector takes while a timed loop runs (``gc.callbacks``' start and stop, on the
    benchmark's clock), whichever thread triggers it: the loops run with the collector on, as in an
    application, so their figures include it, and this says how much of them it is."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.total = 0.0
        self._started = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = self.clock()
        else:
            self.total += self.clock() - self._started

    def __enter__(self) -> GcTime:
        gc.collect()  # every run starts from the same (empty) generations
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_gc)


def measure(fn: Callable[[], int], n: int, repeats: int, clock: Callable[[], float]) -> tuple[float, float]:
    """Best-of-``repeats`` mean µs per call (the minimum is the least noisy estimate on a shared box), with
    the collector on, and the µs per call of that run spent in the collector."""
    for _ in range(min(n, 2000)):
        fn()
    runs = []
    for _ in range(repeats):
        with GcTime(clock) as gc_time:
            start = clock()
            for _ in range(n):
                fn()
            flush = getattr(fn, "flush", None)
            if flush is not None:
                flush()  # the spans this run made are exported inside it
            elapsed = clock() - start
        runs.append((elapsed / n * 1e6, gc_time.total / n * 1e6))
    return min(runs)


def run_exported(args: argparse.Namespace, clock: Callable[[], float], a: float) -> None:
    """Measure the exported variants, each against the null receiver, and print them side by side."""
    os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "1000000")  # never drop: every span made is paid for
    protocols = ["grpc" if p == "grpc" else "http/protobuf" for p in args.export.split(",")]
    results: dict[str, tuple[float, float, int]] = {}
    with null_receiver() as (http_port, grpc_port):
        for name, build in export_variants(protocols, {"http/protobuf": http_port, "grpc": grpc_port}):
            predict = build()
            us, gc_us = measure(predict, args.export_n, args.repeats, clock)
            results[name] = (us, gc_us, predict.undelivered())
            getattr(predict, "close", modeltel.shutdown)()
    print(f"\nexported over OTLP to a null receiver in another process; best of {args.repeats} runs of {args.export_n}")
    print(f"{'variant':36} {'µs/pred':>9} {'of it GC':>9} {'added µs':>9} {'x upstream':>11} {'not sent':>9}")
    for name, (us, gc_us, lost) in results.items():
        upstream = results[name.replace("modeltel", "upstream")][0]
        print(f"{name:36} {us:9.2f} {gc_us:9.2f} {us - a:9.2f} {us / upstream:11.2f} {lost:9d}")
    for tag in ("HTTP" if "http/protobuf" in protocols else None, "gRPC" if "grpc" in protocols else None):
        if tag:
            d, e = results[f"(d) metrics only, {tag}, modeltel"][0], results[f"(e) fully traced, {tag}, modeltel"][0]
            c0, c = (
                results[f"(c0) plain, metrics, {tag}, modeltel"][0],
                results[f"(c) plain OTel SDK, {tag}, modeltel"][0],
            )
            print(f"goal over {tag}, export included: (d) <= 10 µs: {d:.1f} µs; (e) <= 50 µs (aim 40): {e:.1f} µs")
            print(f"  like with like over {tag}: (d) / (c0) = {d / c0:.2f}; (e) / (c) = {e / c:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="calls per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: this process's CPU time, all threads (other load on a shared machine does not count); "
        "wall: elapsed time",
    )
    parser.add_argument(
        "--export", default="", help="also measure exported variants: http, grpc or http,grpc (a null receiver)"
    )
    parser.add_argument("--export-n", type=int, default=5_000, help="calls per timed run of an exported variant")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    variants = {
        "(a) uninstrumented": uninstrumented(),
        "(b) spec prometheus_client": spec_prometheus_client(),
        "(c) plain OpenTelemetry SDK": plain_otel(),
        "(c0) plain OTel, metrics only": plain_otel(sampled=False),
        "(d) modeltel, metrics only": modeltel_variant("parentbased_always_off"),
    }
    results = {name: measure(fn, args.n, args.repeats, clock) for name, fn in variants.items()}
    traced = modeltel_variant("parentbased_always_on")
    results["(e) modeltel, fully traced"] = measure(traced, args.n, args.repeats, clock)
    held = modeltel_variant("parentbased_always_off", keep_slow_and_failed=True)
    results["(f) (d) + keep slow/failed"] = measure(held, args.n, args.repeats, clock)
    modeltel.shutdown()
    a = results["(a) uninstrumented"][0]
    b = results["(b) spec prometheus_client"][0]
    c, c0 = results["(c) plain OpenTelemetry SDK"][0], results["(c0) plain OTel, metrics only"][0]
    print(f"clock: {args.clock}; best of {args.repeats} runs of {args.n} predictions")
    head = f"{'variant':32} {'µs/pred':>9} {'of it GC':>9} {'added µs':>9} {'x (a)':>7} {'x (b)':>7} {'x (c)':>7}"
    print(f"{head} {'x (c0)':>7}")
    for name, (us, gc_us) in results.items():
        row = f"{name:32} {us:9.2f} {gc_us:9.2f} {us - a:9.2f} {us / a:7.1f} {us / b:7.2f} {us / c:7.2f}"
        print(f"{row} {us / c0:7.2f}")
    d, e = results["(d) modeltel, metrics only"][0], results["(e) modeltel, fully traced"][0]
    print(f"\ngoal (d) <= 10 µs: {d:.1f} µs; goal (e) <= 50 µs: {e:.1f} µs")
    print(f"like with like: metrics only, (d) / (c0) = {d / c0:.2f}; fully traced, (e) / (c) = {e / c:.2f}")
    if args.export:
        run_exported(args, clock, a)


if __name__ == "__main__":
    main()
