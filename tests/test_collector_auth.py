"""Token-protected data stays protected: /metrics, TLS on every listener that takes the token, RFC 7235 schemes."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import grpc
import pytest

from tests.collector_helpers import PB, http_get, http_post, running_collector, self_signed_cert, trace_request
from tests.test_collector_prometheus import run_prometheus, scrape_health


def test_bearer_scheme_is_case_insensitive() -> None:
    with running_collector(auth_token="s3cret") as c:
        body = trace_request().SerializeToString()
        for scheme in ("bearer", "BEARER", "Bearer", "bEaReR"):
            auth = f"{scheme} s3cret"
            assert http_post(c.urls["otlp_http"] + "/v1/traces", body, {**PB, "Authorization": auth})[0] == 200
            with grpc.insecure_channel(c.urls["otlp_grpc"]) as ch:
                ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")(
                    body, timeout=5, metadata=(("authorization", auth),)
                )
            assert http_get(c.urls["listen"] + "/api/traces", {"Authorization": auth})[0] == 200
        for bad in ("Basic s3cret", "Bearers3cret", "s3cret", "Bearer s3cre"):
            assert http_post(c.urls["otlp_http"] + "/v1/traces", body, {**PB, "Authorization": bad})[0] == 401


def test_metrics_need_the_token_when_one_is_set_unless_opened() -> None:
    with running_collector(auth_token="s3cret") as c:
        assert http_get(c.urls["listen"] + "/metrics")[0] == 401
        assert http_get(c.urls["listen"] + "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
        status, _, body = http_get(c.urls["listen"] + "/metrics", {"Authorization": "bearer s3cret"})
        assert status == 200 and b"modeltel_collector_" in body
        assert http_get(c.urls["listen"] + "/healthz")[0] == 200  # probes carry no token and leak no data
    with running_collector(auth_token="s3cret", metrics_auth=False) as c:
        assert http_get(c.urls["listen"] + "/metrics")[0] == 200
        assert http_get(c.urls["listen"] + "/api/traces")[0] == 401
    with running_collector() as c:
        assert http_get(c.urls["listen"] + "/metrics")[0] == 200  # no token: nothing to require


def test_tls_covers_every_listener_and_prometheus_scrapes_with_token(tmp_path) -> None:
    cert, key = self_signed_cert(tmp_path)
    with running_collector(tls_cert=str(cert), tls_key=str(key), auth_token="s3cret") as c:
        assert all(c.urls[n].startswith("https://") for n in ("listen", "otlp_http"))
        plain = c.urls["listen"].replace("https://", "http://") + "/metrics"
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            http_get(plain, {"Authorization": "Bearer s3cret"})  # the token never crosses in plaintext
        ctx = ssl.create_default_context(cafile=str(cert))
        req = urllib.request.Request(c.urls["listen"] + "/metrics", headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            assert resp.status == 200
        job = (
            f"    scheme: https\n    tls_config:\n      ca_file: {cert}\n"
            "    authorization:\n      credentials: s3cret\n"
        )
        with run_prometheus(tmp_path, c.urls["listen"], job) as base:
            up, error = scrape_health(base, 0)
            assert up == 1, error


def test_a_token_in_a_console_url_is_refused_and_never_cached() -> None:
    """Browsers keep URLs (history, favicons, HTTP cache, sessions) and proxies log them: the console takes
    its token from the sign-in form only, and an old ``?token=`` link gets a 400 saying so."""
    with running_collector(auth_token="s3cret") as c:
        for path in ("/?token=s3cret", "/?refresh=0&token=s3cret", "/api/v1/console/models?token=s3cret"):
            status, headers, body = http_get(c.urls["listen"] + path)
            assert status == 400 and headers["Cache-Control"] == "no-store", path
            error = json.loads(body)["error"]
            assert "sign in" in error and "s3cret" not in error, error
        assert http_get(c.urls["listen"] + "/?refresh=0")[0] == 200  # the page itself still loads
        # API clients keep the header
        assert http_get(c.urls["listen"] + "/api/v1/console/models", {"Authorization": "Bearer s3cret"})[0] == 200


def test_a_failed_request_is_logged_without_credentials_in_its_query(caplog) -> None:
    with running_collector(auth_token="s3cret") as c:

        def broken(**_):
            raise RuntimeError("a bug")

        c.spans.search = broken
        auth = {"Authorization": "Bearer s3cret"}
        query = "service=x&token=hunter2&Access_Token=hunter3&api%5Fkey=hunter4"
        assert http_get(c.urls["listen"] + "/api/traces?" + query, auth)[0] == 500
        assert "GET /api/traces?service=x&token=<redacted>&Access_Token=<redacted>&api%5Fkey=<redacted>" in caplog.text
        assert "hunter" not in caplog.text
