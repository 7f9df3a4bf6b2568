"""Metric input the collector will not expose is refused with a reason (OTLP partial_success) and counted:
distinct resources past the series limit, inconsistent histograms; and a bad TLS setup is one line."""

from __future__ import annotations

import subprocess
import sys
import time

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from tests.collector_helpers import PB, http_get, http_post, running_collector


def _request(metrics: list[m.Metric], instance: str = "i1") -> bytes:
    attrs = {"service.name": "svc", "service.instance.id": instance, "host.name": "h" * 200}
    res = Resource(attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()])
    rm = m.ResourceMetrics(resource=res, scope_metrics=[m.ScopeMetrics(metrics=metrics)])
    return ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()


def _gauge(name: str) -> m.Metric:
    return m.Metric(name=name, gauge=m.Gauge(data_points=[m.NumberDataPoint(as_double=1.0)]))


def _histogram(name: str, bounds: list[float], counts: list[int]) -> m.Metric:
    p = m.HistogramDataPoint(count=sum(counts), sum=1.0, explicit_bounds=bounds, bucket_counts=counts,
                             time_unix_nano=time.time_ns())  # fmt: skip
    cumulative = m.AGGREGATION_TEMPORALITY_CUMULATIVE
    return m.Metric(name=name, histogram=m.Histogram(data_points=[p], aggregation_temporality=cumulative))


def _post(c, body: bytes) -> ExportMetricsServiceResponse:
    status, _, resp = http_post(c.urls["otlp_http"] + "/v1/metrics", body, PB)
    assert status == 200
    return ExportMetricsServiceResponse.FromString(resp)


def test_distinct_resources_are_capped_by_max_series() -> None:
    with running_collector(max_series=20) as c:
        refused = 0
        for i in range(100):
            resp = _post(c, _request([_gauge("g")], instance=f"i{i}"))
            c.flush()
            refused += resp.partial_success.rejected_data_points
            if i > 20:
                assert resp.partial_success.rejected_data_points == 1
                assert "series limit" in resp.partial_success.error_message
        assert len(c.metrics.resources) <= 10 and c.metrics.n_series <= 20  # a resource and its one series
        text = http_get(c.urls["listen"] + "/metrics")[2].decode()
        assert sum(line.startswith("target_info{") for line in text.splitlines()) <= 10
        assert c.stats.counters["modeltel_collector_dropped"]["metric_points"] == refused >= 89


def test_new_series_of_a_known_resource_past_the_cap_are_reported() -> None:
    with running_collector(max_series=10) as c:
        resp = _post(c, _request([_gauge(f"g{i}") for i in range(6)]))  # the resource and 6 series: 7 of 10
        c.flush()
        assert resp.partial_success.rejected_data_points == 0
        resp = _post(c, _request([_gauge(f"g{i}") for i in range(9)]))  # 3 new series, room for 3
        c.flush()
        assert resp.partial_success.rejected_data_points == 0
        resp = _post(c, _request([_gauge(f"g{i}") for i in range(12)]))  # 3 more new: none fits; 9 update
        c.flush()
        assert resp.partial_success.rejected_data_points == 3
        assert "series limit" in resp.partial_success.error_message
        assert c.stats.counters["modeltel_collector_dropped"]["metric_points"] == 3


def test_inconsistent_histograms_are_refused_with_a_reason() -> None:
    with running_collector() as c:
        bad = [
            _histogram("short", [1.0, 2.0], [1, 1]),  # 2 counts for 2 bounds
            _histogram("long", [1.0], [1, 1, 1]),
            _histogram("unsorted", [2.0, 1.0], [1, 1, 1]),
            _histogram("duplicate", [1.0, 1.0], [1, 1, 1]),
            _histogram("nan", [float("nan")], [1, 1]),
        ]
        resp = _post(c, _request([*bad, _histogram("good", [1.0, 2.0], [1, 2, 3])]))
        assert resp.partial_success.rejected_data_points == 5
        assert "histogram" in resp.partial_success.error_message
        c.flush()
        text = http_get(c.urls["listen"] + "/metrics")[2].decode()
        assert 'good_bucket{instance="i1",job="svc",le="+Inf"} 6' in text
        for metric in bad:
            assert f"\n{metric.name}_bucket" not in text
        assert c.stats.counters["modeltel_collector_dropped"]["metric_points"] == 5


def test_grpc_only_tls_misconfiguration_is_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'otlp_http = ""\nlisten = ""\notlp_grpc = "127.0.0.1:0"\ntls_cert = "{bad}"\ntls_key = "{bad}"\n')
    proc = subprocess.run([sys.executable, "-m", "modeltel_collector", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "TLS certificate" in proc.stderr
