"""Per-prediction cost of monitoring a three-stage handler, every variant measured in the same run.

(a) uninstrumented; (b) the monitoring spec's prometheus_client decorator; (c) plain OpenTelemetry SDK
calls doing the same job (root + 3 stage spans, 4 histogram records, 1 counter); (d) modeltel with
spans not sampled (metrics only); (e) modeltel fully traced. Exporters are in-memory / no-op so the
figures are the instrumentation's own cost; spans go through a BatchSpanProcessor, as in production.
Run: ``python benchmarks/overhead.py [--n 20000]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import modeltel
from modeltel import taxonomy as tx
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


def plain_otel() -> Callable[[], int]:
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(_NullExporter()))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
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

    return predict


def modeltel_variant(sampler: str) -> Callable[[], int]:
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
    )
    t = modeltel.telemetry()

    @t.monitor_prediction()
    def predict() -> int:
        with t.stage("preprocess"):
            _work()
        with t.stage("inference"):
            _work()
        with t.stage("postprocess"):
            return _work()

    return predict


def measure(fn: Callable[[], int], n: int, repeats: int, clock: Callable[[], float]) -> float:
    """Best-of-``repeats`` mean µs per call (the minimum is the least noisy estimate on a shared box)."""
    for _ in range(min(n, 2000)):
        fn()
    runs = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        start = clock()
        for _ in range(n):
            fn()
        runs.append((clock() - start) / n * 1e6)
        gc.enable()
    return min(runs)


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
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    variants = {
        "(a) uninstrumented": uninstrumented(),
        "(b) spec prometheus_client": spec_prometheus_client(),
        "(c) plain OpenTelemetry SDK": plain_otel(),
        "(d) modeltel, metrics only": modeltel_variant("parentbased_always_off"),
    }
    results = {name: measure(fn, args.n, args.repeats, clock) for name, fn in variants.items()}
    traced = modeltel_variant("parentbased_always_on")
    results["(e) modeltel, fully traced"] = measure(traced, args.n, args.repeats, clock)
    modeltel.shutdown()
    a = results["(a) uninstrumented"]
    b = results["(b) spec prometheus_client"]
    c = results["(c) plain OpenTelemetry SDK"]
    print(f"clock: {args.clock}; best of {args.repeats} runs of {args.n} predictions")
    print(f"{'variant':32} {'µs/pred':>9} {'added µs':>9} {'x (a)':>7} {'x (b)':>7} {'x (c)':>7}")
    for name, us in results.items():
        print(f"{name:32} {us:9.2f} {us - a:9.2f} {us / a:7.1f} {us / b:7.2f} {us / c:7.2f}")
    stats = results["(d) modeltel, metrics only"], results["(e) modeltel, fully traced"]
    print(f"\ngoal (d) <= 10 µs: {stats[0]:.1f} µs; goal (e) <= 50 µs: {stats[1]:.1f} µs")
    print(f"(d) saves {1 - stats[0] / c:.0%} of (c); median of variants {statistics.median(results.values()):.1f} µs")


if __name__ == "__main__":
    main()
