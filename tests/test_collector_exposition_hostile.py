"""One client must not break the scrape for every service: hostile metric names and labels, real Prometheus.

After each hostile payload a real Prometheus scrapes /metrics and must still get ``up == 1``; reserved
labels (job, instance, le, quantile) from data points or resources never override the collector's own.
"""

from __future__ import annotations

import re
import time

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from tests.collector_helpers import OPENMETRICS, PB, http_get, http_post, running_collector, sample, scrape
from tests.test_collector_prometheus import _query, run_prometheus, scrape_health

CUMULATIVE = m.AGGREGATION_TEMPORALITY_CUMULATIVE


def _kv(attrs: dict[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()]


def _request(metric: m.Metric, service: str = "victim", **resource: str) -> bytes:
    res = Resource(attributes=_kv({"service.name": service, "service.instance.id": "i1", **resource}))
    rm = m.ResourceMetrics(resource=res, scope_metrics=[m.ScopeMetrics(metrics=[metric])])
    return ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()


def _gauge(name: str, value: float = 1.0, unit: str = "", help_: str = "", **attrs: str) -> m.Metric:
    point = m.NumberDataPoint(as_double=value, attributes=_kv(attrs), time_unix_nano=time.time_ns())
    return m.Metric(name=name, unit=unit, description=help_, gauge=m.Gauge(data_points=[point]))


def _counter(name: str, value: float = 1.0, **attrs: str) -> m.Metric:
    point = m.NumberDataPoint(as_double=value, attributes=_kv(attrs), time_unix_nano=time.time_ns())
    data = m.Sum(data_points=[point], is_monotonic=True, aggregation_temporality=CUMULATIVE)
    return m.Metric(name=name, sum=data)


def _histogram(name: str, **attrs: str) -> m.Metric:
    point = m.HistogramDataPoint(count=2, sum=1.5, explicit_bounds=[1.0], bucket_counts=[1, 1],
                                 attributes=_kv(attrs), time_unix_nano=time.time_ns())  # fmt: skip
    return m.Metric(name=name, histogram=m.Histogram(data_points=[point], aggregation_temporality=CUMULATIVE))


HOSTILE = {
    "empty name": _request(_gauge("")),
    "name _total": _request(_counter("_total")),
    "name of only invalid characters": _request(_gauge("!!!")),
    "histogram point with le": _request(_histogram("lat", le="0.5")),
    "point with quantile and __name__": _request(_gauge("q", quantile="0.9", __name__="evil")),
    "point with job/instance": _request(_gauge("jobby", job="other-service", instance="other-host")),
    "resource attributes job/instance/le": _request(_gauge("res"), service="attacker", job="x", le="1"),
    "target_info as a metric": _request(_gauge("target_info")),
    "self-metric name": _request(_gauge("modeltel_collector_series", 1e9)),
    "counter twin of a histogram": _request(_counter("lat_bucket")),
    "help and unit with quotes": _request(_gauge("helpy", unit='{a"b}\\', help_='say "hi"\\\nbye')),
    "attribute key empty and digits": _request(_gauge("keys", **{"": "a", "9x": "b", "a.b": "c", "a_b": "d"})),
}
# Every payload is accepted (200): OTLP refuses a request only when it cannot be decoded. What can never be
# exposed is counted in the answer's partial_success: these, one point each; the rest have nothing refused
# up front ("counter twin of a histogram" clashes only once merged, and is counted as a drop then).
REFUSED_UP_FRONT = {"empty name", "name _total", "target_info as a metric", "self-metric name"}


def _post_hostile(url: str, what: str, body: bytes) -> None:
    status, _, resp = http_post(url, body, PB)
    assert status == 200, (what, status, resp)
    rejected = ExportMetricsServiceResponse.FromString(resp).partial_success.rejected_data_points
    assert rejected == (1 if what in REFUSED_UP_FRONT else 0), (what, resp)


def test_hostile_payloads_never_break_a_real_prometheus_scrape(tmp_path) -> None:
    with running_collector() as c:
        url = c.urls["otlp_http"] + "/v1/metrics"
        assert http_post(url, _request(_gauge("good_gauge", 42.0)), PB)[0] == 200
        c.flush()
        with run_prometheus(tmp_path, c.urls["listen"]) as base:
            for what, body in HOSTILE.items():
                _post_hostile(url, what, body)
                c.flush()
                sent = time.time()
                up, error = scrape_health(base, sent)
                assert up == 1, f"{what}: Prometheus refused the scrape: {error}"
            good = _query(base, "/api/v1/query", query='good_gauge{job="victim"}')["result"]
            assert float(good[0]["value"][1]) == 42.0
            # a data point cannot write another service's series
            assert not _query(base, "/api/v1/query", query='jobby{job="other-service"}')["result"]
            jobby = _query(base, "/api/v1/query", query="jobby")["result"][0]["metric"]
            assert (jobby["job"], jobby["instance"]) == ("victim", "i1")
            assert (jobby["exported_job"], jobby["exported_instance"]) == ("other-service", "other-host")


def test_reserved_labels_are_renamed_and_bad_names_refused_with_a_reason() -> None:
    with running_collector() as c:
        url = c.urls["otlp_http"] + "/v1/metrics"
        for what, body in HOSTILE.items():
            _post_hostile(url, what, body)
        c.flush()
        for openmetrics in (False, True):
            fams = scrape(c, openmetrics)  # prometheus_client's strict parsers accept the page
            assert sample(fams, "lat", "lat_bucket", le="1", exported_le="0.5") == 1
            assert sample(fams, "jobby", "jobby", job="victim", exported_job="other-service") == 1
            assert sample(fams, "q", "q", exported_quantile="0.9") == 1
        body = http_get(c.urls["listen"] + "/metrics", {"Accept": OPENMETRICS})[2]
        text = body.decode()
        info = [line for line in text.splitlines() if line.startswith("target_info{") and "attacker" in line]
        assert len(info) == 1 and 'exported_job="x"' in info[0] and 'exported_le="1"' in info[0], info
        assert 'job="attacker"' in info[0] and not re.search(r'[{,]job="x"', info[0])
        assert "\nmodeltel_collector_series 1e+09" not in text  # a client cannot fake a self-metric
        reasons = c.stats.counters["modeltel_collector_dropped"]
        assert reasons["metric_points"] == 5  # those refused up front, and the counter twin of a histogram
