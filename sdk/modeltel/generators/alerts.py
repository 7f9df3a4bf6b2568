"""The alert rules, from ``modeltel.taxonomy``: one Prometheus rule per :class:`~modeltel.taxonomy.AlertSpec`.

Every expression aggregates per model and version, so one alert names one model; compares a value that
is absent (not 0, not NaN-true) when a model is idle, a series is missing or a denominator is 0; and every
rule carries ``severity`` and ``family`` (Alertmanager inhibits a warning by the critical of the same
family and model) and the annotations ``summary``, ``description``, ``runbook_url`` and ``dashboard_url``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import taxonomy as tx
from .fmt import human, value_template

__all__ = ["Links", "Rule", "alert_rules", "rule_for"]

MODEL = "model_name, model_version"
INSTANCE = "job, instance"
GPU = "job, instance, hw_id, hw_name, modeltel_gpu_index"
_W = tx.RATE_WINDOW


@dataclass(frozen=True)
class Links:
    """Where annotations point: the runbooks folder (a URL) and Grafana, whose dashboards have fixed uids."""

    runbook_base_url: str
    grafana_url: str

    def dashboard(self, uid: str) -> str:
        return f"{self.grafana_url.rstrip('/')}/d/{uid}/{uid}"


# The generated dashboards' uids (an alert links to the one that shows what it is about).
MODELS_UID, SLO_UID, GPU_UID = "modeltel-models", "modeltel-slo", "modeltel-gpu"
# Where links point until alerts/slo-config.yaml says otherwise (the collector's runbook_base_url default too).
DEFAULT_LINKS = Links("https://github.com/modeltel/modeltel/blob/main/alerts/runbooks", "http://localhost:3000")


@dataclass(frozen=True)
class Rule:
    """One generated alerting rule (what ``promtool`` and the unit tests see)."""

    spec: tx.AlertSpec
    expr: str
    summary: str
    description: str
    scope: str  # "model", "instance" or "gpu": which labels identify what the alert is about
    extra_labels: tuple[tuple[str, str], ...] = ()

    def as_dict(self, links: Links) -> dict:
        labels = {"severity": self.spec.severity_label, tx.LABEL_FAMILY: self.spec.family, **dict(self.extra_labels)}
        if self.spec.stage:
            labels["stage"] = self.spec.stage
        rule: dict = {"alert": self.spec.alert, "expr": self.expr}
        if self.spec.for_ not in ("0s", "0m"):
            rule["for"] = self.spec.for_
        rule["labels"] = labels
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": f"{links.runbook_base_url}/{self.spec.alert}.md",
            "dashboard_url": links.dashboard(_DASHBOARD_UID[self.scope]) + _DASHBOARD_QUERY[self.scope],
        }
        return rule


_DASHBOARD_UID = {"model": MODELS_UID, "instance": GPU_UID, "gpu": GPU_UID}  # host panels are with the GPUs'
_DASHBOARD_QUERY = {
    "model": "?var-model_name={{ $labels.model_name }}&var-model_version={{ $labels.model_version }}",
    "instance": "?var-job={{ $labels.job }}&var-instance={{ $labels.instance }}",
    "gpu": "?var-instance={{ $labels.instance }}&var-gpu={{ $labels.hw_id }}",
}
_ON_MODEL = "{{ $labels.model_name }} {{ $labels.model_version }}"
_ON_INSTANCE = "{{ $labels.instance }} ({{ $labels.job }})"
_ON_GPU = "GPU {{ $labels.modeltel_gpu_index }} ({{ $labels.hw_name }}) on {{ $labels.instance }}"


def _p95(instrument: tx.Instrument, by: str, selector: str = "") -> str:
    return f"histogram_quantile(0.95, sum by ({by}, le) (rate({instrument.prometheus_name}_bucket{selector}[{_W}])))"


def _p95_seconds(instrument: tx.Instrument, what: str) -> Callable[[tx.AlertSpec], Rule]:
    """A p95-over-threshold rule per model on a histogram in seconds (prediction latency, TTFT, TPOT)."""

    def rule(s: tx.AlertSpec) -> Rule:
        word = "CRITICAL: p95" if s.severity is tx.Severity.CRITICAL else "High p95"
        return Rule(
            s,
            f"{_p95(instrument, MODEL)} {s.op} {s.threshold:g}",
            f"{word} {what} on {_ON_MODEL}",
            f"p95 {what} of {_ON_MODEL} is {value_template('s')} (threshold {human(s.threshold, 's')}).",
            "model",
        )

    return rule


def _stage_latency(s: tx.AlertSpec) -> Rule:
    word = "CRITICAL: p95" if s.severity is tx.Severity.CRITICAL else "High p95"
    selector = f'{{{tx.ATTR_STAGE}="{s.stage}"}}'
    return Rule(
        s,
        f"{_p95(tx.STAGE_LATENCY, f'{MODEL}, stage', selector)} {s.op} {s.threshold:g}",
        f"{word} {s.stage} latency on {_ON_MODEL}",
        f"p95 {s.stage} latency of {_ON_MODEL} is {value_template('s')} (threshold {human(s.threshold, 's')}).",
        "model",
    )


def _rate(selector: str, by: str = MODEL) -> str:
    return f"sum by ({by}) (rate({selector}[{_W}]))"


_PRED = tx.PREDICTIONS.prometheus_series


def _throughput(s: tx.AlertSpec) -> Rule:
    return Rule(
        s,
        f"{_rate(_PRED)} {s.op} {s.threshold:g} > 0",
        f"Low prediction throughput on {_ON_MODEL}",
        f"{_ON_MODEL} serves {value_template('/s')} (threshold {human(s.threshold, '/s')}).",
        "model",
    )


def _error_rate(s: tx.AlertSpec) -> Rule:
    word = "CRITICAL: error rate" if s.severity is tx.Severity.CRITICAL else "High error rate"
    errors = _rate(f'{_PRED}{{{tx.ATTR_STATUS}="{tx.STATUS_ERROR}"}}')
    return Rule(
        s,
        f"{errors} / ({_rate(_PRED)} > 0) {s.op} {s.threshold:g}",
        f"{word} on {_ON_MODEL}",
        f"{value_template('ratio')} of predictions of {_ON_MODEL} fail (threshold {human(s.threshold, 'ratio')}).",
        "model",
    )


def _accuracy(s: tx.AlertSpec) -> Rule:
    return Rule(
        s,
        f"avg by ({MODEL}) ({tx.ONLINE_ACCURACY.prometheus_name}) {s.op} {s.threshold:g}",
        f"Model accuracy degradation on {_ON_MODEL}",
        f"Online accuracy of {_ON_MODEL} is {value_template('ratio')} (threshold {human(s.threshold, 'ratio')}).",
        "model",
    )


def _confidence(s: tx.AlertSpec) -> Rule:
    name = tx.PREDICTION_CONFIDENCE.prometheus_name
    return Rule(
        s,
        f"{_rate(name + '_sum')} / ({_rate(name + '_count')} > 0) {s.op} {s.threshold:g}",
        f"Low prediction confidence on {_ON_MODEL}",
        f"Mean confidence of {_ON_MODEL} is {value_template('ratio')} (threshold {human(s.threshold, 'ratio')}).",
        "model",
    )


def _resource(resource: str) -> Callable[[tx.AlertSpec], Rule]:
    def rule(s: tx.AlertSpec) -> Rule:
        selector = f'{tx.RESOURCE_USAGE.prometheus_name}{{{tx.ATTR_RESOURCE_TYPE}="{resource}"}}'
        word = "CRITICAL: high" if s.severity is tx.Severity.CRITICAL else "High"
        return Rule(
            s,
            f"max by ({INSTANCE}, model_name) ({selector}) {s.op} {s.threshold:g}",
            f"{word} {resource} utilisation on {_ON_INSTANCE}",
            f"{resource.upper()} usage of {{{{ $labels.model_name }}}} on {_ON_INSTANCE} is {value_template('%')}"
            f" (threshold {human(s.threshold, '%')}).",
            "instance",
        )

    return rule


def _server_down(s: tx.AlertSpec) -> list[Rule]:
    info = "target_info"
    silent = f"max by ({INSTANCE}, {MODEL}) (max_over_time({info}[{tx.SILENT_LOOKBACK}])) unless on ({INSTANCE}) {info}"
    jobs = "|".join((tx.COLLECTOR_JOB, tx.MODEL_SERVER_JOB))
    return [
        Rule(
            s,
            silent,
            f"Model server {_ON_INSTANCE} stopped sending telemetry",
            f"{_ON_INSTANCE}, serving {_ON_MODEL}, has sent nothing for longer than the collector's staleness"
            f" time plus {s.for_}.",
            "instance",
            (("cause", "silent"),),
        ),
        Rule(
            s,
            f'up{{job=~"{jobs}"}} == 0',
            f"Scrape target {_ON_INSTANCE} is down",
            f"Prometheus cannot scrape {_ON_INSTANCE}: every model behind it is unobserved.",
            "instance",
            (("cause", "target_down"),),
        ),
    ]


def _gpu(expr: Callable[[tx.AlertSpec], str], summary: str, unit: str | None) -> Callable[[tx.AlertSpec], Rule]:
    """A GPU rule; ``unit`` None for a count or a presence, whose value says nothing a reader needs."""

    def rule(s: tx.AlertSpec) -> Rule:
        value = "" if unit is None else f": {value_template(unit)} (threshold {human(s.threshold, unit)})"
        return Rule(s, expr(s), f"{summary} on {_ON_GPU}", f"{summary} on {_ON_GPU}{value}.", "gpu")

    return rule


def _gpu_missing(s: tx.AlertSpec) -> str:
    limit = tx.GPU_MEMORY_LIMIT.prometheus_name
    return (
        f"max by ({GPU}) (max_over_time({limit}[{tx.SILENT_LOOKBACK}]))"
        f" unless on ({INSTANCE}, hw_id) {limit} and on ({INSTANCE}) target_info"
    )


def _collector(counter: str, by: str, what: str) -> Callable[[tx.AlertSpec], Rule]:
    def rule(s: tx.AlertSpec) -> Rule:
        return Rule(
            s,
            f"sum by ({INSTANCE}, {by}) (rate({counter}[{_W}])) > {s.threshold:g}",
            f"modeltel collector {_ON_INSTANCE} is {what} data ({{{{ $labels.{by} }}}})",
            f"{_ON_INSTANCE} {what} {value_template('/s')} ({by} {{{{ $labels.{by} }}}}).",
            "instance",
        )

    return rule


_BUILDERS: dict[str, Callable[[tx.AlertSpec], Rule | list[Rule]]] = {
    "prediction_latency": _p95_seconds(tx.PREDICTION_LATENCY, "prediction latency"),
    "ttft": _p95_seconds(tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, "time to first token"),
    "tpot": _p95_seconds(tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN, "time per output token"),
    "stage_latency": _stage_latency,
    "throughput": _throughput,
    "error_rate": _error_rate,
    "accuracy": _accuracy,
    "confidence": _confidence,
    "cpu": _resource(tx.RESOURCE_TYPE_CPU),
    "memory": _resource(tx.RESOURCE_TYPE_MEMORY),
    "availability": _server_down,
    "gpu_memory": _gpu(
        lambda s: f"max by ({GPU}) ({tx.GPU_MEMORY_UTILIZATION.prometheus_name}) > {s.threshold:g}",
        "GPU memory nearly full",
        "ratio",
    ),
    "gpu_temperature": _gpu(
        lambda s: f"max by ({GPU}) ({tx.GPU_TEMPERATURE.prometheus_name}) > {s.threshold:g}", "GPU temperature", "°C"
    ),
    "gpu_ecc": _gpu(
        lambda s: (
            f"sum by ({GPU}) (increase({tx.GPU_ERRORS.prometheus_series}"
            f'{{error_type="{tx.ECC_UNCORRECTED}"}}[10m])) > {s.threshold:g}'
        ),
        "Uncorrectable ECC errors in the last 10 minutes",
        None,
    ),
    "gpu_missing": _gpu(_gpu_missing, "GPU no longer reported while its server still is", None),
}
_COLLECTOR = {
    "CollectorRefusingData": _collector("modeltel_collector_refused_requests_total", "reason", "refusing"),
    "CollectorDroppingData": _collector("modeltel_collector_dropped_total", "what", "dropping"),
}


def rule_for(spec: tx.AlertSpec) -> list[Rule]:
    """The rule(s) of one alert spec (ModelServerDown has two: a silent server and a down scrape target)."""
    built = (_COLLECTOR.get(spec.alert) or _BUILDERS[spec.family])(spec)
    return built if isinstance(built, list) else [built]


def alert_rules() -> list[Rule]:
    """Every alerting rule, in the taxonomy's order."""
    return [rule for spec in tx.ALERTS for rule in rule_for(spec)]
