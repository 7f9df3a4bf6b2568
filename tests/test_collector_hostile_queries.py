"""Every GET gets a well-formed answer: out-of-range numbers, overflowing durations, deeply nested or huge
``tags`` and over-long URLs are refused with a JSON 400/414, nothing closes a connection unanswered, and
every JSON answer is strict JSON (no ``Infinity``) with ``X-Content-Type-Options: nosniff``."""

from __future__ import annotations

import http.client
import json
import os
import random
from urllib.parse import quote, urlsplit

import pytest

from tests.collector_helpers import PB, http_get, http_post, running_collector, trace_request

HOSTILE = [
    "/api/traces?min_duration_ms=1e13",
    "/api/traces?min_duration_ms=1e300",
    "/api/traces?min_duration_ms=-1e300",
    "/jaeger/api/traces?service=x&minDuration=2562048h",
    "/jaeger/api/traces?service=x&maxDuration=99999999999h",
    "/jaeger/api/traces?service=x&start=99999999999999999999999",
    "/jaeger/api/traces?service=x&tags=" + "[" * 30_000,
    "/jaeger/api/traces?service=x&tags=" + "[" * 3_000,  # under the length bound, past the parser's depth
    "/api/v1/console/models?window_s=inf",
    "/api/v1/console/model?name=m&range_s=nan",
]


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, dict[str, str], bytes]:
    """One GET on a kept-alive connection; any failure to read a full answer fails the test."""
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    if resp.will_close:
        conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def _check_json(path: str, headers: dict[str, str], body: bytes) -> None:
    if headers.get("content-type", "").startswith("application/json"):
        assert headers.get("x-content-type-options") == "nosniff", path
        json.loads(body, parse_constant=lambda c: pytest.fail(f"{path[:80]}: {c} is not JSON"))


@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p[:60])
def test_hostile_parameters_get_a_json_400(path: str) -> None:
    with running_collector() as c:
        url = urlsplit(c.urls["listen"])
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        status, headers, body = _get(conn, path)
        assert status == 400, (path[:80], status, body[:200])
        _check_json(path, headers, body)
        doc = json.loads(body)
        assert doc.get("error") or doc["errors"][0]["msg"]


def test_a_url_too_long_gets_a_json_414() -> None:
    with running_collector() as c:
        status, headers, body = http_get(c.urls["listen"] + "/api/traces?x=" + "a" * 70_000)
        assert status == 414 and json.loads(body)["error"]
        assert headers["Content-Type"] == "application/json"


def test_non_finite_numbers_are_never_sent_as_json() -> None:
    from modeltel.plainjson import dumps

    text = dumps({"a": float("inf"), "b": [float("nan"), 1.5], "c": (float("-inf"),)})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"a": None, "b": [None, 1.5], "c": [None]}


_ENDPOINTS = [
    "/metrics", "/healthz", "/api/traces", "/api/traces/0123456789abcdef0123456789abcdef", "/api/traces/zz",
    "/jaeger/api/services", "/jaeger/api/services/svc/operations", "/jaeger/api/traces",
    "/jaeger/api/traces/0123456789abcdef", "/api/v1/console/models", "/api/v1/console/model",
    "/api/v1/console/resources", "/api/v1/console/history", "/api/v1/console/alerts", "/", "/nope",
]  # fmt: skip
_KEYS = ["service", "model", "stage", "status", "kind", "name", "min_duration_ms", "sort", "limit", "operation",
         "tags", "tag", "minDuration", "maxDuration", "start", "end", "window_s", "range_s", "version"]  # fmt: skip
_VALUES = ["", "0", "-1", "1e13", "1e300", "-1e300", "inf", "-inf", "nan", "NaN", "9" * 40, "-" + "9" * 25,
           "2562048h", "9999999999h", "1.5s", "0x10", "1_000", "[" * 50, "{" * 50, '{"a":' * 400,
           '{"k":"v"}', "[1,2]", "null", "k:v", ":", "\u00e9\u4e2d", "%E0%A4%A", "%00", "%ff%fe", "a" * 3000,
           "duration", "recent", "error", "prediction", "svc", " ", "+1", "1e-400", "\\", '"', "'"]  # fmt: skip


def _fuzz_paths(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    paths = []
    for _ in range(n):
        params = []
        for _ in range(rng.randint(0, 4)):
            value = rng.choice(_VALUES)
            if rng.random() < 0.3:
                value = value + rng.choice(_VALUES)
            # sometimes unencoded: broken percent escapes reach the parser as they are
            raw = rng.random() < 0.2 and value.isascii() and " " not in value
            params.append(f"{rng.choice(_KEYS)}={value if raw else quote(value)}")
        paths.append(rng.choice(_ENDPOINTS) + ("?" + "&".join(params) if params else ""))
    return paths


def test_fuzzed_queries_all_get_answers_and_the_collector_still_ingests() -> None:
    with running_collector() as c:
        url = urlsplit(c.urls["listen"])
        tid = os.urandom(16)
        assert http_post(c.urls["otlp_http"] + "/v1/traces", trace_request(2, service="svc", trace_id=tid)
                         .SerializeToString(), PB)[0] == 200  # fmt: skip
        c.flush()
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        statuses: dict[int, int] = {}
        for path in _fuzz_paths(3000, seed=21):
            status, headers, body = _get(conn, path)
            assert 200 <= status < 500, (path[:120], status, body[:300])
            statuses[status] = statuses.get(status, 0) + 1
            _check_json(path, headers, body)
        assert statuses.get(400, 0) > 100 and statuses.get(200, 0) > 100, statuses
        after = os.urandom(16)
        assert http_post(c.urls["otlp_http"] + "/v1/traces", trace_request(1, service="svc", trace_id=after)
                         .SerializeToString(), PB)[0] == 200  # fmt: skip
        c.flush()
        assert http_get(f"{c.urls['listen']}/api/traces/{after.hex()}")[0] == 200


def test_otlp_json_answers_are_not_sniffed_either() -> None:
    with running_collector() as c:
        status, headers, _ = http_post(c.urls["otlp_http"] + "/v1/traces", b"{}", {"Content-Type": "application/json"})
        assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"
        status, headers, _ = http_get(c.urls["listen"] + "/metrics")
        assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"


def test_an_unforeseen_failure_gets_a_logged_json_500(caplog) -> None:
    with running_collector() as c:

        def broken(**_):
            raise RuntimeError("a bug")

        c.spans.search = broken
        status, _, body = http_get(c.urls["listen"] + "/api/traces?service=x")
        assert status == 500 and json.loads(body)["error"]
        assert "GET /api/traces?service=x failed" in caplog.text
        assert http_get(c.urls["listen"] + "/healthz")[0] == 200
