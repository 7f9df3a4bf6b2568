"""The building blocks every modeltel dashboard shares, on Grafana's grafana-foundation-sdk builders.

Selectors, template variables, thresholds and links are made here once, so the three dashboards agree:
a panel filters only on the labels its instrument carries (``model_resource_usage`` has no version),
thresholds are the alert table's and the SLOs' (:func:`thresholds`), and every rate uses ``$__rate_interval``.
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as gc
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus as gp
from grafana_foundation_sdk.builders import timeseries as gt
from grafana_foundation_sdk.models import common as gmc
from grafana_foundation_sdk.models import dashboard as gm
from grafana_foundation_sdk.models import prometheus as gmp

from .. import taxonomy as tx
from .alerts import GPU_UID, MODELS_UID, SLO_UID, Links

__all__ = [
    "DASHBOARDS",
    "DATASOURCE",
    "LAST",
    "OK_COLOUR",
    "RATE",
    "SEVERITY_COLOUR",
    "SLO_COLOUR",
    "Layout",
    "dashboard_links",
    "new_dashboard",
    "quantile",
    "query",
    "rate",
    "runbook_link",
    "selector",
    "thresholds",
    "timeseries",
]

RATE = "$__rate_interval"
# gauges and bar gauges show each series' last value (Grafana's own default when calcs is left empty varies)
LAST = gc.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
DATASOURCE = gm.DataSourceRef(type_val="prometheus", uid="${datasource}")
# uid -> title; alert annotations link to these uids (generators.alerts)
DASHBOARDS = {
    MODELS_UID: "modeltel: model performance",
    SLO_UID: "modeltel: SLOs and error budgets",
    GPU_UID: "modeltel: GPU and host",
}
# template variable -> the Prometheus label it filters
VARIABLES = {"model_name": "model", "model_version": "version", "job": "job", "instance": "instance"}
# What a threshold's colour means, on every panel: the severity of the alert that fires there, or an SLO's.
OK_COLOUR, SLO_COLOUR = "green", "yellow"
SEVERITY_COLOUR = {tx.Severity.WARNING: "orange", tx.Severity.CRITICAL: "red"}


def selector(labels: tuple[str, ...] = (), *, extra: str = "", resource: bool = True) -> str:
    """``{label=~"$label", ...}`` for the template variables among ``labels`` (+ job/instance)."""
    names = [v for v in VARIABLES if v in labels or (resource and v in ("job", "instance"))]
    parts = [extra] if extra else []
    parts += [f'{n}=~"${n}"' for n in names]
    return "{" + ", ".join(parts) + "}"


def rate(instrument: tx.Instrument, suffix: str = "", extra: str = "") -> str:
    """``rate()`` of an instrument's series (``suffix``: ``_bucket``, ``_sum``, ``_count``) over the variables."""
    return f"rate({instrument.prometheus_series}{suffix}{selector(instrument.prometheus_labels, extra=extra)}[{RATE}])"


def quantile(q: float, instrument: tx.Instrument, by: str) -> str:
    """The ``q`` quantile of a histogram instrument, per ``by``."""
    return f"histogram_quantile({q:g}, sum by (le, {by}) ({rate(instrument, '_bucket')}))"


def thresholds(
    *alerts: str, stage: str = "", slo: float | None = None, direction: tx.Direction | None = None
) -> gd.ThresholdsConfig:
    """Bands at the thresholds of ``alerts`` (those of one ``stage`` if given), coloured by the severity that
    pages there, and at the threshold of an SLO (``slo``, yellow: budget spent, nothing paged by it alone).

    Nothing else is drawn, so a line on a panel is one that pages or that an objective is measured against.
    ``direction`` is the alerts' own (``AlertSpec.direction``) unless only an SLO is drawn.
    """
    specs = [s for name in alerts for s in tx.ALERTS_BY_NAME[name] if not stage or s.stage == stage]
    marks = sorted(
        [(s.threshold, SEVERITY_COLOUR[s.severity]) for s in specs] + ([(slo, SLO_COLOUR)] if slo is not None else [])
    )
    ways = {s.direction for s in specs} | ({direction} if direction is not None else set())
    if len(ways) != 1 or not marks:
        raise ValueError(f"thresholds({alerts}, stage={stage!r}, slo={slo}): need marks that agree on a direction")
    if ways == {tx.Direction.HIGHER_IS_WORSE}:  # each colour holds from its mark up
        bands = [gm.Threshold(value=None, color=OK_COLOUR), *(gm.Threshold(v, c) for v, c in marks)]
    else:  # each colour holds below its mark: a step takes the colour of the next mark up
        colours = [c for _, c in marks[1:]] + [OK_COLOUR]
        bands = [
            gm.Threshold(value=None, color=marks[0][1]),
            *(gm.Threshold(v, c) for (v, _), c in zip(marks, colours, strict=True)),
        ]
    return gd.ThresholdsConfig().mode(gm.ThresholdsMode.ABSOLUTE).steps(bands)


def query(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, exemplar: bool = False):
    """One Prometheus target."""
    q = gp.Dataquery().expr(expr).ref_id(ref).legend_format(legend or "__auto").datasource(DATASOURCE)
    q = q.instant() if instant else q.range()
    if instant:
        q = q.format(gmp.PromQueryFormat.TABLE)
    return q.exemplar(exemplar)


def runbook_link(links: Links, alert: str) -> gd.DashboardLink:
    return gd.DashboardLink(f"Runbook: {alert}").url(f"{links.runbook_base_url}/{alert}.md").target_blank(True)


def dashboard_links(current: str) -> list[gd.DashboardLink]:
    """Links to the other modeltel dashboards, keeping the time range and the variables."""
    return [
        gd.DashboardLink(title)
        .type(gm.DashboardLinkType.LINK)
        .url(f"/d/{uid}/{uid}")
        .include_vars(True)
        .keep_time(True)
        for uid, title in DASHBOARDS.items()
        if uid != current
    ]


def _variable(name: str, metric: str, depends: tuple[str, ...]) -> gd.QueryVariable:
    sel = ", ".join(f'{d}=~"${d}"' for d in depends)
    return (
        gd.QueryVariable(name)
        .label(VARIABLES.get(name, name))
        .datasource(DATASOURCE)
        .query({"query": f"label_values({metric}{{{sel}}}, {name})", "refId": "PrometheusVariableQueryEditor"})
        .refresh(gm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(gm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(gm.VariableOption(selected=True, text="All", value="$__all"))
    )


def new_dashboard(uid: str, metric: str, extra: tuple[tuple[str, str], ...] = ()) -> gd.Dashboard:
    """A dashboard with the datasource, model, version, job and instance variables, each narrowing the next.

    ``metric`` is the series the variables' values are read from; ``extra`` adds (name, metric) variables.
    """
    board = (
        gd.Dashboard(DASHBOARDS[uid])
        .uid(uid)
        .tags(["modeltel"])
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(gm.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .with_variable(gd.DatasourceVariable("datasource").label("datasource").type("prometheus"))
        .links(dashboard_links(uid))
    )
    names = list(VARIABLES)
    for i, name in enumerate(names):
        board = board.with_variable(_variable(name, metric, tuple(names[:i])))
    for name, its_metric in extra:  # device variables: narrowed by job and instance, not by model
        board = board.with_variable(_variable(name, its_metric, ("job", "instance")))
    return board


@dataclass
class Layout:
    """Hands out unique panel ids and reading-order grid positions (24 columns, rows of panels)."""

    next_id: int = 1
    x: int = 0
    y: int = 0
    row_h: int = 0

    def place(self, panel, w: int = 12, h: int = 8):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel = panel.id(self.next_id).grid_pos(gm.GridPos(h=h, w=w, x=self.x, y=self.y))
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        return panel

    def row(self, title: str) -> gd.Row:
        self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        row = gd.Row(title).id(self.next_id).grid_pos(gm.GridPos(h=1, w=24, x=0, y=self.y))
        self.next_id += 1
        self.y += 1
        return row


def timeseries(title: str, unit: str, targets: list, *, description: str = "", links: tuple = ()) -> gt.Panel:
    """A time series panel whose thresholds (when set) are drawn as dashed lines."""
    panel = (
        gt.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(targets)
        .links(list(links))
        .thresholds_style(gc.GraphThresholdsStyleConfig().mode(gmc.GraphTresholdsStyleMode.DASHED))
        .legend(
            gc.VizLegendOptions()
            .show_legend(True)
            .display_mode(gmc.LegendDisplayMode.TABLE)
            .placement(gmc.LegendPlacement.BOTTOM)
            .calcs(["mean", "max", "lastNotNull"])
        )
    )
    return panel
