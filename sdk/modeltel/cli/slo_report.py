"""``modeltel slo report``: error budget per SLO and model, burn rates and SLA credits, from Prometheus.

Queries Prometheus' HTTP API with the same error-ratio expressions the burn-rate rules record (so the
report works whether or not the rules are loaded), does the arithmetic in :mod:`.slo_budget`, and prints
a table, JSON, or the seed's ``slo-compliance-report.md``.
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from ..generators.slo import burn_windows, error_ratio_expr, sli_windows
from ..generators.sloconfig import SLA, SLOConfig, SLOConfigError, load_slo_config
from ..plainjson import dumps
from .slo_budget import Budget, budget, sla_credit

__all__ = ["Report", "collect", "render", "run_report"]

Model = tuple[str, str]


@dataclass(frozen=True)
class Row:
    slo: str
    description: str
    window: str
    model: Model
    budget: Budget


@dataclass(frozen=True)
class SlaRow:
    sla: SLA
    model: Model
    availability: float
    met: bool
    credit: float


@dataclass(frozen=True)
class Report:
    generated: float
    prometheus: str
    rows: list[Row]
    slas: list[SlaRow]


def query(prometheus: str, expr: str) -> dict[Model, float]:
    """An instant query's result by (model_name, model_version)."""
    url = f"{prometheus.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {expr!r}: {body.get('error')}")
    return {
        (r["metric"].get("model_name", ""), r["metric"].get("model_version", "")): float(r["value"][1])
        for r in body["data"]["result"]
    }


def collect(prometheus: str, config: SLOConfig) -> Report:
    """Query every SLO's error ratio per window and model, and price each SLA."""
    rows: list[Row] = []
    for slo in config.slos:
        burns = burn_windows(slo, config.windows, config.windows_period)
        windows = sli_windows(burns, slo.window)
        ratios = {w: query(prometheus, error_ratio_expr(slo, w)) for w in windows}
        slowest = min(burns, key=lambda b: b.factor).long
        events = {}
        if slo.total:
            events = query(prometheus, f"sum by (model_name, model_version) (increase({slo.total}[{slo.window}]))")
        for model, period_ratio in sorted(ratios[slo.window].items()):
            if math.isnan(period_ratio):
                continue
            per_window = {w: ratios[w].get(model, math.nan) for w in windows[:-1]}
            b = budget(slo.objective, period_ratio, per_window, slowest_window=slowest, events=events.get(model))
            rows.append(Row(slo.name, slo.description, slo.window, model, b))
    slas = []
    for sla in config.slas:
        penalties = [(p.breach_threshold, p.credit_percentage) for p in sla.penalties]
        for row in (r for r in rows if r.slo == sla.slo):
            actual = row.budget.actual
            slas.append(SlaRow(sla, row.model, actual, actual >= sla.availability, sla_credit(actual, penalties)))
    return Report(time.time(), prometheus, rows, slas)


def _pct(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v * 100:.{digits}g} %"


def _burns(b: Budget) -> str:
    return ", ".join(f"{w} {r:.2g}x" for w, r in b.burn_rates.items())


_HEAD = ("SLO", "model", "target", "actual", "budget", "consumed", "remaining", "status", "burn rate per window")


def _cells(r: Row) -> tuple[str, ...]:
    b = r.budget
    return (
        f"{r.slo} ({r.window})", " ".join(r.model), _pct(b.target, 4), _pct(b.actual, 4), _pct(b.total),
        _pct(b.consumed), _pct(b.remaining), b.status, _burns(b),
    )  # fmt: skip


def _sla_cells(s: SlaRow) -> tuple[str, ...]:
    return (s.sla.name, s.sla.tier, " ".join(s.model), _pct(s.sla.availability, 4), _pct(s.availability, 4),
            "met" if s.met else "breached", f"{s.credit:g} %")  # fmt: skip


_SLA_HEAD = ("SLA", "tier", "model", "availability objective", "actual", "status", "credit due")


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in (head, *rows)]


def _markdown_table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def render(report: Report, fmt: str) -> str:
    """``table``, ``json`` or ``markdown`` (the seed's slo-compliance-report.md)."""
    if fmt == "json":
        return dumps(
            {
                "generated": report.generated,
                "prometheus": report.prometheus,
                "slos": [{**asdict(r), "model": list(r.model)} for r in report.rows],
                "slas": [{**asdict(s), "model": list(s.model)} for s in report.slas],
            },
            indent=2,
        )
    rows, slas = [_cells(r) for r in report.rows], [_sla_cells(s) for s in report.slas]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(report.generated))
    if fmt == "markdown":
        out = [
            "# SLO compliance report",
            "",
            f"Generated {stamp} from {report.prometheus}.",
            "",
            "## Error budgets",
            "",
        ]
        out += _markdown_table(_HEAD, rows) if rows else ["No SLO has data yet."]
        out += ["", "## SLA tiers", ""] + (_markdown_table(_SLA_HEAD, slas) if slas else ["No SLA has data yet."])
        return "\n".join(out) + "\n"
    out = [
        f"Error budgets ({stamp}, {report.prometheus})",
        *(_table(_HEAD, rows) if rows else ["  no SLO has data yet"]),
    ]
    out += ["", "SLA tiers", *(_table(_SLA_HEAD, slas) if slas else ["  no SLA has data yet"])]
    return "\n".join(out) + "\n"


def run_report(prometheus: str, config_path: Path, fmt: str, output: Path | None) -> int:
    try:
        config = load_slo_config(config_path)
        text = render(collect(prometheus, config), fmt)
    except (SLOConfigError, OSError, RuntimeError) as e:
        print(f"modeltel slo report: {e}", file=sys.stderr)
        return 2
    if output:
        output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
