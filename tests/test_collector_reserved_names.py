"""Names Prometheus or our rules give a meaning cannot be sent: ``up``, ``scrape_*``, ``ALERTS``,
``ALERTS_FOR_STATE``, ``target_info`` and every series our recording rules write are refused with an
OTLP ``partial_success`` reason, so a client cannot page for a target that is not down."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from modeltel import taxonomy as tx
from modeltel_collector.translate import family_name_problem
from tests.collector_helpers import PB, http_get, http_post, running_collector

RULES = Path(__file__).parent.parent / "alerts" / "rules"


def _recorded_names() -> list[str]:
    """Every series the generated rule files record (``modeltel alerts generate`` writes them)."""
    names = set()
    for path in RULES.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return sorted(names)


PROMETHEUS = ["up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added", "ALERTS",
              "ALERTS_FOR_STATE", "target_info"]  # fmt: skip


def _request(name: str, *, value: float = 0.0) -> bytes:
    attrs = {"service.name": "node", "service.instance.id": "db-1:9100"}
    res = Resource(attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()])
    gauge = m.Metric(name=name, gauge=m.Gauge(data_points=[m.NumberDataPoint(as_double=value)]))
    rm = m.ResourceMetrics(resource=res, scope_metrics=[m.ScopeMetrics(metrics=[gauge])])
    return ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()


def test_the_generated_rules_record_names() -> None:
    assert len(_recorded_names()) > 5 and all(":" in n for n in _recorded_names())


@pytest.mark.parametrize("name", PROMETHEUS + _recorded_names())
def test_a_reserved_name_is_refused_with_a_reason(name: str) -> None:
    assert "reserved" in family_name_problem(name)


def test_a_spoofed_up_never_reaches_the_scrape() -> None:
    with running_collector() as c:
        for name in ("up", "scrape_duration_seconds", "ALERTS", _recorded_names()[0]):
            status, _, body = http_post(c.urls["otlp_http"] + "/v1/metrics", _request(name), PB)
            resp = ExportMetricsServiceResponse.FromString(body)
            assert status == 200 and resp.partial_success.rejected_data_points == 1, name
            assert "reserved" in resp.partial_success.error_message
        assert http_post(c.urls["otlp_http"] + "/v1/metrics", _request("node.ok", value=1), PB)[0] == 200
        c.flush()
        text = http_get(c.urls["listen"] + "/metrics")[2].decode()
        assert 'node_ok{instance="db-1:9100",job="node"} 1' in text  # the same resource's other metric is kept
        exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
        assert not exposed & {"up", "scrape_duration_seconds", "ALERTS", *_recorded_names()}


@pytest.mark.parametrize("instrument", tx.INSTRUMENTS, ids=lambda i: i.otel_name)
def test_no_modeltel_instrument_is_reserved(instrument: tx.Instrument) -> None:
    assert family_name_problem(instrument.prometheus_name) == ""
