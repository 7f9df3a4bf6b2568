"""``modeltel demo``: serve the example iris model instrumented, load it, report from its telemetry.

The server runs under ``modeltel run`` and exports OTLP to a ``modeltel collector``. Every figure
printed comes from the collector's ``/metrics`` (histogram buckets and counters, computed the way
Prometheus' ``histogram_quantile`` and ``rate`` would) and its trace API, not from the load generator's
stopwatch: the demo shows what a user's dashboards will show. The collector runs as its own process,
since the SDK never imports the collector package.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import taxonomy as tx
from ..promql import histogram_quantile
from .demo_degradation import run_degradation_scene
from .loopback import free_port, samples, scrape, start_collector, start_server, stop_process, wait_http

if TYPE_CHECKING:
    from .alertstack import AlertStack

TRICKLE_RATE = 5.0  # requests/s under --keep: enough for live charts, little CPU


def stage_table(families: dict[str, Any]) -> list[tuple[str, int, float, float, float]]:
    """(stage, count, p50, p95, p99) from the stage and prediction latency buckets, summed over workers,
    as ``histogram_quantile(q, sum by (le, stage) (...))`` would compute them."""
    rows = []
    for family, label in ((tx.STAGE_LATENCY.prometheus_name, None), (tx.PREDICTION_LATENCY.prometheus_name, "")):
        buckets: dict[str, dict[float, float]] = {}
        for sample in samples(families, family, "_bucket"):
            stage = sample.labels.get(tx.ATTR_STAGE, "?") if label is None else "prediction (end to end)"
            le = float(sample.labels["le"])
            per_stage = buckets.setdefault(stage, {})
            per_stage[le] = per_stage.get(le, 0.0) + sample.value
        order = {s: i for i, s in enumerate(tx.CANONICAL_STAGES)}
        for stage in sorted(buckets, key=lambda s: (order.get(s, 99), s)):
            cumulative = sorted(buckets[stage].items())
            bounds = [le for le, _ in cumulative[:-1]]
            counts = [int(c - p) for (_, c), p in zip(cumulative, [0.0] + [c for _, c in cumulative[:-1]], strict=True)]
            quantiles = (histogram_quantile(q, bounds, counts) for q in (0.5, 0.95, 0.99))
            rows.append((stage, int(cumulative[-1][1]), *quantiles))
    return rows


def prediction_counts(families: dict[str, Any]) -> dict[str, float]:
    """``sum by (status) (model_predictions_total)``."""
    out: dict[str, float] = {}
    for sample in samples(families, tx.PREDICTIONS.prometheus_name, "_total"):
        status = sample.labels.get(tx.ATTR_STATUS, "")
        out[status] = out.get(status, 0.0) + sample.value
    return out


def resource_lines(families: dict[str, Any]) -> list[str]:
    """Host CPU/memory and one row per GPU from the server's exported meters; "no GPU found" once."""
    usage = {s.labels.get(tx.ATTR_RESOURCE_TYPE): s.value for s in samples(families, tx.RESOURCE_USAGE.prometheus_name)}
    lines = []
    if "cpu" in usage or "memory" in usage:
        lines.append(
            f"  host: cpu {usage.get('cpu', float('nan')):.1f}%, memory {usage.get('memory', float('nan')):.1f}%"
        )

    def by_gpu(prefix: str) -> dict[str, Any]:
        # the unit suffix differs between exposition paths (e.g. _ratio), so match the family by prefix
        names = [n for n in families if n.startswith(prefix)]
        return {s.labels.get("hw_id"): s for n in names for s in families[n].samples if s.name.startswith(prefix)}

    util = by_gpu(tx.GPU_UTILIZATION.prometheus_name)
    used, limit = by_gpu(tx.GPU_MEMORY_USAGE.prometheus_name), by_gpu(tx.GPU_MEMORY_LIMIT.prometheus_name)
    if not util:
        lines.append("  GPU: no GPU found")
    for hw_id, sample in sorted(util.items(), key=lambda kv: kv[1].labels.get("modeltel_gpu_index", "")):
        mem_used = used[hw_id].value if hw_id in used else float("nan")
        mem_limit = limit[hw_id].value if hw_id in limit else float("nan")
        lines.append(
            f"  GPU {sample.labels.get('modeltel_gpu_index')} {sample.labels.get('hw_name')}: {sample.value:.0%} busy,"
            f" memory {mem_used / 2**30:.1f} / {mem_limit / 2**30:.1f} GiB"
        )
    return lines


def _settledscrape(url: str, sent: int, timeout: float = 10.0) -> dict[str, Any]:
    """Scrape once the server's final export has been merged (all requests counted), or at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        families = scrape(url)
        if sum(prediction_counts(families).values()) >= sent or time.monotonic() > deadline:
            return families
        time.sleep(0.2)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def trace_lines(api: str) -> list[str]:
    """The slowest prediction's trace from the collector's trace API, as an indented span tree."""
    traces = _get_json(api + "/api/traces?kind=prediction&sort=duration&limit=1")["traces"]
    if not traces:
        return ["  no trace received"]
    trace_id = traces[0]["trace_id"]
    spans = _get_json(f"{api}/api/traces/{trace_id}")["spans"]
    children: dict[str | None, list[dict]] = {}
    ids = {s["span_id"] for s in spans}
    for span in sorted(spans, key=lambda s: s["start_time_unix_nano"]):
        parent = span["parent_span_id"] if span["parent_span_id"] in ids else None
        children.setdefault(parent, []).append(span)
    lines = [f"  slowest request: trace {trace_id} ({traces[0]['duration_ms']:.2f} ms)"]

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            status = " ERROR" if span["status"]["code"] == "error" else ""
            lines.append(f"    {'  ' * depth}{span['name']:<{36 - 2 * depth}} {span['duration_ms']:8.2f} ms{status}")
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    lines.append(f"    fetch it: curl {api}/api/traces/{trace_id}")
    return lines


class _Stopped(BaseException):
    """SIGINT or SIGTERM arrived: unwinds the demo so every ``finally`` stops its processes and files."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`_Stopped` once; later ones are ignored so the clean-up runs whole
    (each child gets SIGTERM, then SIGKILL after a bound, so it cannot hang)."""

    def handler(signum: int, _frame: object) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        raise _Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_demo(duration: float = 20.0, concurrency: int = 8, keep: bool = False) -> int:
    """The demo's scenes; Ctrl-C or SIGTERM at any point stops every process it started and removes its
    temporary files (exit 0 when that ends ``keep``'s wait, 128 + the signal's number before it)."""
    try:
        from ..examples import loadgen
    except ImportError as missing:  # the examples extra is not installed
        print(f"modeltel demo: {missing}; install it with: pip install 'modeltel[examples]'", file=sys.stderr)
        return 2
    try:
        with _stop_on_signals(), contextlib.ExitStack() as resources:
            _play(resources, loadgen, duration, concurrency, keep=keep)
    except _Stopped as stop:
        _say_stopped(stop)
        return 128 + stop.signum
    return 0


def _say_stopped(stop: _Stopped) -> None:
    print(f"\nmodeltel demo: stopped by {signal.Signals(stop.signum).name}; its processes and files are gone")


def _play(resources: contextlib.ExitStack, loadgen: Any, duration: float, concurrency: int, *, keep: bool) -> None:
    workdir = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="modeltel-demo-")))
    alerts = _alert_stack(resources, workdir)
    procs: list[subprocess.Popen] = []  # stopped together, within one bound, after the load ends
    resources.callback(lambda: stop_process(*reversed(procs)))
    collector, urls = start_collector(workdir, alerts.alertmanager_url if alerts else "")
    procs.append(collector)
    print(f"modeltel demo: collector at {urls['listen']} (OTLP/HTTP in at {urls['otlp_http']})")
    print(f"modeltel demo: its web console is live at {urls['listen']}/ while the demo runs")
    port = free_port()
    print(f"modeltel demo: starting the iris model server on 127.0.0.1:{port} under `modeltel run`")
    server = start_server(urls["otlp_http"], port)
    procs.append(server)
    stop_load = threading.Event()
    resources.callback(stop_load.set)  # before the server stops: the clients end instead of retrying
    wait_http(f"http://127.0.0.1:{port}/healthz", 60, server)
    print(f"modeltel demo: {concurrency} clients for {duration:.0f} s")
    print(f"  ({loadgen.ERROR_FRACTION:.0%} of requests carry a malformed row on purpose: the server rejects them in")
    print("  preprocessing, so the error counters and the error rate below have something to count)")
    before, start = prediction_counts(scrape(urls["listen"])), time.monotonic()
    result = loadgen.drive(
        f"http://127.0.0.1:{port}/predict", duration, concurrency, progress=loadgen.progress_bar, stop=stop_load
    )
    elapsed = time.monotonic() - start
    sys.stderr.write("\n")
    stop_process(server, timeout=30)  # SIGTERM: the SDK flushes what it has on exit
    families = _settledscrape(urls["listen"], result.sent)
    _print_report(families, before, elapsed, result, urls["listen"])
    if alerts is not None:
        alerts.collector_urls = urls
        _alert_scene(alerts, duration)
    run_degradation_scene(urls)
    print(f"\nmodeltel demo: open the console at {urls['listen']}/", flush=True)
    if keep:
        try:
            _keep_alive(resources, procs, loadgen, urls, collector)
        except _Stopped as stop:  # the expected way out of --keep: the ExitStack stops everything, exit 0
            _say_stopped(stop)


def _alert_stack(resources: contextlib.ExitStack, workdir: Path) -> AlertStack | None:
    """Alertmanager, started first so the demo's collector is connected to it (its console's Alerts page
    then lists what paged); None with one line on how to install Prometheus and Alertmanager."""
    try:
        from .alertstack import AlertStack
        from .demo_alerts import binaries_found
    except ImportError as missing:  # PyYAML: installed with the examples extra
        print(f"\nAlerts: skipped ({missing}); pip install 'modeltel[examples]' to see one arrive")
        return None
    if not binaries_found():
        return None
    (workdir / "alerts").mkdir()
    stack = AlertStack(workdir / "alerts")
    resources.callback(stack.close)
    stack.start_alertmanager()
    return stack


def _alert_scene(stack: AlertStack, duration: float) -> None:
    """The same model behind real Prometheus and Alertmanager, one fault, the page arriving."""
    from .demo_alerts import play_alert_scene

    stack.start()
    play_alert_scene(stack, duration=min(duration, 20.0))


def _keep_alive(
    resources: contextlib.ExitStack, procs: list, loadgen: Any, urls: dict[str, str], collector: Any
) -> None:
    """A trickle of load on the model until Ctrl-C or SIGTERM (:class:`_Stopped`), so the console's charts
    stay live; its server joins ``procs``, which the demo stops together."""
    port, stop = free_port(), threading.Event()
    server = start_server(urls["otlp_http"], port)
    procs.append(server)
    resources.callback(stop.set)
    wait_http(f"http://127.0.0.1:{port}/healthz", 60, server)
    args = (f"http://127.0.0.1:{port}/predict", math.inf, 2, loadgen.ERROR_FRACTION)
    threading.Thread(target=loadgen.drive, args=args, kwargs={"rate": TRICKLE_RATE, "stop": stop}, daemon=True).start()
    print(f"\nThe collector keeps running at {urls['listen']} (/metrics, /api/traces), the model serving a trickle")
    print(f"of {TRICKLE_RATE:.0f} requests/s so its charts stay live; the collector's detectors may read the drop from")
    print("the full load as throughput_drop on the Alerts page. Ctrl-C (or SIGTERM) stops it all.", flush=True)
    while collector.poll() is None:  # not wait(): the signal may reach a trickle thread, and CPython then runs
        time.sleep(0.5)  # the handler only when the main thread next runs bytecode, never inside waitpid


def _print_report(families: dict[str, Any], before: dict[str, float], elapsed: float, result: Any, api: str) -> None:
    counts = prediction_counts(families)
    total = sum(counts.values())
    rate = (total - sum(before.values())) / elapsed if elapsed > 0 else 0.0
    print(f"\nFrom the collector's /metrics ({api}/metrics), as Prometheus would compute it:")
    print(f"  {'stage':26} {'count':>8} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}")
    for stage, count, p50, p95, p99 in stage_table(families):
        print(f"  {stage:26} {count:8d} {p50 * 1e3:9.2f} {p95 * 1e3:9.2f} {p99 * 1e3:9.2f}")
    errors = counts.get(tx.STATUS_ERROR, 0.0)
    print(
        f"  throughput: {rate:.1f} predictions/s; error rate: {errors / total if total else 0:.2%} of {int(total)}"
        " (the malformed rows)"
    )
    print(f"  (the load generator saw {result.sent} requests, {result.failed} failed)")
    for line in resource_lines(families):
        print(line)
    for line in trace_lines(api):
        print(line)
