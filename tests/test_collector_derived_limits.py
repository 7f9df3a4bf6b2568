"""The span-derived series of one resource are bounded (``derived_max_series``): a client that puts a new
model name (or version, stage, scope, GenAI label) on every span gets ``_other`` past the bound, counted
and warned once, so it can neither grow ``/metrics`` past a scrape's time nor fill ``max_series`` and
refuse another application's data (issue 21)."""

from __future__ import annotations

import logging

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from modeltel import taxonomy as tx
from tests.collector_helpers import PB, http_get, http_post, running_collector, sample, scrape, trace_request

PRED = tx.PREDICTION_LATENCY.prometheus_name
COUNT = tx.PREDICTIONS.prometheus_name
STAGE = tx.STAGE_LATENCY.prometheus_name


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _spans(service: str, rows: list[dict[str, str]]) -> bytes:
    req = trace_request(len(rows), service=service)
    for sp, attrs in zip(req.resource_spans[0].scope_spans[0].spans, rows, strict=True):
        sp.attributes.extend([_kv(k, v) for k, v in attrs.items()])
    return req.SerializeToString()


def _predictions(service: str, models: range, **extra: str) -> bytes:
    return _spans(service, [{tx.SPAN_ATTR_KIND: tx.SPAN_KIND_PREDICTION, tx.ATTR_MODEL_NAME: f"rot-{i}", **extra}
                            for i in models])  # fmt: skip


def _app_metrics(n: int) -> bytes:
    """An application's own ``n`` gauge series, as its SDK would send them."""
    points = [m.NumberDataPoint(as_double=1.0, attributes=[_kv("k", str(i))]) for i in range(n)]
    res = Resource(attributes=[_kv("service.name", "app"), _kv("service.instance.id", "a1")])
    metric = m.Metric(name="app_queue_depth", gauge=m.Gauge(data_points=points))
    rm = m.ResourceMetrics(resource=res, scope_metrics=[m.ScopeMetrics(metrics=[metric])])
    return ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()


def _post(c, path: str, body: bytes) -> bytes:
    status, _, resp = http_post(c.urls["otlp_http"] + path, body, PB)
    assert status == 200
    return resp


def _series_of(families: dict, family: str, job: str) -> list[dict[str, str]]:
    return [dict(lb) for (n, lb), _ in families[family]["samples"].items() if n == family + "_count"
            and dict(lb)["job"] == job]  # fmt: skip


def test_rotating_model_names_cannot_grow_the_derived_series_or_refuse_an_apps_data(caplog) -> None:
    with caplog.at_level(logging.WARNING, "modeltel_collector"), running_collector(max_series=3000) as c:
        for start in range(0, 3000, 500):  # 3 000 model names, 2 series each without the bound
            _post(c, "/v1/traces", _predictions("attacker", range(start, start + 500)))
        _post(c, "/v1/traces", _predictions("victim", range(3)))  # a well-behaved trace-only app
        resp = ExportMetricsServiceResponse.FromString(_post(c, "/v1/metrics", _app_metrics(200)))
        assert resp.partial_success.rejected_data_points == 0, resp.partial_success.error_message
        c.flush()
        status, _, body = http_get(c.urls["listen"] + "/metrics")
        assert status == 200 and len(body) < 2_000_000, len(body)  # 5.2 MB without the bound
        families = scrape(c)
        attacker = _series_of(families, PRED, "attacker")
        assert len(attacker) <= 501, len(attacker)  # half the bound's 1000 series, the counter the other half
        other = [lb for lb in attacker if lb["model_name"] == tx.OVERFLOW_VALUE]
        assert len(other) == 1 and other[0]["model_version"] == tx.OVERFLOW_VALUE
        assert sample(families, PRED, PRED + "_count", job="attacker", model_name=tx.OVERFLOW_VALUE) == 2500
        assert sample(families, COUNT, COUNT + "_total", job="attacker", model_name=tx.OVERFLOW_VALUE) == 2500
        assert {lb["model_name"] for lb in _series_of(families, PRED, "victim")} == {"rot-0", "rot-1", "rot-2"}
        assert len(families["app_queue_depth"]["samples"]) == 200
        overflow = c.stats.counters["modeltel_collector_derived_overflow"]
        assert overflow[PRED] == 2500 and overflow[COUNT] == 2500
        assert c.metrics.n_series < 1500, c.metrics.n_series
    warned = [r for r in caplog.records if "derived_max_series" in r.getMessage()]
    assert len(warned) == 1 and "attacker" in warned[0].getMessage()


def test_every_label_read_from_spans_overflows_under_the_bound() -> None:
    """Stages, versions, GenAI models and error types rotate as well as model names: each new series past
    the bound lands in one ``_other`` series per family and fixed label set."""
    genai = {tx.ATTR_GEN_AI_OPERATION_NAME: "chat", tx.ATTR_ERROR_TYPE: "Boom"}
    with running_collector(derived_max_series=40) as c:
        rows = [{tx.SPAN_ATTR_KIND: tx.SPAN_KIND_STAGE, tx.ATTR_MODEL_NAME: "m", tx.SPAN_ATTR_STAGE: f"s{i}"}
                for i in range(200)]  # fmt: skip
        rows += [{tx.SPAN_ATTR_KIND: tx.SPAN_KIND_PREDICTION, tx.ATTR_MODEL_NAME: "m",
                  tx.ATTR_MODEL_VERSION: f"v{i}", tx.ATTR_GEN_AI_REQUEST_MODEL: f"g{i}", **genai}
                 for i in range(200)]  # fmt: skip
        _post(c, "/v1/traces", _spans("attacker", rows))
        c.flush()
        with c.metrics.lock:
            mine = [(f, lb) for f in c.metrics.families.values() for lb in f.series if ("job", "attacker") in lb]
        assert 40 <= len(mine) <= 60, len(mine)
        stages = {dict(lb)["stage"] for f, lb in mine if f.name == STAGE}
        assert tx.OVERFLOW_VALUE in stages and len(stages) <= 41
        assert sample(scrape(c), STAGE, STAGE + "_count", job="attacker", stage=tx.OVERFLOW_VALUE) > 150


def test_a_derived_observation_refused_by_max_series_is_counted_once_as_dropped_not_as_overflow() -> None:
    """Past ``derived_max_series`` an observation goes to its ``_other`` series; when ``max_series`` leaves
    no room for that series the observation is refused, and counted as such: not as recorded under
    ``_other``. Here the resource (1 series) and rot-0, rot-1 (2 series each) fill derived_max_series=4;
    rot-2's histogram takes the last series there is room for, its ``_other`` one."""
    with running_collector(max_series=6, derived_max_series=4) as c:
        _post(c, "/v1/traces", _predictions("attacker", range(10)))
        c.flush()
        assert c.metrics.n_series == 6
        families = scrape(c)
        assert sample(families, PRED, PRED + "_count", job="attacker", model_name=tx.OVERFLOW_VALUE) == 8
        counts = [dict(lb)["model_name"] for (_, lb), _ in families[COUNT]["samples"].items()]
        assert sorted(counts) == ["rot-0", "rot-1"]  # no room for the counter's _other series
        overflow = c.stats.counters["modeltel_collector_derived_overflow"]
        assert overflow[PRED] == 8 and overflow[COUNT] == 0  # the 8 counter increments were not recorded
        assert c.stats.counters["modeltel_collector_dropped"]["derived_series_limit"] == 8


def test_the_derived_observations_of_a_resource_refused_whole_are_counted() -> None:
    """A new resource ``max_series`` has no room for gets no series at all: its span-derived observations
    are refused with it, counted under the same reason (the spans themselves are stored)."""
    with running_collector(max_series=3) as c:
        _post(c, "/v1/traces", _predictions("first", range(1)))  # its resource, histogram and counter
        c.flush()
        assert c.metrics.n_series == 3
        _post(c, "/v1/traces", _predictions("late", range(5)))  # 5 predictions: 5 samples x 2 families
        c.flush()
        assert c.metrics.n_series == 3
        assert c.stats.counters["modeltel_collector_dropped"]["derived_series_limit"] == 10
