"""A loopback alerting stack: real Prometheus and Alertmanager, a modeltel collector, the iris example
server under paced load, and a webhook that records what Alertmanager sends to each receiver.

The end-to-end test, ``benchmarks/mttd.py`` and the demo's alert scene all run this one launcher, with the
generated rule files and the generated route tree (receivers swapped for webhooks), so they prove what
production runs: a checkout's committed ``alerts/``, or, from an installed package, the same files rendered
from the taxonomy's default SLOs into the work folder. Prometheus and Alertmanager are Debian's
``prometheus`` and ``prometheus-alertmanager``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..generators import render_alerts
from ..generators.alertmanager import alertmanager_config
from ..generators.files import write_files
from ..generators.prometheus import prometheus_config
from ..generators.sloconfig import default_slo_config
from ..generators.yamlout import dump
from .loopback import MODEL_NAME, MODEL_VERSION, free_port, start_collector, stop_process, wait_http

__all__ = ["ALERTS_DIR", "AlertStack", "Notification", "missing_binaries", "print_install_hint"]

ALERTS_DIR = Path(__file__).resolve().parents[3] / "alerts"
BINARIES = {"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager"}


def missing_binaries() -> list[str]:
    """The Debian packages to install before the stack can run (empty when both are there)."""
    return [pkg for pkg in ("prometheus", "prometheus-alertmanager") if shutil.which(pkg) is None]


def print_install_hint(lead: str, missing: list[str]) -> None:
    """``lead`` and the packages to install, then how (the demo's scenes never fail for want of them)."""
    print(f"{lead}install {' and '.join(missing)} to see one arrive, e.g.")
    print(f"  sudo apt-get install {' '.join(missing)}   (Debian/Ubuntu; or `make system`)")


@dataclass(frozen=True)
class Notification:
    at: float  # time.monotonic() when the webhook received it
    receiver: str
    status: str
    alerts: list[dict]


class _Webhook(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.notifications: list[Notification] = []
        self.cond = threading.Condition()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Webhook

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        note = Notification(time.monotonic(), self.path.strip("/"), body.get("status", ""), body.get("alerts", []))
        with self.server.cond:
            self.server.notifications.append(note)
            self.server.cond.notify_all()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class AlertStack:
    """Start with ``with AlertStack(workdir, interval="1s") as stack:``; everything stops on exit.

    ``modeltel demo`` starts it in two steps instead, so its one collector can list this Alertmanager's
    alerts on the console: :meth:`start_alertmanager`, then its collector (given the Alertmanager's URL)
    as ``collector_urls``, then :meth:`start`; it calls :meth:`close` itself.
    """

    workdir: Path
    interval: str = "1s"  # scrape, rule evaluation and SDK export interval
    timing: dict[str, str] | None = None  # Alertmanager group waits (default: fast, for a local webhook)
    collector_urls: dict[str, str] | None = None  # a running collector to use; None: start one
    server_url: str = ""
    prometheus_url: str = ""
    alertmanager_url: str = ""
    procs: list[subprocess.Popen] = field(default_factory=list)
    webhook: _Webhook | None = None
    stop_load: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> AlertStack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.workdir / f"{Path(cmd[0]).name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        return proc

    def start_alertmanager(self) -> str:
        """The webhook and Alertmanager routing to it (once); returns Alertmanager's URL."""
        if self.webhook is not None:
            return self.alertmanager_url
        self.webhook = _Webhook()
        threading.Thread(target=self.webhook.serve_forever, daemon=True).start()
        webhook_url = f"http://127.0.0.1:{self.webhook.server_address[1]}"
        am_port = free_port()
        am_cfg = self.workdir / "alertmanager.yml"
        templates = str(self._alerts_dir() / "templates" / "*.tmpl")
        am_cfg.write_text(dump(alertmanager_config(local_webhook=webhook_url, templates=templates, timing=self.timing)))
        am = self._spawn([
            BINARIES["alertmanager"], f"--config.file={am_cfg}", f"--storage.path={self.workdir / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
        ])  # fmt: skip
        self.alertmanager_url = f"http://127.0.0.1:{am_port}"
        wait_http(self.alertmanager_url + "/-/ready", 30, am)
        return self.alertmanager_url

    def start(self) -> None:
        """Alertmanager (unless started), the collector (unless given), Prometheus and the served model."""
        self.start_alertmanager()
        if self.collector_urls is None:
            collector, self.collector_urls = start_collector(self.workdir)
            self.procs.append(collector)
        urls = self.collector_urls
        prom_port, server_port = free_port(), free_port()
        prom_cfg = self.workdir / "prometheus.yml"
        rules = sorted((self._alerts_dir() / "rules").glob("*.yml"))
        target = urls["listen"].split("://", 1)[1]
        am_address = self.alertmanager_url.split("://", 1)[1]
        prom_cfg.write_text(prometheus_config(rules, [target], am_address, self.interval))
        prom = self._spawn([
            BINARIES["prometheus"], f"--config.file={prom_cfg}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--enable-feature=exemplar-storage",
        ])  # fmt: skip
        self.prometheus_url = f"http://127.0.0.1:{prom_port}"
        wait_http(self.prometheus_url + "/-/ready", 30, prom)
        self._start_server(urls, server_port)

    def _alerts_dir(self) -> Path:
        if ALERTS_DIR.is_dir():
            return ALERTS_DIR
        rendered = self.workdir / "alerts"
        if not rendered.is_dir():
            write_files(rendered, render_alerts(default_slo_config()))
        return rendered

    # the example server it serves under `modeltel run`, the environment that names it, and its start-up time
    app: str = "modeltel.examples.iris_server:app"
    server_env: dict[str, str] = field(
        default_factory=lambda: {
            "OTEL_SERVICE_NAME": "iris-alerts",
            "MODELTEL_MODEL_NAME": MODEL_NAME,
            "MODELTEL_MODEL_VERSION": MODEL_VERSION,
            "IRIS_FAULTS": "1",
        }
    )
    start_timeout: float = 60.0

    def _start_server(self, urls: dict[str, str], port: int) -> None:
        millis = str(int(float(self.interval.rstrip("s")) * 1000))
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": urls["otlp_http"],
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRIC_EXPORT_INTERVAL": millis,
            **self.server_env,
        }
        server = self._spawn([
            sys.executable, "-m", "modeltel.cli", "run", "--",
            sys.executable, "-m", "uvicorn", self.app,
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        ], env)  # fmt: skip
        self.server_url = f"http://127.0.0.1:{port}"
        wait_http(self.server_url + "/healthz", self.start_timeout, server)

    def load(self, duration: float, rate: float, concurrency: int = 16) -> threading.Thread:
        """Paced load on the server in the background (no malformed requests: the faults are injected)."""
        from ..examples import loadgen

        args = (self.server_url + "/predict", duration, concurrency, 0.0, None, rate, self.stop_load)
        thread = threading.Thread(target=loadgen.drive, args=args, daemon=True)
        thread.start()
        return thread

    def inject(self, *, latency_s: float = 0.0, error_fraction: float = 0.0) -> float:
        """Set the server's faults; returns the monotonic time they took effect."""
        body = json.dumps({"latency_s": latency_s, "error_fraction": error_fraction}).encode()
        request = urllib.request.Request(self.server_url + "/faults", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10):
            return time.monotonic()

    def wait_for(self, match: Any, timeout: float, since: float = 0.0) -> Notification | None:
        """The first firing notification received after ``since`` for which ``match(notification)`` holds."""
        deadline = time.monotonic() + timeout
        assert self.webhook is not None
        with self.webhook.cond:
            while True:
                for note in self.webhook.notifications:
                    if note.at >= since and note.status == "firing" and match(note):
                        return note
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.webhook.cond.wait(left)

    def close(self) -> None:
        self.stop_load.set()
        stop_process(*reversed(self.procs))
        self.procs.clear()
        if self.webhook is not None:
            self.webhook.shutdown()
            self.webhook.server_close()
            self.webhook = None
