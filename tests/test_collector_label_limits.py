"""Label values a client sends are capped in bytes (``label_value_max_bytes``), cut on a UTF-8 boundary with
a marker and counted: span attributes that become labels, metric point and scope attributes, resource
attributes (``job``, ``instance``, ``target_info``) and what the detectors send Alertmanager."""

from __future__ import annotations

import dataclasses
import time

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from modeltel import taxonomy as tx
from modeltel_collector.labelcap import MARKER, LabelCap
from tests.collector_helpers import PB, http_get, http_post, running_collector, trace_request

BIG = "m" * 200_000 + "é"  # far over any bound, multi-byte at the end
CUT = 256


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _spans_with_big_names(n: int) -> bytes:
    req = trace_request(n, service="svc")
    for i, sp in enumerate(req.resource_spans[0].scope_spans[0].spans):
        sp.attributes.extend([_kv(tx.SPAN_ATTR_KIND, tx.SPAN_KIND_PREDICTION), _kv(tx.ATTR_MODEL_NAME, f"{i}{BIG}")])
    return req.SerializeToString()


def _gauge_with_big_values() -> bytes:
    attrs = [_kv("k", BIG), _kv("key" + "k" * 100_000, "v")]
    point = metrics_pb2.NumberDataPoint(time_unix_nano=time.time_ns(), as_double=1.0, attributes=attrs)
    metric = metrics_pb2.Metric(name="g", gauge=metrics_pb2.Gauge(data_points=[point]))
    res = Resource(attributes=[_kv("service.name", "s" + BIG), _kv("service.instance.id", "i" + BIG),
                               _kv("host.name", "h" + BIG)])  # fmt: skip
    scope = metrics_pb2.ScopeMetrics(scope=InstrumentationScope(name="sc" + BIG), metrics=[metric])
    rm = metrics_pb2.ResourceMetrics(resource=res, scope_metrics=[scope])
    return ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()


def _label_values(text: str) -> list[str]:
    """Every label value on a /metrics page (values hold no escaped quotes here)."""
    values = []
    for line in text.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        inside = line[line.index("{") + 1 : line.rindex("}")]
        values += [part.split('="', 1)[1].rstrip('"') for part in inside.split('",') if '="' in part]
    return values


def test_long_label_values_are_cut_marked_and_counted() -> None:
    with running_collector() as c:
        assert http_post(c.urls["otlp_http"] + "/v1/traces", _spans_with_big_names(7), PB)[0] == 200
        assert http_post(c.urls["otlp_http"] + "/v1/metrics", _gauge_with_big_values(), PB)[0] == 200
        c.flush()
        status, _, body = http_get(c.urls["listen"] + "/metrics")
        assert status == 200 and len(body) < 200_000, len(body)  # was 1.4 MB per big name and line
        text = body.decode()
        values = _label_values(text)
        assert max(len(v.encode()) for v in values) <= CUT
        cut = [v for v in values if v.endswith(MARKER)]
        assert {v[:2] for v in cut} >= {"0m", "6m", "sm", "im", "hm", "sc", "mm"}  # model, job, instance, info, ...
        assert "target_info{" in text and 'job="s' in text
        counted = {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines() if "_truncated_total{" in ln}
        assert counted['modeltel_collector_truncated_total{what="label_value"}'] >= 6
        assert counted['modeltel_collector_truncated_total{what="label_name"}'] == 1
        assert f'key{"k" * (CUT - 3 - len("_truncated"))}_truncated="v"' in text


def test_the_bound_is_configurable_and_cuts_on_a_character_boundary() -> None:
    cap = LabelCap(40)
    value = cap("é" * 100)
    assert value.endswith(MARKER) and len(value.encode()) <= 40 and value.startswith("é" * 13)
    assert cap("é" * 20) == "é" * 20  # exactly 40 bytes: kept
    with running_collector(label_value_max_bytes=64) as c:
        assert http_post(c.urls["otlp_http"] + "/v1/metrics", _gauge_with_big_values(), PB)[0] == 200
        c.flush()
        values = _label_values(http_get(c.urls["listen"] + "/metrics")[2].decode())
        assert max(len(v.encode()) for v in values) == 64
    with pytest.raises(ValueError, match="label_value_max_bytes"):
        running_collector(label_value_max_bytes=4).__enter__()


def test_alerts_sent_to_alertmanager_carry_capped_values() -> None:
    pytest.importorskip("scipy")
    from modeltel_collector.analytics.alerting import alert
    from modeltel_collector.analytics.logs import read_log
    from modeltel_collector.analytics.replay import replay
    from tests.test_analytics_alertmanager import LOG

    event = next(e for e in replay(read_log(LOG)).events if e.state == "firing")
    event = dataclasses.replace(event, model=BIG, version="v" + BIG)
    cuts: list[str] = []
    doc = alert(event, runbook_base="rb", grafana_url="http://grafana", cap=LabelCap(on_cut=cuts.append))
    for value in (*doc["labels"].values(), *doc["annotations"].values()):
        assert len(value.encode()) <= CUT
    assert doc["labels"]["model_name"].endswith(MARKER)
    assert cuts.count("alert_label") == 2 and "alert_annotation" in cuts
