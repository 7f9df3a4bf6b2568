"""OTLP encoding throughput on one core: the upstream encoder against modeltel's, in the same run.

Spans like modeltel's (a prediction span and three stage spans, from the real pipeline), in batches of
512 as the BatchSpanProcessor exports them; and a metric collection of modeltel's series. Each figure
is the best of ``--repeats`` timed runs, CPU time of this (single-threaded) process.
Run: ``python benchmarks/otlp_encode.py [--batches 200]``.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from modeltel.export.otlp.metrics import MetricEncoder
from modeltel.export.otlp.spans import SpanEncoder
from modeltel.testing import capture


def corpus(batch: int) -> tuple[list[Any], Any]:
    """``batch`` spans of monitored three-stage predictions, and the metric collection they leave."""
    with capture(model_name="bench", model_version="1", sampler="always_on") as c:
        tel = c.pipeline.telemetry

        @tel.monitor_prediction()
        def predict() -> int:
            with tel.stage("preprocess"):
                pass
            with tel.stage("inference"):
                pass
            with tel.stage("postprocess"):
                return 1

        for _ in range(batch // 4):
            predict()
        return c.spans(), c.reader.get_metrics_data()


def best(fn: Callable[[], Any], times: int, repeats: int) -> float:
    """Best-of-``repeats`` seconds per call."""
    fn()
    runs = []
    for _ in range(repeats):
        gc.collect()
        start = time.process_time()
        for _ in range(times):
            fn()
        runs.append((time.process_time() - start) / times)
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100, help="batches of 512 spans per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    spans, metrics = corpus(512)
    span_encoder, metric_encoder = SpanEncoder(), MetricEncoder()
    rows = {
        "spans, upstream encode_spans": best(
            lambda: encode_spans(spans).SerializePartialToString(), args.batches, args.repeats
        ),
        "spans, modeltel SpanEncoder": best(lambda: span_encoder.encode(spans), args.batches, args.repeats),
        "metrics, upstream encode_metrics": best(
            lambda: encode_metrics(metrics).SerializeToString(), args.batches, args.repeats
        ),
        "metrics, modeltel MetricEncoder": best(lambda: metric_encoder.encode(metrics), args.batches, args.repeats),
    }
    points = sum(
        len(m.data.data_points) for rm in metrics.resource_metrics for s in rm.scope_metrics for m in s.metrics
    )
    print(f"clock: cpu; best of {args.repeats} runs of {args.batches} batches", end="; ")
    print(f"{len(spans)} spans a batch, {points} metric points a collection")
    print(f"{'encoder':34} {'µs/batch':>10} {'per item µs':>12} {'items/s':>10} {'x upstream':>11}")
    for name, seconds in rows.items():
        signal = name.split(",")[0]
        items = len(spans) if signal == "spans" else points
        upstream = next(v for k, v in rows.items() if k.startswith(signal))
        us = seconds * 1e6
        print(f"{name:34} {us:10.1f} {us / items:12.2f} {items / seconds:10.0f} {upstream / seconds:11.1f}")
    rate = len(spans) / rows["spans, modeltel SpanEncoder"]
    print(f"\ngoal: >= 250k spans/s on one core: {rate / 1000:.0f}k spans/s")


if __name__ == "__main__":
    main()
