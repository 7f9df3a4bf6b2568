"""Shared helpers for the collector tests: an in-process collector on free ports and OTel SDK clients."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

import modeltel
from modeltel_collector import Collector
from tests.binaries import require_binary

PB = {"Content-Type": "application/x-protobuf"}
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
DELTA = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA,
         UpDownCounter: AggregationTemporality.CUMULATIVE}  # fmt: skip


@contextmanager
def running_collector(**overrides) -> Iterator[Collector]:
    opts = {"otlp_http": "127.0.0.1:0", "otlp_grpc": "127.0.0.1:0", "listen": "127.0.0.1:0", **overrides}
    c = Collector(**opts).start()
    try:
        yield c
    finally:
        c.stop()


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def http_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def scrape(c: Collector, openmetrics: bool = False) -> dict[str, dict]:
    """Parse /metrics with prometheus_client's parsers -> {family: {(sample name, labels): value}}."""
    c.flush()
    status, headers, body = http_get(c.urls["listen"] + "/metrics", {"Accept": OPENMETRICS} if openmetrics else {})
    assert status == 200
    text = body.decode()
    if openmetrics:
        assert headers["Content-Type"].startswith("application/openmetrics-text")
    parser = parse_openmetrics if openmetrics else parse_text
    out: dict[str, dict] = {}
    for fam in parser(text):
        samples = out.setdefault(fam.name, {"type": fam.type, "samples": {}, "exemplars": {}})
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            samples["samples"][key] = s.value
            if s.exemplar is not None:
                samples["exemplars"][key] = s.exemplar
    return out


def sample(families: dict, family: str, name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    matches = [
        v for (n, lb), v in families[family]["samples"].items()
        if n == name and all(dict(lb).get(k) == val for k, val in labels.items())
    ]  # fmt: skip
    assert len(matches) == 1, (family, name, labels, matches)
    return matches[0]


def tracer_provider(c: Collector, protocol: str, service: str = "svc", instance: str = "i1") -> TracerProvider:
    res = Resource.create({"service.name": service, "service.instance.id": instance})
    tp = TracerProvider(resource=res)
    if protocol == "http":
        exporter = HttpSpanExporter(endpoint=c.urls["otlp_http"] + "/v1/traces")
    else:
        exporter = GrpcSpanExporter(endpoint=c.urls["otlp_grpc"], insecure=True)
    tp.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    return tp


def metric_exporter(c: Collector, protocol: str, delta: bool = False) -> MetricExporter:
    temporality = DELTA if delta else None
    if protocol == "http":
        return HttpMetricExporter(endpoint=c.urls["otlp_http"] + "/v1/metrics", preferred_temporality=temporality)
    return GrpcMetricExporter(endpoint=c.urls["otlp_grpc"], insecure=True, preferred_temporality=temporality)


def meter_provider(exporter: MetricExporter, service: str = "svc", instance: str = "i1", **kw) -> MeterProvider:
    """A meter provider that exports only on force_flush (huge interval), so tests control exports."""
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    res = Resource.create({"service.name": service, "service.instance.id": instance})
    return MeterProvider(resource=res, metric_readers=[reader], **kw)


def trace_request(
    n_spans: int = 3, service: str = "raw", payload: int = 0, trace_id: bytes | None = None, **span_fields
) -> trace_service_pb2.ExportTraceServiceRequest:
    """A raw OTLP trace request of ``n_spans`` one-span traces (or spans of ``trace_id``), each with
    ``payload`` bytes of attribute."""
    start = time.time_ns()
    attrs = [KeyValue(key="pad", value=AnyValue(string_value="x" * payload))] if payload else []
    fields = {"start_time_unix_nano": start, "end_time_unix_nano": start + 1000, **span_fields}
    spans = [
        trace_pb2.Span(
            trace_id=trace_id or os.urandom(16), span_id=os.urandom(8), name=f"s{i}", attributes=attrs, **fields
        )
        for i in range(n_spans)
    ]
    res = PbResource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))])
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(resource=res, scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]
    )


def dropped(c: Collector) -> dict[str, float]:
    """The collector's ``modeltel_collector_dropped`` counters by reason."""
    return {k: v for k, v in c.stats.counters["modeltel_collector_dropped"].items() if v}


def self_signed_cert(tmp_path: Path) -> tuple[Path, Path]:
    """(cert, key) for localhost/127.0.0.1, made with the openssl CLI."""
    require_binary("openssl", package="openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def sdk_exporting_to(c: Collector, monkeypatch) -> Iterator[Any]:
    """The modeltel SDK exporting OTLP/HTTP to collector ``c``; its metrics go only when the test flushes."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.urls["otlp_http"])
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000")
    pipeline = modeltel.init(set_global=False, gpu_metrics=False, host_metrics=False)
    try:
        yield pipeline
    finally:
        modeltel.shutdown()
