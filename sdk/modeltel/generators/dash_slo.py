"""The SLO dashboard: SLI against target, burn rate per window, budget remaining and time to exhaustion,
per SLO and model, read from the recording rules that :mod:`.slo` generates (so it shows what alerts)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge as gb
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.models import common as gmc
from grafana_foundation_sdk.models import dashboard as gm

from .. import taxonomy as tx
from .alerts import SLO_UID
from .durations import parse_duration
from .grafana import (
    DATASOURCE,
    LAST,
    OK_COLOUR,
    SEVERITY_COLOUR,
    Layout,
    new_dashboard,
    query,
    runbook_link,
    thresholds,
    timeseries,
)
from .slo import ALERT_NAME, burn_windows, error_ratio_name
from .sloconfig import SLOConfig

__all__ = ["UID", "slo_dashboard"]

UID = SLO_UID
_MODEL_SEL = 'model_name=~"$model_name", model_version=~"$model_version"'
_LEGEND = "{{slo}} {{model_name}} {{model_version}}"


def _sel(slo: str) -> str:
    return f'{{slo="{slo}", slo=~"$slo", {_MODEL_SEL}}}'


def _burn(slo: str, window: str) -> str:
    return f"{error_ratio_name(window)}{_sel(slo)} / on (slo) group_left () slo:error_budget:ratio"


def sli_panel(config: SLOConfig) -> gd.Panel:
    targets = []
    for i, slo in enumerate(config.slos):
        targets.append(query(f"1 - {error_ratio_name(slo.window)}{_sel(slo.name)}", f"SLI {_LEGEND}", f"S{i}"))
    targets.append(query('slo:objective:ratio{slo=~"$slo"}', "target {{slo}}", "T"))
    return timeseries(
        "SLI against target (over each SLO's window)", "percentunit", targets,
        description="Good fraction over the SLO window; the dashed series are the objectives.",
    )  # fmt: skip


def burn_panel(config: SLOConfig) -> gd.Panel:
    targets, seen = [], set()
    for slo in config.slos:
        for row in burn_windows(slo, config.windows, config.windows_period):
            for window in (row.long, row.short):
                if (slo.name, window) not in seen:
                    seen.add((slo.name, window))
                    targets.append(query(_burn(slo.name, window), f"{_LEGEND} {window}", f"B{len(targets)}"))
    factors = sorted({w.factor for w in config.windows})
    panel = timeseries(
        "Burn rate per window", "x", targets,
        description=f"Error ratio / error budget; alerts fire at {', '.join(f'{f:g}x' for f in factors)}"
        " when a long window and its short window both exceed it.",
        links=(runbook_link(config.links, ALERT_NAME),),
    )  # fmt: skip
    return panel.thresholds(_factor_steps(config.windows))


def _factor_steps(windows: tuple[tx.BurnRateWindow, ...]) -> gd.ThresholdsConfig:
    """A line at each burn-rate factor, coloured by the severity ErrorBudgetBurn fires with there."""
    steps = [gm.Threshold(value=None, color=OK_COLOUR)]
    steps += [gm.Threshold(w.factor, SEVERITY_COLOUR[w.severity]) for w in sorted(windows, key=lambda w: w.factor)]
    return gd.ThresholdsConfig().mode(gm.ThresholdsMode.ABSOLUTE).steps(steps)


def budget_panel(config: SLOConfig) -> gd.Panel:
    expr = f'slo:period_error_budget_remaining:ratio{{slo=~"$slo", {_MODEL_SEL}}}'
    return (
        gb.Panel()
        .title("Error budget remaining")
        .description("Share of each SLO window's error budget not yet spent (negative: overspent).")
        .datasource(DATASOURCE)
        .with_target(query(expr, _LEGEND))
        .unit("percentunit")
        .max(1)
        .display_mode(gmc.BarGaugeDisplayMode.GRADIENT)
        .show_unfilled(True)
        .reduce_options(LAST)
        .thresholds(thresholds(slo=0.0, direction=tx.Direction.LOWER_IS_WORSE))  # overspent: the objective missed
        .links([runbook_link(config.links, ALERT_NAME)])
    )


def exhaustion_panel(config: SLOConfig) -> gd.Panel:
    """Budget remaining / current burn: how long until the budget is gone at the fastest window's rate."""
    targets = []
    for i, slo in enumerate(config.slos):
        fastest = burn_windows(slo, config.windows, config.windows_period)[0].long
        period_s = parse_duration(slo.window)
        remaining = f"slo:period_error_budget_remaining:ratio{_sel(slo.name)}"
        expr = f"clamp_min({remaining}, 0) * {period_s} / (({_burn(slo.name, fastest)}) > 0)"
        targets.append(query(expr, f"{_LEGEND} (at the {fastest} burn rate)", f"E{i}"))
    return timeseries(
        "Time to budget exhaustion", "s", targets,
        description="Remaining budget x SLO window / burn rate over the fastest alert window; no value: not burning.",
    )  # fmt: skip


def slo_dashboard(config: SLOConfig) -> gd.Dashboard:
    lay = Layout()
    board = new_dashboard(UID, "slo:objective:ratio").description(
        "Service level objectives per model, from the recording rules in alerts/rules/modeltel-slo.yml."
    )
    slo_var = (
        gd.CustomVariable("slo")
        .label("SLO")
        .values(",".join(s.name for s in config.slos))
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    board = board.with_variable(slo_var)
    board = board.with_row(lay.row("Objectives"))
    for panel, w in ((sli_panel(config), 12), (budget_panel(config), 12), (burn_panel(config), 12),
                     (exhaustion_panel(config), 12)):  # fmt: skip
        board = board.with_panel(lay.place(panel, w))
    return board
