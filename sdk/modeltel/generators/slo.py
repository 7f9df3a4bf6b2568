"""SLOs to Prometheus rules: SLI error ratios per window and multiwindow, multi-burn-rate alerts.

As Sloth and Pyrra do (spec in, rules out), with the Google SRE workbook's table: an alert fires when the
error ratio over a long window *and* over its short window both exceed ``factor x error budget``; the
short window makes it resolve soon after the burn stops. The table is written for one period (30 days)
and scales with each SLO's period, so each row still spends the same share of the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import taxonomy as tx
from .alerts import MODEL, SLO_UID, Links
from .durations import format_duration, parse_duration

__all__ = [
    "ALERT_NAME",
    "BurnWindow",
    "burn_alert",
    "burn_windows",
    "error_ratio_expr",
    "sli_windows",
    "slo_rule_groups",
]

ALERT_NAME = "ErrorBudgetBurn"
_NEGATE = {"gte": "<", "gt": "<=", "lte": ">", "lt": ">="}


@dataclass(frozen=True)
class BurnWindow:
    """One row of the table, scaled to an SLO's period."""

    severity: tx.Severity
    factor: float
    long: str
    short: str


def burn_windows(slo: tx.SLO, table: tuple[tx.BurnRateWindow, ...], table_period: str) -> list[BurnWindow]:
    """``table`` scaled from ``table_period`` to ``slo.window`` (whole minutes, at least one)."""
    scale = parse_duration(slo.window) / parse_duration(table_period)

    def scaled(d: str) -> str:
        return format_duration(max(60, round(parse_duration(d) * scale / 60) * 60))

    return [BurnWindow(r.severity, r.factor, scaled(r.long), scaled(r.short)) for r in table]


def sli_windows(windows: list[BurnWindow], period: str) -> list[str]:
    """Every window a recording rule is needed for, shortest first, the SLO period last."""
    spans = {w for row in windows for w in (row.long, row.short)} - {period}
    return [*sorted(spans, key=parse_duration), period]


def error_ratio_name(window: str) -> str:
    return f"slo:sli_error:ratio_rate{window}"


def error_ratio_expr(slo: tx.SLO, window: str) -> str:
    """The SLI error ratio over ``window`` per model, without recording rules (what the report queries)."""
    if slo.kind == "threshold":
        return f"avg_over_time(({_bad_bool(slo)})[{window}:1m])"
    return _ratio_expr(slo, window)


def _ratio_expr(slo: tx.SLO, window: str) -> str:
    total = f"sum by ({MODEL}) (rate({slo.total}[{window}]))"
    if slo.bad:
        return f"(sum by ({MODEL}) (rate({slo.bad}[{window}])) or 0 * {total}) / ({total} > 0)"
    # a model whose good series is missing (every request failed) has error ratio 1, not no value
    return f"1 - (sum by ({MODEL}) (rate({slo.good}[{window}])) or 0 * {total}) / ({total} > 0)"


def _bad_bool(slo: tx.SLO) -> str:
    return f"avg by ({MODEL}) ({slo.metric}) {_NEGATE[slo.op]} bool {slo.threshold:g}"


def _recording_rules(slo: tx.SLO, windows: list[str]) -> list[dict]:
    labels = {"slo": slo.name}
    rules: list[dict] = []
    if slo.kind == "threshold":
        rules.append({"record": "slo:sli_bad:bool", "expr": _bad_bool(slo), "labels": labels})
        sel = f'slo:sli_bad:bool{{slo="{slo.name}"}}'
        rules += [
            {"record": error_ratio_name(w), "expr": f"avg_over_time({sel}[{w}])", "labels": labels} for w in windows
        ]
    else:
        rules += [{"record": error_ratio_name(w), "expr": _ratio_expr(slo, w), "labels": labels} for w in windows]
    period = f'{error_ratio_name(slo.window)}{{slo="{slo.name}"}}'
    rules += [
        {"record": "slo:objective:ratio", "expr": f"vector({slo.objective:g})", "labels": labels},
        {"record": "slo:error_budget:ratio", "expr": f"vector({slo.error_budget:.6g})", "labels": labels},
        {
            "record": "slo:period_error_budget_remaining:ratio",
            "expr": f"1 - {period} / {slo.error_budget:.6g}",
            "labels": labels,
        },
    ]
    return rules


def burn_alert(slo: tx.SLO, w: BurnWindow, links: Links) -> dict:
    threshold = f"({w.factor:g} * {slo.error_budget:.6g})"
    sel = f'{{slo="{slo.name}"}}'
    on_model = "{{ $labels.model_name }} {{ $labels.model_version }}"
    kind = "page" if w.severity is tx.Severity.CRITICAL else "ticket"
    return {
        "alert": ALERT_NAME,
        "expr": (f"{error_ratio_name(w.long)}{sel} > {threshold}\nand\n{error_ratio_name(w.short)}{sel} > {threshold}"),
        "labels": {
            "severity": w.severity.label,
            "slo": slo.name,
            tx.LABEL_FAMILY: f"slo:{slo.name}",
            "long_window": w.long,
            "short_window": w.short,
        },
        "annotations": {
            "summary": f"{slo.name}: {on_model} burns its error budget at over {w.factor:g}x ({kind})",
            "description": (
                f"{slo.description}. Error ratio of {on_model} over {w.long} is"
                " {{ $value | humanizePercentage }} and over "
                f"{w.short} above {w.factor:g}x the budget of {slo.error_budget * 100:.6g}% of {slo.window};"
                f" at this rate the {slo.window} budget lasts {_exhaustion(slo, w.factor)}."
            ),
            "runbook_url": f"{links.runbook_base_url}/{ALERT_NAME}.md",
            "dashboard_url": links.dashboard(SLO_UID) + "?var-model_name={{ $labels.model_name }}"
            "&var-model_version={{ $labels.model_version }}&var-slo={{ $labels.slo }}",
        },
    }


def _exhaustion(slo: tx.SLO, factor: float) -> str:
    return format_duration(int(parse_duration(slo.window) / factor // 60 * 60))


def slo_rule_groups(
    slos: tuple[tx.SLO, ...], table: tuple[tx.BurnRateWindow, ...], table_period: str, links: Links
) -> list[dict]:
    """One group per SLO: its SLI recordings, then its burn-rate alerts.

    Rules of one group run in order at the same evaluation time, so an alert reads the ratios recorded
    a moment before, not those of the previous evaluation (separate groups would add an interval of lag).
    """
    groups = []
    for slo in slos:
        windows = burn_windows(slo, table, table_period)
        rules = _recording_rules(slo, sli_windows(windows, slo.window)) + [burn_alert(slo, w, links) for w in windows]
        groups.append({"name": f"slo-{slo.name}", "rules": rules})
    return groups
