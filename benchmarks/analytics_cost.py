"""What the collector's degradation detectors cost it, in CPU time per span and per prediction.

    python benchmarks/analytics_cost.py

Two figures, each CPU time of this process (steady on a shared machine, unlike throughput):

- ingest: ``process_traces`` on a 510-span export (170 traces of a prediction and two stages, the shape
  modeltel apps send), with and without handing the detectors their facts;
- detectors: ``LiveAnalytics.poll`` per prediction, over 20 simulated minutes at 1000 predictions/s (the
  engine's windows, the detectors every 5 s, the gauges every poll).

``benchmarks/collector_throughput.py --analytics compare`` measures the same end to end, with the noise
of a whole collector under load.
"""

from __future__ import annotations

import os
import time
from collections import deque

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from modeltel import taxonomy as tx
from modeltel_collector.analytics.live import LiveAnalytics
from modeltel_collector.facts import Prediction
from modeltel_collector.process.spanmetrics import process_traces
from modeltel_collector.store.metrics import MetricStore


def export(traces: int = 170) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "svc"
    ss = rs.scope_spans.add()
    model = ((tx.ATTR_MODEL_NAME, "iris"), (tx.ATTR_MODEL_VERSION, "1"), ("http.method", "POST"))
    for _ in range(traces):
        trace_id = os.urandom(16)
        for name, kind in (("predict", "prediction"), ("preprocess", "stage"), ("inference", "stage")):
            sp = ss.spans.add(trace_id=trace_id, span_id=os.urandom(8), name=name)
            sp.start_time_unix_nano, sp.end_time_unix_nano = 1, 1_000_000
            for key, value in ((tx.SPAN_ATTR_KIND, kind), *model):
                sp.attributes.add(key=key).value.string_value = value
            if kind == "prediction":
                sp.attributes.add(key=tx.SPAN_ATTR_PREDICTION_ID).value.string_value = os.urandom(8).hex()
    return req


def ingest_us_per_span(rounds: int = 15, calls: int = 30) -> tuple[float, float]:
    """Best of ``rounds`` without and with the hand-over, alternated so machine load hits both alike."""
    req, store = export(), MetricStore()
    spans = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    best = {False: float("inf"), True: float("inf")}
    for _ in range(rounds):
        for facts in (False, True):
            t = time.process_time()
            for _ in range(calls):
                process_traces(req, store, True, facts=[] if facts else None)
            best[facts] = min(best[facts], (time.process_time() - t) / calls / spans * 1e6)
    return best[False], best[True]


def detectors_us_per_prediction(seconds: int = 1200, rate: int = 1000) -> float:
    facts: deque = deque()
    live = LiveAnalytics(facts, MetricStore())
    start, cpu = time.time() - 3600, 0.0
    for second in range(0, seconds, 2):  # one poll every 2 s, as the collector polls
        for i in range(2 * rate):
            facts.append(Prediction(start + second + i / rate, "iris", "1", 0.01, True, None, None))
        t = time.process_time()
        live.poll(start + second + 2 + live.lag_s)
        cpu += time.process_time() - t
    return cpu / (seconds * rate) * 1e6


def main() -> None:
    without, with_facts = ingest_us_per_span()
    print(f"ingest, µs per span:        {without:6.2f} without the hand-over, {with_facts:6.2f} with it "
          f"(+{with_facts - without:.2f}, {with_facts / without - 1:+.1%})")  # fmt: skip
    print(f"detectors, µs per prediction: {detectors_us_per_prediction():6.2f} (their own thread)")


if __name__ == "__main__":
    main()
