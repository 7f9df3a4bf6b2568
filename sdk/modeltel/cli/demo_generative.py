"""``modeltel demo --generative``: the OpenAI-compatible example server on the tiny language model under
``modeltel run``, streaming chat clients, a decode slowdown, and the time-per-output-token alert arriving.

The same loopback stack as the alert scene (:mod:`.alertstack`: a collector, real Prometheus and
Alertmanager with the generated rules, a webhook standing in for the pager) serves
:mod:`modeltel.examples.openai_server` instead of the iris model. The FastAPI instrumentor turns every
streamed answer into a generation (time to first token, time per output token), the clients stream
``/v1/chat/completions``, and after a baseline every decoding step is made to sleep: p95 TPOT crosses the
``CriticalTimePerOutputToken`` threshold while TTFT stays where it was, Prometheus holds the alert
pending for its ``for:`` window (two minutes, as in production: the rules are not shortened for the
demo), then Alertmanager pages. Figures printed come from Prometheus, as a dashboard's would.

The collector's own detectors (the analytics extra, at the demo's ``analytics_time_scale``) learn the
model's baseline first, without the model's slow first seconds (``Settings.warmup_s``: learned, the cold
model's answers would set the reference's p95 and hide the slowdown); the slowdown is injected once they
have. Their ``tpot_shift`` detection, the alert going pending and the page are watched together and the
scene ends with the detection delays: seconds from the slowdown to each. The detector needs about a third
of its 100-generation window slowed, so its delay is set by how many generations the slowed model still
answers a second.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .. import taxonomy as tx
from . import slo_report
from .alertstack import AlertStack, Notification, missing_binaries, print_install_hint
from .demo_alerts import show_notification
from .demo_degradation import detector_value, detectors_on, wait_metrics
from .loopback import scrape

__all__ = ["GenerativeStack", "run_generative_demo"]

MODEL = "tinylm"
ALERT = "CriticalTimePerOutputToken"
CHECK = "tpot_shift"  # the collector's detector for the fault the scene injects
CHAT = {
    "model": MODEL, "messages": [{"role": "user", "content": "tell me about tokens"}], "max_tokens": 12,
    "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True,
}  # fmt: skip


def stream_chat(host: str, port: int) -> int:
    """One streamed chat completion read to its end; the HTTP status."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(CHAT), {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@dataclass
class GenerativeStack(AlertStack):
    """:class:`AlertStack` serving the OpenAI-compatible example server (with its fault knob)."""

    app: str = "modeltel.examples.openai_server:app"
    server_env: dict[str, str] = field(
        default_factory=lambda: {
            "OTEL_SERVICE_NAME": "tinylm-demo",
            "MODELTEL_MODEL_NAME": MODEL,
            "MODELTEL_MODEL_VERSION": "1",
            "MODELTEL_HOST_METRICS": "false",
            "OPENAI_SERVER_FAULTS": "1",
            # spans within the demo collector's scaled lag (0.5 s): a generation handed over later than that
            # is dropped by its detectors as late, and the default 5-s batches would leave them a few
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
    )
    start_timeout: float = 120.0  # importing transformers and building the model

    def load(self, duration: float, rate: float, concurrency: int = 4) -> threading.Thread:
        """``concurrency`` clients streaming chat completions, ``rate`` requests/s in all, until stopped."""
        parts = urllib.parse.urlsplit(self.server_url)

        def client() -> None:
            period, deadline = concurrency / rate, time.monotonic() + duration
            while not self.stop_load.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                with contextlib.suppress(OSError):  # the server is going away at the end
                    stream_chat(parts.hostname or "127.0.0.1", parts.port or 80)
                self.stop_load.wait(max(0.0, period - (time.monotonic() - started)))

        threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        return threads[0]

    def slow_decode(self, delay_s: float) -> float:
        """Make every decoding step sleep ``delay_s``; returns the monotonic time it took effect."""
        body = json.dumps({"decode_delay_s": delay_s}).encode()
        request = urllib.request.Request(self.server_url + "/faults", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10):
            return time.monotonic()

    def query(self, promql: str) -> float | None:
        """One instant value from Prometheus (a query without model labels), or None when it is empty."""
        return next(iter(slo_report.query(self.prometheus_url, promql).values()), None)

    def alert_state(self, name: str) -> str | None:
        """``pending`` / ``firing`` for alert ``name`` in Prometheus, or None."""
        with urllib.request.urlopen(self.prometheus_url + "/api/v1/alerts", timeout=10) as response:
            alerts = json.load(response)["data"]["alerts"]
        states = {a["state"] for a in alerts if a["labels"].get("alertname") == name}
        return "firing" if "firing" in states else "pending" if "pending" in states else None


def p95(instrument: tx.Instrument, window: str = "30s") -> str:
    """PromQL for an instrument's p95 over ``window``, as the dashboards compute it."""
    return f"histogram_quantile(0.95, sum by (le) (rate({instrument.prometheus_name}_bucket[{window}])))"


def _figures(stack: GenerativeStack) -> str:
    values = [
        stack.query(p95(i)) for i in (tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN)
    ]
    ttft, tpot = (f"{v * 1e3:.1f} ms" if v is not None and v == v else "n/a" for v in values)
    return f"p95 time to first token {ttft}, p95 time per output token {tpot}"


def _detector(families: dict, instrument: tx.Instrument, **labels: str) -> float | None:
    return detector_value(families, instrument, CHECK, model_name=MODEL, model_version="1", **labels)


def detectors_learned(stack: GenerativeStack, timeout: float = 90.0) -> bool:
    """Whether the collector's detectors run and have learned the model's baseline (they report a
    ``tpot_shift`` p-value) within ``timeout`` s; says which on one line."""
    listen = (stack.collector_urls or {})["listen"]
    if not detectors_on(listen):
        print("  detectors: off in this collector (pip install 'modeltel[analytics]'); Prometheus alone follows")
        return False
    learned = wait_metrics(listen, lambda f: _detector(f, tx.DEGRADATION_P_VALUE) is not None, timeout)
    print("  the collector's detectors " + ("learned the baseline" if learned else f"no baseline in {timeout:.0f} s"))
    return learned is not None


def detection(families: dict) -> str | None:
    """The collector's ``tpot_shift`` detection in its ``/metrics`` families (the alarm's severity and p95
    rise, and its gauge), or None while it has not fired."""
    if (_detector(families, tx.DEGRADATION_DETECTED) or 0) < 1:
        return None
    severity = next(s for s in ("critical", "warning") if _detector(families, tx.DEGRADATION_DETECTED, severity=s))
    effect = _detector(families, tx.DEGRADATION_EFFECT_SIZE)
    rise = "" if effect is None else f": p95 time per output token up {effect:.0%}"
    gauge = f'{tx.DEGRADATION_DETECTED.prometheus_name}{{check="{CHECK}",severity="{severity}",...}} 1'
    return f"the collector's detectors fired {CHECK} ({severity}){rise}\n    {gauge}"


def _paged(note: Notification) -> bool:
    return any(a["labels"]["alertname"] == ALERT for a in note.alerts)


def watch(stack: GenerativeStack, start: float, *, detecting: bool, timeout: float = 300.0) -> dict[str, float]:
    """Seconds from the slowdown (monotonic ``start``) to the collector's ``tpot_shift`` detection (when
    ``detecting``), to Prometheus holding the TPOT alert pending and to Alertmanager's page, each printed
    as it happens; what has not happened ``timeout`` s after ``start`` is missing. Watched together, so
    each delay is when it happened, not when an earlier wait ended."""
    listen = (stack.collector_urls or {})["listen"]
    delays: dict[str, float] = {}
    while time.monotonic() < start + timeout and not ("page" in delays and ("detector" in delays or not detecting)):
        if detecting and "detector" not in delays and (line := detection(scrape(listen))) is not None:
            delays["detector"] = time.monotonic() - start
            print(f"  {delays['detector']:.1f} s after the slowdown {line}")
        if "pending" not in delays and stack.alert_state(ALERT) is not None:
            delays["pending"] = time.monotonic() - start
            print(f"  {delays['pending']:.1f} s after it Prometheus has {ALERT} pending: {_figures(stack)}")
            print("  (its rule holds it pending for `for: 2m` before it fires: the rules are production's)")
        if "page" in delays:
            time.sleep(1)
        elif (note := stack.wait_for(_paged, 1.0, since=start)) is not None:
            delays["page"] = note.at - start
            show_notification(note, note.at - start)
    return delays


def delay_summary(delays: dict[str, float], *, detecting: bool) -> str:
    """One line: the detection delays after the injected slowdown (what did not happen, said so)."""
    parts = [f"the collector's {CHECK} " + (f"{delays['detector']:.1f} s" if "detector" in delays else "none")]
    parts = parts if detecting else ["the collector's detectors off"]
    parts.append(f"{ALERT} pending " + (f"{delays['pending']:.1f} s" if "pending" in delays else "never"))
    parts.append("paged " + (f"{delays['page']:.1f} s" if "page" in delays else "never"))
    return "  detection delay after the slowdown: " + ", ".join(parts)


def run_generative_demo(duration: float = 20.0, concurrency: int = 4, delay_s: float = 0.3) -> int:
    """Baseline for ``duration`` s (and until the collector's detectors learned it; they do not learn the
    model's slow first seconds, ``Settings.warmup_s``), then every decoding step sleeps ``delay_s`` (above
    the critical TPOT threshold); prints the detection delays. 0 when the page arrives and the detectors
    (where installed) fired, 1 when not (or 0 with a how-to when Prometheus is missing)."""
    if importlib.util.find_spec("transformers") is None:
        print("modeltel demo --generative: the example server needs transformers: pip install 'modeltel[transformers]'")
        return 2
    missing = missing_binaries()
    if missing:
        print_install_hint("modeltel demo --generative: ", missing)
        return 0
    print("modeltel demo --generative: the OpenAI-compatible tiny LM under `modeltel run`, Prometheus, Alertmanager")
    with tempfile.TemporaryDirectory(prefix="modeltel-demo-gen-") as tmp, GenerativeStack(Path(tmp)) as stack:
        print(
            f"  server {stack.server_url}/v1, Prometheus {stack.prometheus_url}, Alertmanager {stack.alertmanager_url}"
        )
        print(f"  {concurrency} clients streaming /v1/chat/completions for a {duration:.0f} s baseline")
        stack.load(duration + 600, rate=4.0 * concurrency, concurrency=concurrency)
        time.sleep(duration)
        print(f"  baseline: {_figures(stack)}")
        detecting = detectors_learned(stack)
        print(f"  injecting a decode slowdown: every token after the first waits {delay_s * 1e3:.0f} ms")
        delays = watch(stack, stack.slow_decode(delay_s), detecting=detecting)
        print(delay_summary(delays, detecting=detecting))
        if detecting and "detector" not in delays:
            print(f"  no {CHECK} detection within 300 s (see model_degradation_* on the collector's /metrics)")
        if "page" not in delays:
            print(f"  no {ALERT} page within 300 s{'' if 'pending' in delays else ' (it never went pending)'}")
        return 0 if "page" in delays and ("detector" in delays or not detecting) else 1
