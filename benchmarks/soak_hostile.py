"""The soak's hostile client (issue 21) and what the soak checks it against.

``Attacker`` mixes into the normal load what once broke the collector: a new model name on every prediction
span (the detectors' gauges used to fill ``max_series``), 100 KB prediction ids and labels (the joiner's
tables grew by the gigabyte), floods of concurrent Jaeger searches and big trace fetches (they held every
``--listen`` connection, so scrapes failed). ``AppMetrics`` is the application beside it: a fixed set of
series sent every second, whose refused points (OTLP ``partial_success``) must stay 0. ``Prometheus`` is a
real one scraping ``/metrics`` every ``SCRAPE_S`` seconds (timeout as long); its ``up`` samples tell which
scrapes failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from modeltel import taxonomy as tx

KIND, MODEL, PID, LABEL = tx.SPAN_ATTR_KIND, tx.ATTR_MODEL_NAME, tx.SPAN_ATTR_PREDICTION_ID, tx.SPAN_ATTR_FEEDBACK_LABEL
PB = {"Content-Type": "application/x-protobuf"}
SCRAPE_S = 5
REFUSED = -1  # the status of a request that was not sent: nothing listened
SERVICE = "memory-bench"  # the service of the soak's valid senders (collector_memory.trace_request)


def _get(url: str, timeout: float = 30) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except OSError:
        return 0, b""


def _post(url: str, body: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """(status, body); status ``REFUSED`` when nothing listens, 0 when the request went out and no answer came back."""
    req = urllib.request.Request(url, data=body, headers=PB, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except OSError as e:
        return REFUSED if isinstance(getattr(e, "reason", e), ConnectionRefusedError) else 0, b""


def _spans(rows: list[dict[str, str]], service: str = "attacker") -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = service
    ss, now = rs.scope_spans.add(), time.time_ns()
    for attrs in rows:
        sp = ss.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name="predict")
        sp.start_time_unix_nano, sp.end_time_unix_nano = now - 5_000_000, now
        for key, value in attrs.items():
            sp.attributes.add(key=key).value.string_value = value
    return req.SerializeToString()


class Attacker:
    """Three hostile loops (``loops``), each until ``stop`` is set; ``sent`` counts what each did."""

    def __init__(self, http: str, listen: str, stop: threading.Event, answered: Callable[[int, int], object]) -> None:
        """``answered(spans, status)``: called for every trace export (the soak's span accounting; status 0:
        no answer came back, ``REFUSED``: nothing listened)."""
        self.http, self.listen, self.stop, self.answered = http, listen, stop, answered
        self.sent = {"model_names": 0, "long_ids": 0, "jaeger_queries": 0, "jaeger_429": 0}

    def loops(self, names: str) -> list:
        """The loops named in ``names`` (comma-separated: models, ids, queries)."""
        chosen = {"models": self.rotating_models, "ids": self.long_ids, "queries": self.query_flood}
        return [chosen[n] for n in names.split(",") if n]

    def rotating_models(self) -> None:
        n = 0
        while not self.stop.wait(1.0):  # 500 new model names a second
            rows = [{KIND: "prediction", MODEL: f"rot-{n + i}"} for i in range(500)]
            if self.answered(500, _post(self.http + "/v1/traces", _spans(rows))[0]):
                self.sent["model_names"] += 500
            n += 500

    def long_ids(self) -> None:
        long = "x" * 100_000
        while not self.stop.wait(5.0):  # 70 predictions and 70 labels with 100 KB ids and labels
            pred = [{KIND: "prediction", MODEL: "victim", PID: f"{long}{i}"} for i in range(70)]
            fb = [{KIND: "feedback", PID: f"{long}{i}", LABEL: long} for i in range(70)]
            for body in (_spans(pred), _spans(fb)):
                if self.answered(70, _post(self.http + "/v1/traces", body)[0]):
                    self.sent["long_ids"] += 70

    def query_flood(self) -> None:
        """Every 5 s: 150 concurrent Jaeger searches (limit 1000) and fetches of what they found."""
        search = self.listen + "/jaeger/api/traces?" + urllib.parse.urlencode({"service": SERVICE, "limit": 1000})
        with ThreadPoolExecutor(150) as pool:
            while not self.stop.wait(5.0):
                statuses = list(pool.map(lambda _: _get(search)[0], range(150)))
                status, body = _get(self.listen + f"/jaeger/api/traces?service={SERVICE}&limit=20")
                ids = [t["traceID"] for t in json.loads(body)["data"]] if status == 200 and body else []
                statuses += pool.map(lambda i: _get(f"{self.listen}/jaeger/api/traces/{i}")[0], ids)
                self.sent["jaeger_queries"] += len(statuses)
                self.sent["jaeger_429"] += statuses.count(429)


class AppMetrics:
    """The application's own metrics: 200 series, sent every second; counts what the collector refused."""

    def __init__(self, http: str, stop: threading.Event) -> None:
        self.http, self.stop = http, stop
        self.sent = self.refused = self.retried = 0

    def run(self) -> None:
        res = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="soak-app"))])
        while not self.stop.wait(1.0):
            points = [
                m.NumberDataPoint(as_double=float(i), attributes=[KeyValue(key="i", value=AnyValue(int_value=i))])
                for i in range(200)
            ]
            metric = m.Metric(name="soak_app_value", gauge=m.Gauge(data_points=points))
            rm = m.ResourceMetrics(resource=res, scope_metrics=[m.ScopeMetrics(metrics=[metric])])
            body = ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()
            status, body = _post(self.http + "/v1/metrics", body)
            if status == 200:
                self.sent += 200
                self.refused += ExportMetricsServiceResponse.FromString(body).partial_success.rejected_data_points
            else:
                self.retried += 200  # 429 / 503 / down: an SDK retries these; not a refusal for a limit


class Prometheus:
    """A real Prometheus scraping ``target`` (host:port) every ``SCRAPE_S``, in ``tmp``."""

    def __init__(self, tmp: str, target: str, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"global:\n  scrape_interval: {SCRAPE_S}s\n  scrape_timeout: {SCRAPE_S}s\nscrape_configs:\n"
                    f"  - job_name: soak\n    static_configs:\n      - targets: ['{target}']\n")  # fmt: skip
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={os.path.join(tmp, 'prom')}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while _get(self.base + "/-/ready", 2)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)

    def _samples(self, metric: str, minutes: float) -> dict[float, str]:
        q = urllib.parse.urlencode({"query": f"{metric}[{int(minutes * 60) + 60}s]"})
        status, body = _get(f"{self.base}/api/v1/query?{q}")
        result = json.loads(body)["data"]["result"] if status == 200 else []
        return {float(t): v for t, v in result[0]["values"]} if result else {}

    def failed_scrapes(
        self, run: tuple[float, float], down: list[tuple[float, float]]
    ) -> tuple[int, list[tuple[float, float]]]:
        """(scrapes, (wall time, duration) of those that failed while the collector was not down): from ``up``
        over ``run`` (wall start, wall end); ``down`` is the (wall start, wall end) of each restart, when a
        scrape cannot succeed. A duration near ``SCRAPE_S`` is a timeout; a short one, a refusal."""
        minutes = (time.time() - run[0]) / 60
        up, took = self._samples("up", minutes), self._samples("scrape_duration_seconds", minutes)
        up = {t: v for t, v in up.items() if run[0] <= t <= run[1]}
        failed = [t for t, v in up.items() if v == "0"]
        outside = [t for t in failed if not any(a - SCRAPE_S - 1 <= t <= b + 1 for a, b in down)]
        return len(up), [(t, round(float(took.get(t, "nan")), 2)) for t in outside]

    def last_error(self) -> str:
        status, body = _get(self.base + "/api/v1/targets")
        targets = json.loads(body)["data"]["activeTargets"] if status == 200 else []
        return targets[0]["lastError"] if targets else "no target"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
