"""Detections as Alertmanager alerts (API v2): posted when a check fires, re-posted while it lasts, resolved.

Labels and annotations follow the rule files' conventions: ``alertname``, ``severity``, ``model_name``,
``model_version`` (plus ``check``) as labels; ``summary``, ``description``, ``runbook_url`` and
``dashboard_url`` as annotations. Alertmanager resolves an alert it stops hearing about after its
``resolve_timeout``, so open alerts are re-posted every ``repeat_s``; a resolved one is posted once with
``endsAt``. Posting failures are logged and retried on the next call, never raised into the collector.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone

from modeltel import taxonomy as tx
from modeltel_collector.labelcap import LabelCap

from .engine import Event

log = logging.getLogger(__name__)
ALERTNAME = tx.DEGRADATION_ALERT
# The generated Grafana dashboard per model (modeltel.generators.alerts.MODELS_UID; the collector may import
# only the taxonomy from the SDK, so the uid is repeated here and a test keeps the two equal).
MODELS_DASHBOARD_UID = "modeltel-models"
_WHAT = {
    "latency_shift": "latency is higher than its baseline",
    "error_rate_rise": "error rate is higher than its baseline",
    "throughput_drop": "request rate is lower than its baseline",
    "accuracy_drop": "online accuracy is lower than its baseline",
    "confidence_drift": "the prediction confidence distribution has drifted from its baseline",
    "estimated_accuracy_drop": "accuracy estimated from confidence is lower than its baseline's",
}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def runbook_url(runbook_base: str, check: str) -> str:
    """The generated runbook of the detectors' alert (``modeltel alerts generate``), at the check's section."""
    return f"{runbook_base.rstrip('/')}/{ALERTNAME}.md#{check}"


def dashboard_url(grafana_url: str, model: str, version: str) -> str:
    """The models dashboard filtered to one model, as the generated alert rules link it; '' without Grafana."""
    if not grafana_url:
        return ""
    query = urllib.parse.urlencode({"var-model_name": model, "var-model_version": version})
    return f"{grafana_url.rstrip('/')}/d/{MODELS_DASHBOARD_UID}/{MODELS_DASHBOARD_UID}?{query}"


def alert(
    event: Event, *, runbook_base: str, grafana_url: str, ends_at: float | None = None, cap: LabelCap | None = None
) -> dict:
    """One Alertmanager v2 ``postableAlert`` for a detector event; every label and annotation value is cut
    to ``cap``'s byte bound (a model name is whatever a client sent), counted by ``cap``."""
    cap = cap or LabelCap()
    r = event.result
    model, version = cap(event.model, "alert_label"), cap(event.version, "alert_label")
    labels = {
        "alertname": ALERTNAME,
        "severity": event.severity.label,
        "model_name": model,
        "model_version": version,
        "check": event.check,
    }
    effect = "n/a" if r.effect_size is None else f"{r.effect_size:.3g}"
    p = "n/a" if r.p_value is None else f"{r.p_value:.2g}"
    annotations = {
        "summary": f"{model} {version}: {_WHAT[event.check]}",
        "description": f"{event.check}: effect size {effect}, p-value {p}, statistic {r.statistic}.",
        "runbook_url": runbook_url(runbook_base, event.check),
    }
    link = dashboard_url(grafana_url, model, version)
    if link:
        annotations["dashboard_url"] = link
    annotations = {k: cap(v, "alert_annotation") for k, v in annotations.items()}
    out = {"labels": labels, "annotations": annotations, "startsAt": _iso(event.time)}
    if ends_at is not None:
        out["endsAt"] = _iso(ends_at)
    return out


class AlertmanagerPoster:
    """Keeps the open alerts and posts them to ``url``/api/v2/alerts."""

    def __init__(
        self,
        url: str,
        *,
        runbook_base: str = "alerts/runbooks",
        grafana_url: str = "",
        repeat_s: float = 60.0,
        cap: LabelCap | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.runbook_base, self.grafana_url, self.repeat_s = runbook_base, grafana_url, repeat_s
        self.cap = cap or LabelCap()  # the collector's: the same bound as its label values, and its counter
        self.open: dict[tuple[str, str, str], dict] = {}
        self.outbox: list[dict] = []
        self.last_post = 0.0
        self.failures = 0

    def __call__(self, events: list[Event]) -> None:
        self.update(events, time.time())

    def update(self, events: list[Event], now: float) -> bool:
        """Fold events in, post what changed (or everything open, every ``repeat_s``); True when posted."""
        for e in events:
            key = (e.model, e.version, e.check)
            if e.state == "firing":
                previous = self.open.get(key)
                if previous is not None and previous["labels"]["severity"] != e.severity.label:
                    self.outbox.append({**previous, "endsAt": _iso(e.time)})  # the escalated alert replaces it
                self.open[key] = alert(e, runbook_base=self.runbook_base, grafana_url=self.grafana_url, cap=self.cap)
            elif key in self.open:
                self.outbox.append({**self.open.pop(key), "endsAt": _iso(e.time)})
        due = now - self.last_post >= self.repeat_s
        if not self.outbox and not (due and self.open) and not events:
            return False
        body = self.outbox + list(self.open.values())
        if not body:
            return False
        try:
            self._post(body)
        except OSError as exc:
            self.failures += 1
            log.warning("cannot post %d alerts to %s: %s (will retry)", len(body), self.url, exc)
            return False
        self.outbox, self.last_post = [], now
        return True

    def _post(self, body: list[dict]) -> None:
        req = urllib.request.Request(
            self.url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()
