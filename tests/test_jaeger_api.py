"""The collector's Jaeger-compatible query API (serve/jaeger.py): the JSON shapes of jaeger-query's HTTP API
and model/json that Grafana's Jaeger datasource reads, its search filters, auth and errors."""

from __future__ import annotations

import json
import os
import time
import urllib.parse

import pytest
from opentelemetry.trace import Status, StatusCode

from modeltel import taxonomy as tx
from modeltel_collector.serve.jaeger import parse_duration_us
from modeltel_collector.store.spans import SpanStore, TraceRow
from tests.collector_helpers import http_get, http_post, running_collector, trace_request, tracer_provider

PROTOBUF = {"Content-Type": "application/x-protobuf"}

TAG_TYPES = {"string", "bool", "int64", "float64", "binary"}


def _emit(tp, n: int, *, slow: int = -1, fail: int = -1, model: str = "iris") -> list[str]:
    """n requests: predict -> preprocess, inference (with an event); request ``slow`` sleeps 60 ms in inference."""
    tracer = tp.get_tracer(tx.TRACER_NAME)
    ids = []
    for i in range(n):
        attrs = {tx.SPAN_ATTR_KIND: tx.SPAN_KIND_PREDICTION, tx.ATTR_MODEL_NAME: model, "request.n": i}
        with tracer.start_as_current_span("predict", attributes=attrs) as root:
            with tracer.start_as_current_span(tx.STAGE_PREPROCESS, attributes={tx.SPAN_ATTR_STAGE: "preprocess"}):
                pass
            with tracer.start_as_current_span(tx.STAGE_INFERENCE, attributes={tx.SPAN_ATTR_STAGE: "inference"}) as s:
                s.add_event("batch", {"size": 4})
                if i == slow:
                    time.sleep(0.06)
            if i == fail:
                root.set_status(Status(StatusCode.ERROR, "boom"))
            ids.append(format(root.get_span_context().trace_id, "032x"))
    assert tp.force_flush()
    return ids


def _get(base: str, path: str, headers: dict | None = None, **params) -> tuple[int, dict]:
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    status, _, body = http_get(f"{base}/jaeger/api/{path}{query}", headers)
    return status, json.loads(body)


@pytest.fixture(scope="module")
def recorded():
    with running_collector() as c:
        ids = _emit(tracer_provider(c, "http", service="iris-svc"), 6, slow=2, fail=4)
        _emit(tracer_provider(c, "http", service="other-svc"), 2, model="other")
        c.flush()
        yield c.urls["listen"], ids


def _check_shape(doc: dict) -> None:
    assert set(doc) == {"data", "total", "limit", "offset", "errors"}  # jaeger-query's structuredResponse
    for trace in doc["data"]:
        assert set(trace) == {"traceID", "spans", "processes", "warnings"}
        for span in trace["spans"]:
            assert {"traceID", "spanID", "operationName", "references", "startTime", "duration", "tags", "logs",
                    "processID", "flags", "warnings"} == set(span)  # fmt: skip
            assert isinstance(span["startTime"], int) and isinstance(span["duration"], int)
            assert span["processID"] in trace["processes"]
            assert all(set(t) == {"key", "type", "value"} and t["type"] in TAG_TYPES for t in span["tags"])
            assert all(r["refType"] in {"CHILD_OF", "FOLLOWS_FROM"} for r in span["references"])
        assert all(set(p) == {"serviceName", "tags"} for p in trace["processes"].values())


def test_trace_by_id_has_the_span_tree(recorded) -> None:
    base, ids = recorded
    status, doc = _get(base, f"traces/{ids[2]}")
    assert status == 200 and doc["errors"] is None and len(doc["data"]) == 1
    _check_shape(doc)
    trace = doc["data"][0]
    spans = {s["operationName"]: s for s in trace["spans"]}
    assert trace["traceID"] == ids[2] and set(spans) == {"predict", "preprocess", "inference"}
    root = spans["predict"]
    assert root["references"] == []
    for child in ("preprocess", "inference"):
        assert spans[child]["references"] == [{"refType": "CHILD_OF", "traceID": ids[2], "spanID": root["spanID"]}]
        assert root["startTime"] <= spans[child]["startTime"]
        assert spans[child]["startTime"] + spans[child]["duration"] <= root["startTime"] + root["duration"] + 1
    assert 60_000 <= spans["inference"]["duration"] < 5_000_000  # microseconds
    assert trace["processes"][root["processID"]]["serviceName"] == "iris-svc"
    tags = {t["key"]: t for t in root["tags"]}
    assert tags["request.n"] == {"key": "request.n", "type": "int64", "value": 2}
    assert tags[tx.ATTR_MODEL_NAME]["value"] == "iris"
    (log,) = spans["inference"]["logs"]
    assert {"key": "event", "type": "string", "value": "batch"} in log["fields"]
    assert {"key": "size", "type": "int64", "value": 4} in log["fields"]
    assert root["startTime"] <= log["timestamp"] <= root["startTime"] + root["duration"]


def test_failed_request_carries_the_error_tags(recorded) -> None:
    base, ids = recorded
    root = next(s for s in _get(base, f"traces/{ids[4]}")[1]["data"][0]["spans"] if s["operationName"] == "predict")
    tags = {t["key"]: t["value"] for t in root["tags"]}
    assert tags["error"] is True and tags["otel.status_code"] == "ERROR" and tags["otel.status_description"] == "boom"


def test_services_and_operations(recorded) -> None:
    base, _ = recorded
    status, doc = _get(base, "services")
    assert status == 200 and doc["data"] == ["iris-svc", "other-svc"] and doc["total"] == 2
    status, doc = _get(base, "services/iris-svc/operations")
    assert status == 200 and doc["data"] == ["inference", "predict", "preprocess"]


def test_a_quiet_service_stays_listed_beside_a_busy_one() -> None:
    # The list used to come from the 1000 most recent traces: a busy service pushed a quiet one out.
    with running_collector(otlp_grpc="") as c:
        for service, n in (("quiet", 1), ("busy", 1200)):
            body = trace_request(n, service=service).SerializeToString()
            assert http_post(c.urls["otlp_http"] + "/v1/traces", body, PROTOBUF)[0] == 200
        c.flush()
        assert _get(c.urls["listen"], "services")[1]["data"] == ["busy", "quiet"]


def test_a_service_silent_for_the_retention_leaves_the_list(tmp_path) -> None:
    store = SpanStore(str(tmp_path / "t.db"), max_age_s=60)
    store.start()
    store.put([TraceRow(os.urandom(16), "old", "m", ",", ",", "x", 0, 1, 1, os.urandom(8), 1, b"")])
    store.close()
    store = SpanStore(str(tmp_path / "t.db"), max_age_s=60)  # reopened: the list is on disk
    assert store.services() == ["old"]
    store.prune(now_ns=time.time_ns() + 61 * 10**9)
    assert store.services() == []
    store.close()


def test_search_by_service_operation_tags_and_duration(recorded) -> None:
    base, ids = recorded

    def found(**params) -> set[str]:
        status, doc = _get(base, "traces", **params)
        assert status == 200, doc
        _check_shape(doc)
        return {t["traceID"] for t in doc["data"]}

    assert found(service="iris-svc") == set(ids)
    assert found(service="iris-svc", limit=2) <= set(ids) and len(found(service="iris-svc", limit=2)) == 2
    assert found(service="other-svc").isdisjoint(ids)
    assert found(service="iris-svc", operation="inference", minDuration="50ms") == {ids[2]}
    assert found(service="iris-svc", operation="preprocess", minDuration="50ms") == set()
    # as in Jaeger, the filters hold for one span: the slow request's root is over 40 ms, its preprocess is not
    assert found(service="iris-svc", operation="predict", maxDuration="40ms") == set(ids) - {ids[2]}
    assert ids[2] in found(service="iris-svc", maxDuration="40ms")
    assert found(service="iris-svc", tags=json.dumps({"request.n": "3"})) == {ids[3]}
    assert found(service="iris-svc", tags=json.dumps({"error": "true"})) == {ids[4]}
    assert found(service="iris-svc", tag="request.n:5") == {ids[5]}
    now_us = int(time.time() * 1e6)
    assert found(service="iris-svc", start=now_us - 600_000_000, end=now_us) == set(ids)
    assert found(service="iris-svc", start=now_us + 1_000_000) == set()


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("traces", {}, 400, "parameter 'service' is required"),
        ("traces", {"service": "s", "minDuration": "soon"}, 400, "invalid duration"),
        ("traces", {"service": "s", "minDuration": "2s", "maxDuration": "1s"}, 400, "maxDuration"),
        ("traces", {"service": "s", "tags": "{nope"}, 400, "malformed 'tags'"),
        ("traces", {"service": "s", "tag": "nocolon"}, 400, "malformed 'tag'"),
        ("traces/xyz", {}, 400, "hex digits"),
        ("traces/" + "ab" * 16, {}, 404, "trace not found"),
        ("nothing", {}, 404, "no such endpoint"),
    ],
)
def test_bad_requests_get_a_jaeger_error(recorded, path, params, status, message) -> None:
    got, doc = _get(recorded[0], path, **params)
    assert got == status and doc["data"] is None and doc["errors"][0]["code"] == status
    assert message in doc["errors"][0]["msg"]


def test_the_trace_api_token_applies() -> None:
    with running_collector(auth_token="s3cret") as c:
        status, doc = _get(c.urls["listen"], "services")
        assert status == 401 and doc["errors"][0]["code"] == 401
        status, doc = _get(c.urls["listen"], "services", {"Authorization": "Bearer s3cret"})
        assert status == 200 and doc["data"] == []


def test_go_durations() -> None:
    assert parse_duration_us("1.5s") == 1_500_000 and parse_duration_us("100ms") == 100_000
    assert parse_duration_us("1h30m") == 5_400_000_000 and parse_duration_us("250us") == 250
    assert parse_duration_us("0") == 0
    for bad in ("", "5", "ms", "1s2", "-"):
        with pytest.raises(ValueError):
            parse_duration_us(bad)
