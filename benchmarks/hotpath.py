"""Issue 24's figures in one command: what a traced prediction costs through the public API with real
OTLP/HTTP export, with the span queue large and at its default, next to metrics only and upstream; then
every instrumentor against the same work by hand.

    python benchmarks/hotpath.py [--short] [--runs 7] [--n 20000] [--no-instrumentors]

Public API: ``@modeltel.monitor_prediction()`` around three ``modeltel.stage()`` blocks, exported over
OTLP/HTTP by the pipeline ``modeltel.init()`` builds, to a null receiver in another process
(``otlp_receiver.py``); metrics every second. Clock (``--clock``): wall time of the serving thread, or the
process's CPU time (export thread included), for ``--n`` calls and the flush that follows them (so what
was kept is also exported within the run), with the garbage collector on as in an application ("of it GC":
its share, also counted in the figure; figures before part 3's fourth round left it out). The variants take turns
within each run (a fresh pipeline for each), and the ratios are taken within a run, so that load on a
shared machine moves every figure together; the table gives the median and the range over the runs.
"Queue default" is ``OTEL_BSP_MAX_QUEUE_SIZE`` unset (2048): the application outruns the exporter, and
what the processor leaves out is counted ("shed": traces not started; "dropped": spans refused).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import instrumentors
from overhead import GcTime, export_pipeline, null_receiver, plain_otel_export, uninstrumented

import modeltel

GOALS = (
    "goals (issue 24): traced with export, queue default <= queue large (overload costs no more); "
    "traced with export <= 30 µs (aim 25); metrics only <= 7 µs; every wrapper <= +2 µs over the same work by hand"
)
LARGE = "1000000"


def _public_api(sampler: str, queue: str | None, port: int) -> Callable[[], int]:
    """The application as users write it, over the pipeline modeltel builds by default (HTTP export)."""
    os.environ.pop("OTEL_BSP_MAX_QUEUE_SIZE", None)
    if queue is not None:
        os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = queue
    pipeline = export_pipeline(sampler, "http/protobuf", port)

    @modeltel.monitor_prediction()
    def predict() -> int:
        with modeltel.stage("preprocess"):
            x = 1
        with modeltel.stage("inference"):
            x += 1
        with modeltel.stage("postprocess"):
            return x

    processor = pipeline._span_export[1] if pipeline._span_export else None
    admission = getattr(processor, "admission", None)  # modeltel's shedding processor, where there is one
    predict.flush = pipeline.tracer_provider.force_flush  # type: ignore[attr-defined]
    predict.close = modeltel.shutdown  # type: ignore[attr-defined]
    predict.left_out = lambda: admission.counts() if admission is not None else None  # type: ignore[attr-defined]
    return predict


def _upstream(queue: str | None, port: int, *, sampled: bool = True) -> Callable[[], int]:
    """Plain OpenTelemetry SDK calls doing the same job, exported by the upstream OTLP/HTTP exporter."""
    os.environ.pop("OTEL_BSP_MAX_QUEUE_SIZE", None)
    if queue is not None:
        os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = queue
    predict = plain_otel_export("http/protobuf", "upstream", port, sampled=sampled)
    predict.left_out = lambda: None  # type: ignore[attr-defined]
    return predict


def variants(port: int) -> dict[str, Callable[[], Callable[[], int]]]:
    return {
        "uninstrumented": lambda: uninstrumented(),
        "modeltel metrics only, export": lambda: _public_api("parentbased_always_off", LARGE, port),
        "modeltel traced, queue large": lambda: _public_api("parentbased_always_on", LARGE, port),
        "modeltel traced, queue default": lambda: _public_api("parentbased_always_on", None, port),
        "upstream SDK traced, queue large": lambda: _upstream(LARGE, port),
        "upstream SDK traced, queue default": lambda: _upstream(None, port),
    }


def one_run(build: Callable[[], Callable[[], int]], n: int, clock: Callable[[], float]) -> tuple[float, float, Any]:
    """µs per call of a fresh variant (warmed up first), of it µs in the garbage collector, and what its
    processor left out."""
    fn = build()
    flush = getattr(fn, "flush", lambda: None)
    for _ in range(min(n, 2000)):
        fn()
    flush()
    left_out = getattr(fn, "left_out", lambda: None)
    before = left_out()
    with GcTime(clock) as gc_time:
        start = clock()
        for _ in range(n):
            fn()
        flush()
        elapsed = clock() - start
    after = left_out()
    getattr(fn, "close", lambda: None)()
    shed = None if after is None else {k: v - (before or {}).get(k, 0) for k, v in after.items()}
    return elapsed / n * 1e6, gc_time.total / n * 1e6, shed


def public_api_table(runs: int, n: int, clock: str) -> None:
    timer = time.perf_counter if clock == "wall" else time.process_time
    with null_receiver() as (http_port, _):
        builders = variants(http_port)
        samples: dict[str, list[float]] = {name: [] for name in builders}
        in_gc: dict[str, list[float]] = {name: [] for name in builders}
        left: dict[str, Any] = {}
        for _ in range(runs):
            for name, build in builders.items():
                us, gc_us, shed = one_run(build, n, timer)
                samples[name].append(us)
                in_gc[name].append(gc_us)
                left[name] = shed
        modeltel.shutdown()
    os.environ.pop("OTEL_BSP_MAX_QUEUE_SIZE", None)
    base = samples["uninstrumented"]
    large = samples["modeltel traced, queue large"]
    print(f"public API, OTLP/HTTP export in process; clock {clock}; {runs} runs of {n} calls, variants alternating")
    head = f"{'variant':36} {'median µs':>9} {'range':>15} {'of it GC':>9} {'added µs':>9} {'x traced large':>15}"
    print(f"{head}  left out (last run)")
    for name, values in samples.items():
        added = statistics.median(v - b for v, b in zip(values, base, strict=True))
        ratio = statistics.median(v / q for v, q in zip(values, large, strict=True))
        spread = f"{min(values):.1f}-{max(values):.1f}"
        shed = left.get(name)
        note = "" if shed is None else ", ".join(f"{k} {v}" for k, v in shed.items())
        gc_us = statistics.median(in_gc[name])
        row = f"{name:36} {statistics.median(values):9.2f} {spread:>15} {gc_us:9.2f} {added:9.2f} {ratio:15.2f}"
        print(f"{row}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a quick look: 3 runs of 3000, instrumentors 1000 calls")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--n", type=int, default=20_000, help="calls per run of a public-API variant")
    parser.add_argument("--calls", type=int, default=5000, help="calls per timing of an instrumentor")
    parser.add_argument("--no-instrumentors", action="store_true")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time (the issue's figures); cpu: this process's CPU time, export thread included "
        "(what to read on a loaded machine, where others' load inflates wall time)",
    )
    args = parser.parse_args()
    if args.short:
        args.runs, args.n, args.calls = 3, 3000, 1000
    print(GOALS)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n")
    public_api_table(args.runs, args.n, args.clock)
    if not args.no_instrumentors:
        print()
        instrumentors.print_table(instrumentors.table(args.calls))


if __name__ == "__main__":
    main()
