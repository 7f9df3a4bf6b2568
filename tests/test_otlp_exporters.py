"""modeltel's OTLP exporters deliver through the upstream transport: every OTEL_EXPORTER_OTLP_* setting holds.

Real receivers on 127.0.0.1: the SDK's OtlpSink, and small servers here that record headers, decompress,
and answer 503 / UNAVAILABLE once to prove the retry with backoff is upstream's and still runs.
"""

from __future__ import annotations

import gzip
import logging
import sys
import threading
import types
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.exporter import OTLPExporterMixin as UpstreamGrpcMixin
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as UpstreamGrpcSpans
from opentelemetry.exporter.otlp.proto.http import _common as http_common
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as UpstreamHttpMetrics
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as UpstreamHttpSpans
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export import SpanExportResult

import modeltel
from modeltel import config
from modeltel import taxonomy as tx
from modeltel.export import otlp
from modeltel.export.otlp import grpc_exporters, http_exporters, upstream
from modeltel.export.otlp.grpc_exporters import GrpcMetricExporter, GrpcSpanExporter
from modeltel.export.otlp.http_exporters import HttpMetricExporter, HttpSpanExporter
from modeltel.testing import OtlpSink, capture

_OTEL_VARS = ("ENDPOINT", "HEADERS", "COMPRESSION", "TIMEOUT", "PROTOCOL", "INSECURE")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _OTEL_VARS:
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_{var}", raising=False)
        for signal in ("TRACES", "METRICS"):
            monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_{signal}_{var}", raising=False)
    monkeypatch.delenv("MODELTEL_OTLP_ENCODER", raising=False)


def _spans(n: int = 2) -> list[Any]:
    with capture(model_name="iris", model_version="1.0", sampler="always_on") as c:
        tel = c.pipeline.telemetry
        for _ in range(n):
            with tel.prediction():
                with tel.stage("inference"):
                    pass
        return c.spans()


def _predict_and_flush(**settings: Any) -> modeltel.Pipeline:
    pipeline = modeltel.init(
        set_global=False, host_metrics=False, gpu_metrics=False, model_name="iris", model_version="1.0", **settings
    )
    assert pipeline is not None
    tel = pipeline.telemetry
    with tel.prediction():
        with tel.stage("inference"):
            pass
    pipeline.force_flush()
    return pipeline


def _metric_names(sink: OtlpSink) -> list[str]:
    return [m.name for r in sink.metrics for rm in r.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize("encoder", ["modeltel", "upstream"])
def test_the_pipeline_exports_through_the_chosen_encoder(
    monkeypatch: pytest.MonkeyPatch, protocol: str, encoder: str
) -> None:
    with OtlpSink(grpc=protocol == "grpc") as sink:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.grpc_endpoint if protocol == "grpc" else sink.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        monkeypatch.setenv("MODELTEL_OTLP_ENCODER", encoder)
        try:
            pipeline = _predict_and_flush()
            span_exporter = pipeline._span_export[0].inner
            metric_exporter = pipeline._metric_export.inner
        finally:
            modeltel.shutdown()
        ours = encoder == "modeltel"
        assert isinstance(span_exporter, (HttpSpanExporter, GrpcSpanExporter)) is ours
        assert isinstance(metric_exporter, (HttpMetricExporter, GrpcMetricExporter)) is ours
        names = sorted(span.name for _, span in sink.spans())
        assert len(names) == 2 and any("inference" in name for name in names)
        assert tx.PREDICTION_LATENCY.otel_name in _metric_names(sink)


def test_a_bad_encoder_setting_warns_once_and_keeps_modeltels(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modeltel"):
        settings = config.load(env={"MODELTEL_OTLP_ENCODER": "fastest"})
    assert settings.otlp_encoder == "modeltel"
    assert "MODELTEL_OTLP_ENCODER" in caplog.text
    assert otlp.span_exporter_class("grpc", "upstream") is UpstreamGrpcSpans
    assert otlp.metric_exporter_class("http/protobuf", "upstream") is UpstreamHttpMetrics


class _Recorder:
    """An OTLP/HTTP receiver that answers 503 to its first ``fail`` requests and records the rest."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.requests: list[tuple[dict[str, str], bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if recorder.fail > 0:
                    recorder.fail -= 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                recorder.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    rec = _Recorder(fail=1)
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


def test_http_keeps_headers_compression_and_retries_503(monkeypatch: pytest.MonkeyPatch, recorder: _Recorder) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", recorder.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=secret,tenant=ml")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "5")
    spans = _spans()
    exporter = HttpSpanExporter()
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter._encoder._names  # modeltel's encoder wrote the request, not a silent fallback
    assert recorder.fail == 0 and len(recorder.requests) == 1  # one 503, then the retry delivered
    headers, body = recorder.requests[0]
    assert headers["x-api-key"] == "secret" and headers["tenant"] == "ml"
    assert headers["content-encoding"] == "gzip" and headers["content-type"] == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(gzip.decompress(body))
    assert len(request.resource_spans[0].scope_spans[0].spans) == len(spans)


class _FlakyTraces(tgrpc.TraceServiceServicer):
    def __init__(self, unavailable: int = 1) -> None:
        self.calls = 0
        self.unavailable = unavailable  # the first calls it answers UNAVAILABLE
        self.received: list[tuple[dict[str, str], ExportTraceServiceRequest]] = []

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
        self.calls += 1
        if self.calls <= self.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        self.received.append((dict(context.invocation_metadata()), request))
        return ExportTraceServiceResponse()


@contextmanager
def _trace_receiver(servicer: _FlakyTraces) -> Iterator[int]:
    """A gRPC trace receiver on 127.0.0.1 answering with ``servicer``; yields its port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    tgrpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


def test_grpc_keeps_metadata_and_retries_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    servicer = _FlakyTraces()
    with _trace_receiver(servicer) as port:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-api-key=secret")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        spans = _spans(3)
        exporter = GrpcSpanExporter()
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        assert exporter._encoder._names  # modeltel's encoder wrote the request, not a silent fallback
        exporter.shutdown()
    assert servicer.calls == 2  # UNAVAILABLE once, reconnected, retried
    metadata, request = servicer.received[0]
    assert metadata["x-api-key"] == "secret"
    assert len(request.resource_spans[0].scope_spans[0].spans) == len(spans)


def test_an_unreachable_receiver_fails_the_batch_without_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0.5")
    exporter = HttpSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    assert exporter.export(_spans(1)) is SpanExportResult.FAILURE


# --- an upstream release that renamed a private part the HTTP fast path uses ------------------------------
_UPSTREAM_HTTP = (UpstreamHttpSpans, UpstreamHttpMetrics)


# (what owns the part: a module, or a function of an upstream exporter; the part's name)
_PRIVATE_PARTS = {
    "_common._is_request_too_large": (http_common, "_is_request_too_large"),
    "_common.RequestPayloadTooLargeError": (http_common, "RequestPayloadTooLargeError"),
    "exporter._metrics": (lambda e: e, "_metrics"),
    "exporter._client": (lambda e: e, "_client"),
    "exporter._max_request_size": (lambda e: e, "_max_request_size"),
    "exporter._shutdown": (lambda e: e, "_shutdown"),
    "_metrics.export_operation": (lambda e: type(e._metrics), "export_operation"),
    "_client.export": (lambda e: type(e._client), "export"),
    "_client._kind": (lambda e: e._client, "_kind"),
}


class _Renamed:
    """Simulates an upstream release that renamed one private part: the old name is gone (a module's at once,
    an exporter's from the end of upstream's ``__init__``), except while upstream's own ``export`` /
    ``shutdown`` run (upstream knows the part under its new name)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner_of: Any, name: str) -> None:
        self.name = name
        self.hidden: dict[int, tuple[Any, Any]] = {}
        self.lock = threading.Lock()
        self.running = 0  # upstream methods running now (the span and metric exporters have threads of their own)
        if isinstance(owner_of, types.ModuleType):
            self._hide(owner_of)
            owner_of = None
        self.owner_of = owner_of
        for cls in _UPSTREAM_HTTP:
            monkeypatch.setattr(cls, "__init__", self._after(cls.__init__))
            for method in ("export", "shutdown"):
                monkeypatch.setattr(cls, method, self._showing(getattr(cls, method)))

    def _hide(self, owner: Any) -> None:
        if self.name in vars(owner):
            self.hidden[id(owner)] = (owner, vars(owner)[self.name])
            delattr(owner, self.name)

    def restore(self) -> None:
        for owner, value in self.hidden.values():
            setattr(owner, self.name, value)

    def _after(self, init: Any) -> Any:
        def __init__(exporter: Any, *args: Any, **kwargs: Any) -> None:
            init(exporter, *args, **kwargs)
            if self.owner_of is None:
                return
            with self.lock:
                self._hide(self.owner_of(exporter))

        return __init__

    def _showing(self, method: Any) -> Any:
        def upstream_method(exporter: Any, *args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.running += 1
                if self.running == 1:
                    self.restore()
            try:
                return method(exporter, *args, **kwargs)
            finally:
                with self.lock:
                    self.running -= 1
                    if self.running == 0:
                        for owner, _ in list(self.hidden.values()):
                            self._hide(owner)

        return upstream_method


@pytest.mark.parametrize("part", list(_PRIVATE_PARTS))
def test_a_renamed_upstream_part_falls_back_to_upstreams_export(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, part: str
) -> None:
    renamed = _Renamed(monkeypatch, *_PRIVATE_PARTS[part])
    monkeypatch.setattr(upstream, "_reported", set())
    # imported anew, as in a process that starts with that upstream release
    monkeypatch.delitem(sys.modules, http_exporters.__name__)
    monkeypatch.delattr(otlp, "http_exporters")
    try:
        with OtlpSink() as sink, caplog.at_level(logging.WARNING, logger="modeltel"):
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint)
            try:
                _predict_and_flush()
            finally:
                modeltel.shutdown()
            names = sorted(span.name for _, span in sink.spans())
            metrics = _metric_names(sink)
    finally:
        renamed.restore()
    assert renamed.hidden  # the part was there to rename
    assert len(names) == 2 and any("inference" in name for name in names)  # spans still arrive
    assert tx.PREDICTION_LATENCY.otel_name in metrics
    warnings = [r.getMessage() for r in caplog.records if "exporter-otlp-proto-http has no" in r.getMessage()]
    if part != "_client._kind":  # modeltel no longer reads it
        assert len(warnings) == 1 and part in warnings[0]  # said once, for both exporters


# --- the gRPC exporters' private upstream parts ------------------------------------------------------------
def test_the_installed_grpc_exporter_has_the_private_parts_modeltel_uses(caplog: pytest.LogCaptureFixture) -> None:
    """Fails loudly on an upstream release that renamed ``_channel``, ``_initialize_channel_and_stub`` or
    ``_translate_data``: the exporters would still export, silently slower, with upstream's encoding."""
    with caplog.at_level(logging.WARNING, logger="modeltel"):
        exporters = [
            cls(endpoint="http://127.0.0.1:9", insecure=True) for cls in (GrpcSpanExporter, GrpcMetricExporter)
        ]
    try:
        assert [type(e._client) for e in exporters] == [grpc_exporters._PreEncodedStub] * 2
        assert [r.getMessage() for r in caplog.records if "has no" in r.getMessage()] == []
    finally:
        for exporter in exporters:
            exporter.shutdown()


def test_a_grpc_release_without_channel_keeps_upstreams_encoding_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = UpstreamGrpcMixin._initialize_channel_and_stub

    def renamed(exporter: Any) -> None:  # the channel under another name, as a later release might keep it
        original(exporter)
        exporter._grpc_channel = exporter.__dict__.pop("_channel")

    monkeypatch.setattr(UpstreamGrpcMixin, "_initialize_channel_and_stub", renamed)
    monkeypatch.setattr(upstream, "_reported", set())
    servicer = _FlakyTraces(unavailable=0)
    with _trace_receiver(servicer) as port, caplog.at_level(logging.WARNING, logger="modeltel"):
        exporters = [GrpcSpanExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True) for _ in range(2)]
        spans = _spans(2)
        assert exporters[0].export(spans) is SpanExportResult.SUCCESS
        for exporter in exporters:
            exporter._grpc_channel.close()
    assert not isinstance(exporters[0]._client, grpc_exporters._PreEncodedStub)
    assert not exporters[0]._encoder._names  # upstream's encoder wrote the request
    ((_, request),) = servicer.received
    assert len(request.resource_spans[0].scope_spans[0].spans) == len(spans)
    warnings = [r.getMessage() for r in caplog.records if "exporter-otlp-proto-grpc has no" in r.getMessage()]
    assert len(warnings) == 1 and "_channel" in warnings[0] and "OTLP/gRPC" in warnings[0]
