"""The demo's alert scene: the same served model behind real Prometheus and Alertmanager, one fault near
the end, and the notification as it reaches the receiver (a local webhook standing in for the pager).

``modeltel demo`` calls :func:`run_alert_scene` after its telemetry report; it says how to install the
two Debian packages when they are missing, and never fails the demo because of them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from .alertstack import AlertStack, Notification, missing_binaries, print_install_hint

__all__ = ["binaries_found", "play_alert_scene", "run_alert_scene", "show_notification"]


def show_notification(note: Notification, seconds: float) -> None:
    print(f"  {seconds:.1f} s after the fault, Alertmanager notified receiver '{note.receiver}':")
    for alert in note.alerts:
        labels, ann = alert["labels"], alert["annotations"]
        print(f"    [{labels['severity']}] {labels['alertname']}  {ann.get('summary', '')}")
        print(f"      {ann.get('description', '')}")
        print(f"      runbook: {ann.get('runbook_url', '')}")


def _paged_by_a_rule(note: Notification) -> bool:
    """A page from Prometheus' rules; the collector's own detectors (labelled ``check``) post to the same
    Alertmanager in the demo, and the load that ended before this scene may read to them as a drop."""
    return note.receiver == "pager" and any("check" not in alert["labels"] for alert in note.alerts)


def run_alert_scene(duration: float = 20.0, rate: float = 40.0, error_fraction: float = 0.3) -> int:
    """Serve under load for ``duration`` s, inject an error burst near the end, show the page arriving."""
    if not binaries_found():
        return 0
    with tempfile.TemporaryDirectory(prefix="modeltel-demo-alerts-") as tmp, AlertStack(Path(tmp)) as stack:
        return play_alert_scene(stack, duration, rate, error_fraction)


def binaries_found() -> bool:
    """Whether Prometheus and Alertmanager are installed; if not, how to install them, in two lines."""
    missing = missing_binaries()
    if missing:
        print_install_hint("\nAlerts: skipped; ", missing)
    return not missing


def play_alert_scene(stack: AlertStack, duration: float = 20.0, rate: float = 40.0, error_fraction: float = 0.3) -> int:
    """The scene on a started ``stack``, which the caller closes (the demo keeps it for its console)."""
    print("\nAlerts: Prometheus and Alertmanager with the generated rules, 1 s intervals")
    print(f"  Prometheus {stack.prometheus_url}, Alertmanager {stack.alertmanager_url}")
    stack.load(duration + 30, rate=rate)
    time.sleep(max(5.0, duration - 10))
    print(f"  injecting a fault: {error_fraction:.0%} of predictions fail")
    start = stack.inject(error_fraction=error_fraction)
    note = stack.wait_for(_paged_by_a_rule, 30, since=start)
    stack.stop_load.set()
    if note is None:
        print("  no page within 30 s (see Prometheus' /alerts)")
        return 1
    show_notification(note, note.at - start)
    return 0
