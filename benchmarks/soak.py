"""Soak: mixed valid, hostile and oversized OTLP traffic against ``modeltel collector`` for ``--minutes``,
with a fault every ``--fault-every`` seconds, alternately a SIGKILL + restart and a disk-full episode.

The trace store lives on a small tmpfs, so a disk-full episode is a real ENOSPC: the tmpfs is shrunk to
what is in use for ``--full-s`` seconds, then enlarged again (root is needed to mount it). Printed at the
end: spans acknowledged (answered 200/OK) vs stored vs dropped by reason (the collector's self-metrics,
read every 5 s) vs lost; for each SIGKILL, what it lost against the documented window (acknowledged in
the last max_unwritten_s, plus the time to write what was queued then); peak RSS; time to recover after
each fault (a restart: until /healthz first answers, which ends the restart's window for the scrape
count, and until the first 200; disk space back: until /healthz says ok and a probe trace is readable
again). Mixed in (``soak_hostile``): a hostile client rotating model names, sending 100 KB ids and
labels and flooding the Jaeger API; an application's 200 metric series, whose refused points are counted
(goal 0); a real Prometheus scraping /metrics every 5 s, whose failed scrapes are counted (goal 0
outside the restarts); and the largest /metrics seen.

    sudo python benchmarks/soak.py [--minutes 10] [--fault-every 30] [--full-s 8]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import grpc
import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from collector_memory import big_request, trace_request
from soak_hostile import REFUSED, AppMetrics, Attacker, Prometheus

PB = {"Content-Type": "application/x-protobuf"}
MAX_UNWRITTEN_S = 5.0
WINDOW_SLACK_S = 2.5  # time to write what was queued when the window began (see docs/collector-hardening.md)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 30) -> int:
    """The status; ``REFUSED`` when nothing listens, 0 when the request went out and no answer came back."""
    req = urllib.request.Request(url, data=body, headers={**PB, **(headers or {})}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        return REFUSED if isinstance(getattr(e, "reason", e), ConnectionRefusedError) else 0


class Soak:
    def __init__(self, tmp: str, args) -> None:
        self.args = args
        self.mnt = os.path.join(tmp, "store")
        os.makedirs(self.mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8g", "tmpfs", self.mnt], check=True)
        self.db = os.path.join(self.mnt, "traces.db")
        self.ports = {"otlp_http": free_port(), "otlp_grpc": free_port(), "listen": free_port()}
        self.http = f"http://127.0.0.1:{self.ports['otlp_http']}"
        self.listen = f"http://127.0.0.1:{self.ports['listen']}"
        self.config = os.path.join(tmp, "collector.toml")
        with open(self.config, "w") as f:
            f.write("".join(f'{k} = "127.0.0.1:{p}"\n' for k, p in self.ports.items()))
            f.write(f'trace_db = "{self.db}"\ntrace_max_spans = 50000000\ntrace_max_age_s = 86400.0\n')
            f.write(f"max_unwritten_s = {MAX_UNWRITTEN_S}\n")
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.acks: list[tuple[float, int]] = []  # (monotonic time, spans) of every 200/OK
        self.unanswered = 0  # spans sent that got no answer (a kill or a timeout): stored or not, who knows
        self.dropped: list[dict[str, float]] = [{}]  # per collector lifetime: last scraped drop counters
        self.peak_rss = 0
        self.max_metrics_bytes = 0
        self.stop = threading.Event()
        self.attacker = Attacker(self.http, self.listen, self.stop, self.answered)
        self.app = AppMetrics(self.http, self.stop)
        self.prometheus = Prometheus(tmp, f"127.0.0.1:{self.ports['listen']}", free_port())

    # ------------------------------------------------------------------ the collector process
    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "modeltel_collector", "--config", self.config],
                                     stdout=subprocess.DEVNULL)  # fmt: skip

    def wait_up(self, timeout_s: float = 60) -> dict[str, float]:
        """Seconds until /healthz first answers (``healthz_s``, at wall time ``healthz_wall``) and until the
        collector acknowledges a probe export (``ack_s``), polled together."""
        t0, up = time.monotonic(), {}
        while time.monotonic() - t0 < timeout_s and len(up) < 3:
            if "healthz_s" not in up and self.health():
                up.update(healthz_s=time.monotonic() - t0, healthz_wall=time.time())
            if "ack_s" not in up and self.answered(1, post(self.http + "/v1/traces", trace_request(1), timeout=2)):
                up["ack_s"] = time.monotonic() - t0
            time.sleep(0.05)
        if len(up) < 3:
            raise RuntimeError("collector did not come back")
        return up

    def answered(self, spans: int, status: int) -> bool:
        """Count an export of ``spans`` by its answer (``post``'s status); True when acknowledged."""
        with self.lock:
            if status == 200:
                self.acks.append((time.monotonic(), spans))
            elif status == 0:
                self.unanswered += spans
        return status == 200

    # ------------------------------------------------------------------ traffic
    def valid_http(self) -> None:
        while not self.stop.is_set():
            self.answered(100, post(self.http + "/v1/traces", trace_request(100, 200), timeout=10))
            time.sleep(0.02)

    def valid_grpc(self) -> None:
        target = f"127.0.0.1:{self.ports['otlp_grpc']}"
        while not self.stop.is_set():
            with grpc.insecure_channel(target) as ch:
                call = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
                while not self.stop.is_set():
                    try:
                        call(trace_request(100, 200), timeout=10)
                        self.answered(100, 200)
                    except grpc.RpcError as e:
                        self.answered(100, _grpc_status(e))
                        if e.code() == grpc.StatusCode.UNAVAILABLE:
                            break  # the collector is down: reconnect
                    time.sleep(0.02)
            time.sleep(0.2)

    def hostile(self) -> None:
        far_future = trace_request(5, start_time_unix_nano=2**63 + 1, end_time_unix_nano=2**64 - 1)
        metric_bodies = _hostile_metrics()
        bomb = gzip.compress(b"\0" * (64 << 20))
        deep_json = b'{"resourceSpans": ' + b"[" * 50_000
        cases = [
            lambda: post(self.http + "/v1/traces", b"\xff\xff\xff\xff"),
            lambda: post(self.http + "/v1/traces", bomb, {"Content-Encoding": "gzip"}),
            lambda: post(self.http + "/v1/traces", deep_json, {"Content-Type": "application/json"}),
            lambda: self.answered(5, post(self.http + "/v1/traces", far_future)),
            *[lambda b=b: post(self.http + "/v1/metrics", b) for b in metric_bodies],
            self.bad_chunked,
            self.slowloris,
        ]
        i = 0
        while not self.stop.is_set():
            cases[i % len(cases)]()
            i += 1
            time.sleep(0.1)

    def bad_chunked(self) -> None:
        head = ("POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                "Transfer-Encoding: chunked\r\n\r\n-1\r\n")  # fmt: skip
        try:
            with socket.create_connection(("127.0.0.1", self.ports["otlp_http"]), timeout=5) as s:
                s.sendall(head.encode() + b"x" * 100_000)
                s.recv(100)
        except OSError:
            pass

    def slowloris(self) -> None:
        socks = []
        try:
            for _ in range(20):
                s = socket.create_connection(("127.0.0.1", self.ports["listen"]), timeout=5)
                s.sendall(b"GET /metrics HTTP/1.1\r\n")
                socks.append(s)
        except OSError:
            pass
        time.sleep(2)
        for s in socks:
            s.close()

    def oversized(self) -> None:
        near_limit, over_limit = big_request(7.0), big_request(9.0)
        n_near = _span_count(near_limit)
        while not self.stop.wait(self.args.oversized_every):
            self.answered(n_near, post(self.http + "/v1/traces", near_limit, timeout=60))
            post(self.http + "/v1/traces", over_limit, timeout=60)  # 413

    # ------------------------------------------------------------------ observation
    def observe(self) -> None:
        """Peak RSS every 100 ms; the drop counters every 5 s, and before each kill (they restart with the process)."""
        last_scrape = 0.0
        while not self.stop.wait(0.1):
            proc = self.proc
            with contextlib.suppress(psutil.Error, AttributeError):
                self.peak_rss = max(self.peak_rss, psutil.Process(proc.pid).memory_info().rss)
            if time.monotonic() - last_scrape > 5.0:
                last_scrape = time.monotonic()
                counters = self.scrape_dropped()
                if counters is not None:
                    self.dropped[-1] = counters

    def scrape_dropped(self) -> dict[str, float] | None:
        try:
            text = urllib.request.urlopen(self.listen + "/metrics", timeout=5).read().decode()
        except OSError:
            return None
        self.max_metrics_bytes = max(self.max_metrics_bytes, len(text))
        out = {}
        for line in text.splitlines():
            if line.startswith("modeltel_collector_dropped_total{"):
                label, value = line.split('"')[1], float(line.rsplit(" ", 1)[1])
                out[label] = value
        return out

    def health(self) -> dict:
        try:
            return json.load(urllib.request.urlopen(self.listen + "/healthz", timeout=5))
        except OSError:
            return {}

    # ------------------------------------------------------------------ faults
    def kill(self) -> dict:
        final = self.scrape_dropped()
        if final is not None:
            self.dropped[-1] = final
        self.proc.send_signal(signal.SIGKILL)
        killed_at, wall = time.monotonic(), time.time()
        sizes = {ext: os.path.getsize(self.db + ext) if os.path.exists(self.db + ext) else 0 for ext in ("", "-wal")}
        self.proc.wait()
        self.dropped.append({})
        self.start()
        up = self.wait_up()
        return {"fault": "SIGKILL", "at": killed_at, "wall": wall, "down": (wall, up["healthz_wall"]),
                "recover_s": up["ack_s"], "healthz_s": up["healthz_s"], "sizes": sizes}  # fmt: skip

    def disk_full(self) -> dict:
        wall = time.time()
        for _ in range(10):  # the store grows meanwhile: a size below what is in use is refused, measure again
            used = os.statvfs(self.mnt)
            used_bytes = (used.f_blocks - used.f_bfree) * used.f_frsize
            shrink = ["mount", "-o", f"remount,size={used_bytes + (1 << 20)}", self.mnt]
            if subprocess.run(shrink, stderr=subprocess.DEVNULL).returncode == 0:
                break
        else:
            raise RuntimeError("could not shrink the tmpfs to what is in use")
        time.sleep(self.args.full_s)
        degraded = self.health().get("trace_store", "")
        subprocess.run(["mount", "-o", f"remount,size={max(8 << 30, 2 * used_bytes)}", self.mnt], check=True)
        t0, last = time.monotonic(), 0
        probe = trace_request(1)
        trace_hex = _parse(probe).resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
        while time.monotonic() - t0 < 120:
            if self.answered(1, post(self.http + "/v1/traces", probe, timeout=5)):
                break
            time.sleep(0.05)
        while time.monotonic() - t0 < 120:
            ok = self.health().get("trace_store") == "ok"
            try:
                last = urllib.request.urlopen(f"{self.listen}/api/traces/{trace_hex}", timeout=5).status
            except urllib.error.HTTPError as e:
                last = e.code  # 404: not written yet; 429: the query share is taken (the Jaeger flood)
            except OSError:
                last = 0
            if ok and last == 200:
                break
            time.sleep(0.1)
        during = f"{degraded[:60]}; last probe fetch {last}"
        return {"fault": "disk full", "wall": wall, "store_during": during, "recover_s": time.monotonic() - t0}

    # ------------------------------------------------------------------ the run
    def run(self) -> None:
        self.start()
        self.wait_up()
        workers = [self.valid_http, self.valid_http, self.valid_grpc, self.hostile, self.oversized, self.app.run]
        workers += self.attacker.loops(self.args.attack)
        threads = [threading.Thread(target=w, daemon=True) for w in [*workers, self.observe]]
        for t in threads:
            t.start()
        self.run_wall = (time.time(), 0.0)  # the traffic's span, wall clock (Prometheus' timestamps)
        faults, end, n = [], time.monotonic() + self.args.minutes * 60, 0
        while time.monotonic() + self.args.fault_every < end:
            time.sleep(self.args.fault_every)
            faults.append(self.kill() if n % 2 == 0 else self.disk_full())
            n += 1
            print(f"  {_recovery(faults[-1])}", flush=True)
        time.sleep(max(0.0, end - time.monotonic()))
        self.run_wall = (self.run_wall[0], time.time())
        self.stop.set()
        for t in threads:
            t.join(90)
        final = self.scrape_dropped()
        if final is not None:
            self.dropped[-1] = final
        self.proc.send_signal(signal.SIGTERM)  # a graceful stop writes everything accepted
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:  # still reported: what was stored by then, the rest counts as lost
            print("the collector did not stop within 120 s of SIGTERM: killed", flush=True)
            self.proc.kill()
            self.proc.wait()
        self.report(faults)

    def report(self, faults: list[dict]) -> None:
        conn = sqlite3.connect(self.db)
        try:
            stored = conn.execute("SELECT COALESCE(SUM(span_count), 0) FROM traces").fetchone()[0]
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
        acked = sum(n for _, n in self.acks)
        reasons: dict[str, float] = {}
        for lifetime in self.dropped:
            for k, v in lifetime.items():
                reasons[k] = reasons.get(k, 0) + v
        span_drops = sum(v for k, v in reasons.items() if k.startswith("spans_"))
        lost = acked - stored - span_drops
        windows = sum(
            n for f in faults if f["fault"] == "SIGKILL"
            for t, n in self.acks if f["at"] - MAX_UNWRITTEN_S - WINDOW_SLACK_S < t <= f["at"]
        )  # fmt: skip
        print(f"\nsoak: {self.args.minutes:g} min, {len(faults)} faults, store integrity: {integrity}")
        print(f"spans acknowledged {acked}, stored {stored}, dropped {span_drops:.0f}, lost {lost:.0f} (acknowledged "
              f"- stored - dropped); sent without an answer {self.unanswered} (a negative loss is spans of these "
              "that were stored)")  # fmt: skip
        print("dropped by reason: " + ", ".join(f"{k}={v:.0f}" for k, v in sorted(reasons.items())))
        print(f"lost at SIGKILL: {lost:.0f} spans; acknowledged within the documented windows before the kills: "
              f"{windows} ({'inside' if lost <= windows else 'OUTSIDE'} the window)")  # fmt: skip
        print(f"peak RSS {self.peak_rss / 2**20:.0f} MB, largest /metrics {self.max_metrics_bytes / 2**20:.2f} MB")
        down = [f["down"] for f in faults if "down" in f]
        scrapes, failed = self.prometheus.failed_scrapes(self.run_wall, down)
        print(f"Prometheus scrapes {scrapes}, failed outside the restarts {len(failed)}; "
              f"last error: {self.prometheus.last_error() or 'none'}")  # fmt: skip
        for t, took in failed:  # when, against the fault before it
            fault = max((f for f in faults if f["wall"] <= t), key=lambda f: f["wall"], default=None)
            since = f"{t - fault['wall']:.1f} s after the {fault['fault']} begun" if fault else "before any fault"
            print(f"  failed scrape at +{t - self.run_wall[0]:.1f} s ({since}), taking {took} s")
        app = self.app
        print(f"application metric points sent {app.sent}, refused {app.refused}, "
              f"answered 429/503/down (retried by an SDK) {app.retried}")  # fmt: skip
        print("hostile client: " + ", ".join(f"{k}={v}" for k, v in self.attacker.sent.items()))
        for f in faults:
            print(f"  {_recovery(f)}")

    def close(self) -> None:
        self.prometheus.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["umount", self.mnt], check=False)


def _recovery(fault: dict) -> str:
    if fault["fault"] == "SIGKILL":
        healthz, ack = fault["healthz_s"], fault["recover_s"]
        db, wal = (fault["sizes"][ext] / 2**20 for ext in ("", "-wal"))
        return (f"SIGKILL    /healthz answered after {healthz:.2f} s, first 200 after {ack:.2f} s "
                f"(store {db:.0f} MiB, WAL {wal:.0f} MiB at the kill)")  # fmt: skip
    return f"disk full  recovered in {fault['recover_s']:.2f} s (store during: {fault['store_during']})"


def _grpc_status(error: grpc.RpcError) -> int:
    """``post``'s status for a failed call: refused when nothing listened, 0 when no answer came back."""
    code = error.code()
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in (error.details() or "").lower():
        return REFUSED
    return 0 if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) else 503


def _parse(body: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(body)


def _span_count(body: bytes) -> int:
    return sum(len(ss.spans) for rs in _parse(body).resource_spans for ss in rs.scope_spans)


def _hostile_metrics() -> list[bytes]:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    def request(name: str, **attrs: str) -> bytes:
        kv = [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()]
        point = m.NumberDataPoint(as_double=1.0, attributes=kv)
        metric = m.Metric(name=name, gauge=m.Gauge(data_points=[point]))
        res = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="soak"))])
        rm = m.ResourceMetrics(resource=res, scope_metrics=[m.ScopeMetrics(metrics=[metric])])
        return ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()

    return [request(""), request("_total"), request("x", le="1", job="other"), request("target_info")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--fault-every", type=float, default=30.0, help="seconds between faults")
    ap.add_argument("--full-s", type=float, default=8.0, help="seconds each disk-full episode lasts")
    ap.add_argument("--attack", default="models,ids,queries", help="the hostile client's loops (soak_hostile)")
    ap.add_argument("--oversized-every", type=float, default=10.0, help="seconds between 7 MiB requests")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("soak.py mounts a tmpfs for its disk-full episodes: run it as root")
    with tempfile.TemporaryDirectory() as tmp:
        soak = Soak(tmp, args)
        try:
            soak.run()
        finally:
            soak.close()


if __name__ == "__main__":
    main()
