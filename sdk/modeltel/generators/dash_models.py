"""The model performance dashboard: the seed's six panels, per-stage latency, batch size, errors by type,
the generative models' row (:mod:`.dash_genai`), and the alerts firing now for the selected model."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import gauge as gg
from grafana_foundation_sdk.builders import heatmap as gh
from grafana_foundation_sdk.builders import table as gtab
from grafana_foundation_sdk.models import prometheus as gmp

from .. import taxonomy as tx
from .alerts import MODELS_UID, Links
from .dash_genai import ROW_TITLE as GENAI_ROW
from .dash_genai import genai_panels
from .grafana import (
    DATASOURCE,
    LAST,
    RATE,
    Layout,
    new_dashboard,
    quantile,
    query,
    rate,
    runbook_link,
    selector,
    thresholds,
    timeseries,
)

__all__ = ["UID", "models_dashboard"]

UID = MODELS_UID
_BY = "model_name, model_version"
_ACCURACY_SLO = next(s for s in tx.SLOS if s.name == "accuracy_slo")


def _sel(instrument: tx.Instrument, extra: str = "") -> str:
    return selector(instrument.prometheus_labels, extra=extra)


def latency_panel(links: Links) -> gd.Panel:
    lat = tx.PREDICTION_LATENCY
    targets = [
        query(quantile(q, lat, _BY), f"p{round(q * 100)} {{{{model_name}}}} {{{{model_version}}}}", ref, exemplar=True)
        for ref, q in (("A", 0.5), ("B", 0.95), ("C", 0.99))
    ]
    return timeseries(
        "Prediction latency p50 / p95 / p99", "s", targets, description=lat.description,
        links=(runbook_link(links, "HighPredictionLatency"), runbook_link(links, "CriticalPredictionLatency")),
    ).thresholds(thresholds(
        "HighPredictionLatency", "CriticalPredictionLatency", slo=tx.SLO_LATENCY_THRESHOLD_SECONDS
    ))  # fmt: skip


def throughput_panel(links: Links) -> gd.Panel:
    expr = f"sum by ({_BY}, status) ({rate(tx.PREDICTIONS)})"
    return timeseries(
        "Predictions / s by model and status", "reqps",
        [query(expr, "{{model_name}} {{model_version}} {{status}}")],
        description=tx.PREDICTIONS.description, links=(runbook_link(links, "LowThroughput"),),
    ).thresholds(thresholds("LowThroughput"))  # fmt: skip


def error_rate_panel(links: Links) -> gd.Panel:
    is_error = f'{tx.ATTR_STATUS}="{tx.STATUS_ERROR}"'
    failed = f"sum by ({_BY}) ({rate(tx.PREDICTIONS, extra=is_error)})"
    total = f"sum by ({_BY}) ({rate(tx.PREDICTIONS)})"
    expr = f"({failed} or 0 * {total}) / ({total} > 0)"
    return timeseries(
        "Error rate", "percentunit", [query(expr, "{{model_name}} {{model_version}}")],
        description="Failed predictions (status=error) per prediction: the ratio HighErrorRate and"
        " CriticalErrorRate compare (errors by type are counted per exception, which can exceed it).",
        links=(runbook_link(links, "HighErrorRate"), runbook_link(links, "CriticalErrorRate")),
    ).thresholds(thresholds("HighErrorRate", "CriticalErrorRate"))  # fmt: skip


def errors_by_type_panel() -> gd.Panel:
    expr = f"sum by ({_BY}, error_type) ({rate(tx.ERRORS)})"
    return timeseries("Errors / s by type", "short", [query(expr, "{{model_name}} {{error_type}}")])


def accuracy_panel(links: Links) -> gd.Panel:
    expr = f"avg by ({_BY}) ({tx.ONLINE_ACCURACY.prometheus_name}{_sel(tx.ONLINE_ACCURACY)})"
    return (
        gg.Panel()
        .title("Online accuracy")
        .description(tx.ONLINE_ACCURACY.description)
        .datasource(DATASOURCE)
        .with_target(query(expr, "{{model_name}} {{model_version}}"))
        .unit("percentunit")
        .min(0)
        .max(1)
        # orange below AccuracyDegradation's threshold, yellow below the accuracy SLO's, green at or above it
        .thresholds(thresholds("AccuracyDegradation", slo=_ACCURACY_SLO.threshold))
        .show_threshold_markers(True)
        .reduce_options(LAST)
        .links([runbook_link(links, "AccuracyDegradation")])
    )


def stage_panel(links: Links) -> gd.Panel:
    st = tx.STAGE_LATENCY
    mean = f"sum by (stage) ({rate(st, '_sum')}) / sum by (stage) ({rate(st, '_count')})"
    targets = [
        query(quantile(0.95, st, "stage"), "p95 {{stage}}", "A", exemplar=True),
        query(mean, "mean {{stage}}", "B"),
    ]
    return timeseries(
        "Stage latency (preprocess, inference, postprocess, custom)", "s", targets,
        description=f"{st.description} The lines are the inference stage's alert thresholds.",
        links=(runbook_link(links, "HighStageLatency"), runbook_link(links, "CriticalStageLatency")),
    ).thresholds(thresholds("HighStageLatency", "CriticalStageLatency", stage=tx.STAGE_INFERENCE))  # fmt: skip


def batch_panel() -> gd.Panel:
    b = tx.BATCH_SIZE
    mean = f"sum by ({_BY}) ({rate(b, '_sum')}) / sum by ({_BY}) ({rate(b, '_count')})"
    targets = [query(quantile(0.95, b, _BY), "p95 {{model_name}}", "A"), query(mean, "mean {{model_name}}", "B")]
    return timeseries("Batch size", "none", targets, description=b.description)


def confidence_panel(links: Links) -> gd.Panel:
    c = tx.PREDICTION_CONFIDENCE
    expr = f"sum by (le) (increase({c.prometheus_name}_bucket{_sel(c)}[{RATE}]))"
    return (
        gh.Panel()
        .title("Prediction confidence")
        .description(c.description)
        .datasource(DATASOURCE)
        .with_target(query(expr, "{{le}}").format(gmp.PromQueryFormat.HEATMAP))
        .calculate(False)
        .show_tooltip()
        .links([runbook_link(links, "LowPredictionConfidence")])
    )


def resources_panel(links: Links) -> gd.Panel:
    r = tx.RESOURCE_USAGE
    expr = f"avg by (model_name, resource_type) ({r.prometheus_name}{_sel(r)})"
    return timeseries(
        "CPU / memory / GPU use", "percent", [query(expr, "{{model_name}} {{resource_type}}")],
        description=f"{r.description} CPU, memory and GPU page at different levels: the GPU and host dashboard"
        " draws each alert's threshold on its own panel.",
        links=(runbook_link(links, "HighCPUUsage"), runbook_link(links, "HighMemoryUsage")),
    ).min(0).max(100)  # fmt: skip


def alerts_panel() -> gd.Panel:
    labels = "alertname, severity, model_name, model_version, slo, stage"
    expr = (
        f'sum by ({labels}) (ALERTS{{alertstate="firing", model_name=~"$model_name", model_version=~"$model_version"}})'
    )
    return (
        gtab.Panel()
        .title("Alerts firing now")
        .description("Prometheus' ALERTS series for the selected model.")
        .datasource(DATASOURCE)
        .with_target(query(expr, instant=True))
        .show_header(True)
    )


def models_dashboard(links: Links) -> gd.Dashboard:
    lay = Layout()
    board = new_dashboard(UID, tx.PREDICTIONS.prometheus_series).description(
        "Latency, throughput, errors, accuracy, token streams and resources per model (generated from"
        " modeltel.taxonomy)."
    )
    board = board.with_row(lay.row("Requests"))
    for panel, w in ((latency_panel(links), 12), (throughput_panel(links), 12), (error_rate_panel(links), 8),
                     (errors_by_type_panel(), 8), (accuracy_panel(links), 8)):  # fmt: skip
        board = board.with_panel(lay.place(panel, w))
    board = board.with_row(lay.row("Stages and batches"))
    for panel, w in ((stage_panel(links), 12), (batch_panel(), 12)):
        board = board.with_panel(lay.place(panel, w))
    board = board.with_row(lay.row(GENAI_ROW))
    for panel, w in genai_panels(links):
        board = board.with_panel(lay.place(panel, w))
    board = board.with_row(lay.row("Quality, resources and alerts"))
    for panel, w in ((confidence_panel(links), 12), (resources_panel(links), 12), (alerts_panel(), 24)):
        board = board.with_panel(lay.place(panel, w))
    return board
