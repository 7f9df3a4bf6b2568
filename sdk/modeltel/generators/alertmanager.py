"""``alertmanager.yml``: the seed's route tree, done right.

* critical goes to the pager and to the critical chat channel at once (10 s group wait, ``continue``);
* warning goes to the warnings chat channel, batched (several models per message, 5 min group interval);
* a critical alert inhibits the warning of the same ``family`` about the same thing (CriticalErrorRate
  silences HighErrorRate of that model version, not of another; a hot GPU, only its own warning); a down
  scrape target inhibits "server silent";
* secrets are files mounted at deploy time (``*_file``), never in the repository;
* ``local=True`` gives the same tree with every receiver a webhook at ``<webhook>/<receiver>``, which is
  what the end-to-end test and the demo run, so they prove the routing that production uses.
"""

from __future__ import annotations

from .. import taxonomy as tx

__all__ = ["RECEIVERS", "SECRETS_DIR", "alertmanager_config"]

SECRETS_DIR = "/etc/alertmanager/secrets"
RECEIVERS = ("pager", "chat-critical", "chat-warnings", "webhook")
_GROUP_BY = ["alertname", tx.LABEL_FAMILY, "model_name", "model_version", "slo", "instance"]
_TEMPLATES_GLOB = "/etc/alertmanager/templates/*.tmpl"


def _slack(channel: str) -> dict:
    return {
        "api_url_file": f"{SECRETS_DIR}/slack-webhook-url",
        "channel": channel,
        "send_resolved": True,
        "title": '{{ template "modeltel.title" . }}',
        "text": '{{ template "modeltel.text" . }}',
    }


def _receivers(local_webhook: str) -> list[dict]:
    if local_webhook:
        return [
            {"name": r, "webhook_configs": [{"url": f"{local_webhook}/{r}", "send_resolved": True}]} for r in RECEIVERS
        ]
    return [
        {
            "name": "pager",
            "pagerduty_configs": [
                {
                    "routing_key_file": f"{SECRETS_DIR}/pagerduty-routing-key",
                    "description": '{{ template "modeltel.title" . }}',
                    "links": [{"href": "{{ (index .Alerts 0).Annotations.runbook_url }}", "text": "runbook"}],
                }
            ],
        },
        {"name": "chat-critical", "slack_configs": [_slack("#ml-critical")]},
        {"name": "chat-warnings", "slack_configs": [_slack("#ml-warnings")]},
        {"name": "webhook", "webhook_configs": [{"url": "http://127.0.0.1:5001/alerts", "send_resolved": True}]},
    ]


def _route(timing: dict[str, str]) -> dict:
    critical = ['severity="critical"']
    return {
        "receiver": "chat-warnings",
        "group_by": _GROUP_BY,
        "group_wait": timing["warning_wait"],
        "group_interval": timing["warning_interval"],
        "repeat_interval": "12h",
        "routes": [
            {
                "matchers": critical,
                "receiver": "pager",
                "group_wait": timing["critical_wait"],
                "group_interval": timing["critical_interval"],
                "repeat_interval": "1h",
                "continue": True,
            },
            {
                "matchers": critical,
                "receiver": "chat-critical",
                "group_wait": timing["critical_wait"],
                "group_interval": timing["critical_interval"],
                "repeat_interval": "4h",
            },
            {
                "matchers": ['severity="warning"'],
                "receiver": "chat-warnings",
                "group_by": ["alertname", tx.LABEL_FAMILY],  # batched: one message for every model
            },
        ],
    }


PRODUCTION_TIMING = {"critical_wait": "10s", "critical_interval": "1m", "warning_wait": "30s", "warning_interval": "5m"}
LOCAL_TIMING = {"critical_wait": "1s", "critical_interval": "10s", "warning_wait": "2s", "warning_interval": "30s"}


def alertmanager_config(
    *, local_webhook: str = "", templates: str = _TEMPLATES_GLOB, timing: dict[str, str] | None = None
) -> dict:
    """The Alertmanager config; with ``local_webhook``, every receiver posts to ``<local_webhook>/<name>``.

    ``timing`` (group waits and intervals) defaults to production's, or to a fast one for a local webhook.
    """
    timing = timing or (LOCAL_TIMING if local_webhook else PRODUCTION_TIMING)
    return {
        "global": {"resolve_timeout": "5m"},
        "templates": [templates],
        "route": _route(timing),
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                # what an alert is about: a model version, a stage, an instance, a GPU (absent labels match)
                "equal": [tx.LABEL_FAMILY, "model_name", "model_version", "stage", "instance", "hw_id"],
            },
            {
                "source_matchers": ['alertname="ModelServerDown"', 'cause="target_down"'],
                "target_matchers": ['alertname="ModelServerDown"', 'cause="silent"'],
            },
        ],
        "receivers": _receivers(local_webhook),
    }


TEMPLATE = """\
{{/* modeltel notification templates: summary, description, runbook and dashboard links. */}}
{{ define "modeltel.title" -}}
[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] \
{{ .CommonLabels.alertname }}{{ with .CommonLabels.model_name }} {{ . }}{{ end }}\
{{ with .CommonLabels.slo }} ({{ . }}){{ end }}
{{- end }}
{{ define "modeltel.text" -}}
{{ range .Alerts -}}
*{{ .Annotations.summary }}* ({{ .Labels.severity }})
{{ .Annotations.description }}
Runbook: {{ .Annotations.runbook_url }}
Dashboard: {{ .Annotations.dashboard_url }}
{{ end -}}
{{- end }}
"""
