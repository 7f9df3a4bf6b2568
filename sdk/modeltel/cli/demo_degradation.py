"""The demo's degradation scene: the collector's own detectors learn a served model's baseline, a latency
fault and input drift are injected, and ``model_degradation_detected`` turns on in the collector's
``/metrics`` for both: latency from the spans, confidence drift from the confidence histogram.

No Prometheus is involved: the detectors run inside ``modeltel collector`` (the analytics extra). The
demo's collector runs them with ``analytics_time_scale`` 0.05, so the baseline takes 18 s, not 6 minutes.
The scene serves its own model version under its own load after the main report, so the fault never
distorts the figures printed before. It skips with one line when the collector runs without the detectors.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

from .. import taxonomy as tx
from .loopback import (
    ANALYTICS_TIME_SCALE,
    MODEL_NAME,
    free_port,
    samples,
    scrape,
    start_server,
    stop_process,
    wait_http,
)

__all__ = ["detector_value", "detectors_on", "run_degradation_scene", "wait_metrics"]

VERSION = "1.0.1"  # its own version: the main run's ending (the load stops) must not read as this one's drop
CHECKS = {"latency_shift": "p95 up {:.0%}", "confidence_drift": "PSI {:.2f}"}  # check -> how its effect reads


def detectors_on(listen: str) -> bool:
    """Whether the collector runs the detectors: its console API says ``detections: null`` when they are off."""
    try:
        with urllib.request.urlopen(listen + "/api/v1/console/alerts", timeout=10) as response:
            return json.load(response).get("detections") is not None
    except OSError:  # the console is off: /metrics will tell once a model is seen
        return True


def detector_value(families: dict[str, Any], instrument: tx.Instrument, check: str, **labels: str) -> float | None:
    """The highest sample of ``instrument`` for this scene's model version and ``check`` (``labels`` add to
    the match, or name another model: ``model_name=``, ``model_version=``), or None."""
    want = {"model_name": MODEL_NAME, "model_version": VERSION, tx.ATTR_CHECK: check, **labels}  # Prometheus names
    name = instrument.prometheus_name
    values = [s.value for s in samples(families, name) if want.items() <= s.labels.items()]
    return max(values) if values else None


def wait_metrics(listen: str, predicate, timeout: float) -> dict[str, Any] | None:
    """The collector's /metrics families once ``predicate`` holds for them, or None after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        families = scrape(listen)
        if predicate(families):
            return families
        time.sleep(0.25)
    return None


def _set_fault(port: int, latency_s: float, noise: float) -> None:
    body = json.dumps({"latency_s": latency_s, "feature_noise": noise}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/faults", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as response:
        response.read()


def run_degradation_scene(
    urls: dict[str, str], *, rate: float = 150.0, latency_s: float = 0.02, noise: float = 0.5
) -> int:
    """Serve version ``VERSION`` at ``rate`` requests/s until its baseline is learned, add ``latency_s`` to
    every prediction and ``noise`` to every feature, and show the collector's detections; 0 when both are
    detected (or the scene is skipped), 1 when not."""
    from ..examples import loadgen

    listen = urls["listen"]
    if not detectors_on(listen):
        print("\nDegradation: skipped; the collector runs without its detectors: pip install 'modeltel[analytics]'")
        return 0
    print(f"\nDegradation: the collector's own detectors (analytics_time_scale {ANALYTICS_TIME_SCALE})")
    port, stop = free_port(), threading.Event()
    env = {"IRIS_FAULTS": "1", "MODELTEL_MODEL_VERSION": VERSION, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    server = start_server(urls["otlp_http"], port, env)
    url = f"http://127.0.0.1:{port}/predict"
    load = threading.Thread(target=loadgen.drive, args=(url, 120.0, 8, 0.0), kwargs={"rate": rate, "stop": stop})
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, server)
        print(f"  {MODEL_NAME} {VERSION} at {rate:.0f} requests/s while the collector learns its baseline")
        start = time.monotonic()
        load.start()
        learned = wait_metrics(
            listen, lambda f: all(detector_value(f, tx.DEGRADATION_P_VALUE, c) is not None for c in CHECKS), 60
        )
        if learned is None:
            print("  no baseline within 60 s (see the collector's /metrics)")
            return 1
        print(
            f"  baseline learned after {time.monotonic() - start:.0f} s; injecting faults:"
            f" +{latency_s * 1e3:.0f} ms, and noise (sd {noise}) on every input feature"
        )
        _set_fault(port, latency_s, noise)
        return _report_detections(listen, time.monotonic())
    finally:
        stop.set()
        if load.is_alive():
            load.join(timeout=30)
        stop_process(server, timeout=30)


def _report_detections(listen: str, fault: float) -> int:
    """One line per check as the collector detects it, within 30 s of the fault; 1 if one is missed."""
    pending = dict(CHECKS)
    deadline = fault + 30
    while pending and time.monotonic() < deadline:
        families = scrape(listen)
        for check in [c for c in pending if (detector_value(families, tx.DEGRADATION_DETECTED, c) or 0) >= 1]:
            effect = detector_value(families, tx.DEGRADATION_EFFECT_SIZE, check)
            severity = next(
                s
                for s in ("critical", "warning")
                if detector_value(families, tx.DEGRADATION_DETECTED, check, severity=s)
            )
            how = "" if effect is None else ": " + pending[check].format(effect)
            after = time.monotonic() - fault
            print(f"  {after:.1f} s after the faults, the collector detected {check} ({severity}){how}")
            print(f'    {tx.DEGRADATION_DETECTED.prometheus_name}{{check="{check}",severity="{severity}",...}} 1')
            del pending[check]
        time.sleep(0.25)
    for check in pending:
        print(f"  no {check} detected within 30 s (see model_degradation_* on the collector's /metrics)")
    return 1 if pending else 0
