"""Under overload the span buffer sheds whole traces, counts them, and keeps failed predictions.

The application here makes spans far faster than a deliberately slow exporter takes them, through the
pipeline modeltel builds for an OTLP exporter (only the exporter is replaced): every exported trace must
be whole (the prediction and its three stages), every prediction must be either exported or counted as
shed, and the count must reach the metrics and the exit warning.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import modeltel
from modeltel import taxonomy as tx
from modeltel.export import providers
from modeltel.export.readers import InMemoryReader
from modeltel.export.shedding import SheddingSpanProcessor

N = 3000
STAGES = ("preprocess", "inference", "postprocess")


class SlowExporter(SpanExporter):
    """Keeps what it is given, taking ``delay_s`` per batch: far slower than the application."""

    def __init__(self, delay_s: float = 0.02, gate: threading.Event | None = None) -> None:
        self.delay_s = delay_s
        self.gate = gate
        self.spans: list[ReadableSpan] = []
        self.batches = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay_s)
        self.spans.extend(spans)
        self.batches += 1
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@pytest.fixture
def overloaded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[SlowExporter, InMemoryReader]]]:
    """Builds a pipeline with an OTLP trace exporter (replaced by a slow one) and a small span buffer."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "16")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

    def build(**settings: Any) -> tuple[SlowExporter, InMemoryReader]:
        exporter = SlowExporter()
        monkeypatch.setattr(providers, "span_exporter", lambda _: exporter)
        reader = InMemoryReader()
        modeltel.shutdown()
        defaults = {"metrics_exporter": "none", "sampler": "parentbased_always_on", "model_name": "iris"}
        modeltel.init(
            set_global=False,
            traces_exporter="otlp",
            metric_readers=[reader],
            host_metrics=False,
            gpu_metrics=False,
            model_version="1",
            **{**defaults, **settings},
        )
        return exporter, reader

    yield build
    modeltel.shutdown()


def _predict(tel: modeltel.Telemetry, *, fail: bool = False, work_s: float = 0.0) -> None:
    with tel.prediction():
        for stage in STAGES:
            with tel.stage(stage):
                if stage == "inference":
                    if work_s:
                        time.sleep(work_s)
                    if fail:
                        raise ValueError("bad input")


def _run(n: int, *, fail_every: int = 0, work_s: float = 0.0) -> int:
    tel = modeltel.telemetry()
    failures = 0
    for i in range(n):
        fail = bool(fail_every) and i % fail_every == 0
        try:
            _predict(tel, fail=fail, work_s=work_s)
        except ValueError:
            failures += 1
    return failures


def _shed(reader: InMemoryReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    return {
        p.attributes[tx.ATTR_SHED_REASON]: p.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == tx.TRACES_SHED.otel_name
        for p in m.data.data_points
    }


def test_overload_sheds_whole_traces_and_counts_every_one(overloaded) -> None:
    exporter, reader = overloaded()
    pipeline = modeltel.get_pipeline()
    assert isinstance(pipeline._span_export[1], SheddingSpanProcessor)
    _run(N)
    pipeline.force_flush()
    by_trace = Counter(s.context.trace_id for s in exporter.spans)
    assert by_trace, "some traces must be exported"
    partial = {t: n for t, n in by_trace.items() if n != 1 + len(STAGES)}
    assert not partial, f"{len(partial)} of {len(by_trace)} exported traces are partial"
    ids = {s.context.span_id: s for s in exporter.spans}
    for span in exporter.spans:  # every stage's parent is in the export, in the same trace
        if span.name != "predict":
            assert span.parent.span_id in ids and ids[span.parent.span_id].name == "predict"
    shed = _shed(reader)
    assert shed["overload"] > 0, "the run must have overloaded the buffer"
    assert shed == {"overload": N - len(by_trace), "buffer_full": 0}


def test_failed_predictions_are_kept_whole_while_shedding(overloaded) -> None:
    """Failures are rare enough here for the exporter to keep up with them alone, as in a healthy service;
    beyond that, kept failures too meet the buffer's hard bound (counted as ``buffer_full``)."""
    exporter, reader = overloaded(keep_slow_and_failed=True)
    exporter.delay_s = 0.005
    # a prediction that takes 0.1 ms or more, as a model does: on a quiet machine bare stages run so fast that
    # even one failure in 50 outran the exporter (the hard bound's case, not this test's)
    failures = _run(N, fail_every=50, work_s=1e-4)
    modeltel.get_pipeline().force_flush()
    assert _shed(reader)["overload"] > 0
    failed = [s for s in exporter.spans if s.name == "predict" and not s.status.is_ok]
    assert len(failed) == failures  # shed or not, every failed prediction was exported
    by_trace = Counter(s.context.trace_id for s in exporter.spans)
    assert all(by_trace[s.context.trace_id] == 3 for s in failed)  # predict, preprocess, inference (raised)
    assert _shed(reader)["buffer_full"] == 0


def test_exit_warning_says_how_many_traces_were_shed(overloaded, caplog: pytest.LogCaptureFixture) -> None:
    _, reader = overloaded()
    _run(N // 3)
    shed = _shed(reader)["overload"]
    assert shed > 0
    with caplog.at_level(logging.WARNING, logger="modeltel"):
        modeltel.shutdown()
    assert any(f"traces shed: {shed} overload" in r.getMessage() for r in caplog.records)


def test_the_shed_count_is_on_the_prometheus_endpoint(overloaded) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, reader = overloaded(prometheus_port=port, prometheus_host="127.0.0.1")
    _run(N // 3)
    shed = _shed(reader)["overload"]
    assert shed > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    series = rf'^{tx.TRACES_SHED.prometheus_series}\{{[^}}]*{tx.ATTR_SHED_REASON}="overload"[^}}]*\}} (\S+)$'
    (value,) = re.findall(series, text, re.MULTILINE)
    assert float(value) == shed


def test_the_export_thread_is_woken_at_most_once_per_batch() -> None:
    """While the exporter is stuck on its first batch, five more batches arrive: one wake-up waits for it."""
    gate = threading.Event()
    exporter = SlowExporter(delay_s=0, gate=gate)
    processor = SheddingSpanProcessor(
        exporter, max_queue_size=1000, max_export_batch_size=10, schedule_delay_millis=60_000
    )
    sets = []
    wake = processor._wake
    original = wake.set
    wake.set = lambda: (sets.append(1), original())[1]  # type: ignore[method-assign]
    spans = _sampled_spans(60)
    for span in spans[:10]:
        processor.on_end(span)
    for span in spans[10:]:
        processor.on_end(span)
    assert len(sets) <= 2, f"woken {len(sets)} times for 6 batches while one export was under way"
    gate.set()
    assert processor.force_flush()
    assert len(exporter.spans) == 60
    processor.shutdown()


def _sampled_spans(n: int) -> list[ReadableSpan]:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    out = []
    for _ in range(n):
        span = tracer.start_span("s")
        span.end()
        out.append(span)
    return out
