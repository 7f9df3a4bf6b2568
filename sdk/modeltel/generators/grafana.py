"""The building blocks every modeltel dashboard shares, on Grafana's grafana-foundation-sdk builders.

Selectors, template variables, thresholds and links are made here once, so the three dashboards agree:
a panel filters only on the labels its instrument carries (``model_resource_usage`` has no version),
thresholds come from ``modeltel.taxonomy``, and every rate uses ``$__rate_interval``.
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
    "RATE",
    "Layout",
    "dashboard_links",
    "new_dashboard",
    "query",
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
_GREEN, _ORANGE, _RED = "green", "orange", "red"


def selector(labels: tuple[str, ...] = (), *, extra: str = "", resource: bool = True) -> str:
    """``{label=~"$label", ...}`` for the template variables among ``labels`` (+ job/instance)."""
    names = [v for v in VARIABLES if v in labels or (resource and v in ("job", "instance"))]
    parts = [extra] if extra else []
    parts += [f'{n}=~"${n}"' for n in names]
    return "{" + ", ".join(parts) + "}"


def thresholds(
    metric: tx.MetricDefinition | None = None, steps: tuple[float, float] | None = None
) -> gd.ThresholdsConfig:
    """Green / orange / red bands at the warning and critical thresholds, in the metric's direction."""
    if metric is not None:
        warn, crit = metric.threshold_warning, metric.threshold_critical
        lower_is_worse = metric.direction is tx.Direction.LOWER_IS_WORSE
    else:
        assert steps is not None
        (warn, crit), lower_is_worse = steps, steps[0] > steps[1]
    if lower_is_worse:
        bands = [gm.Threshold(value=None, color=_RED), gm.Threshold(crit, _ORANGE), gm.Threshold(warn, _GREEN)]
    else:
        bands = [gm.Threshold(value=None, color=_GREEN), gm.Threshold(warn, _ORANGE), gm.Threshold(crit, _RED)]
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
