"""The "Generative" row of the model performance dashboard: token streams, by model and version.

A generative model is read by time to first token (TTFT), time per output token (TPOT), tokens in and out
and the end-to-end duration (``modeltel.taxonomy.genai``), not by one prediction latency. The row sits on
the same dashboard, under the same ``model_name`` / ``model_version`` variables, as the classifiers' rows,
so one page shows both kinds; TTFT and TPOT draw the thresholds of the alerts that page on them (and the
TTFT SLO's), and their quantiles carry exemplars (the request's trace) as the prediction latency's do.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as gd

from .. import taxonomy as tx
from .alerts import Links
from .grafana import quantile, query, rate, runbook_link, thresholds, timeseries

__all__ = ["ROW_TITLE", "genai_panels"]

ROW_TITLE = "Generative (token streams)"
_BY = "model_name, model_version"
_LEGEND = "{{model_name}} {{model_version}}"
_TOKEN_TYPE = tx.ATTR_GEN_AI_TOKEN_TYPE.replace(".", "_")  # its Prometheus label


def ttft_panel(links: Links) -> gd.Panel:
    ttft = tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN
    targets = [
        query(quantile(q, ttft, _BY), f"p{round(q * 100)} {_LEGEND}", ref, exemplar=True)
        for ref, q in (("A", 0.5), ("B", 0.95), ("C", 0.99))
    ]
    return timeseries(
        "Time to first token p50 / p95 / p99", "s", targets,
        description=f"{ttft.description} Yellow: the TTFT SLO's threshold; orange and red: the p95 alerts'.",
        links=(runbook_link(links, "HighTimeToFirstToken"), runbook_link(links, "CriticalTimeToFirstToken")),
    ).thresholds(thresholds(
        "HighTimeToFirstToken", "CriticalTimeToFirstToken", slo=tx.SLO_TTFT_THRESHOLD_SECONDS
    ))  # fmt: skip


def tpot_panel(links: Links) -> gd.Panel:
    tpot = tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN
    targets = [
        query(quantile(q, tpot, _BY), f"p{round(q * 100)} {_LEGEND}", ref, exemplar=True)
        for ref, q in (("A", 0.5), ("B", 0.95))
    ]
    return timeseries(
        "Time per output token p50 / p95", "s", targets, description=tpot.description,
        links=(runbook_link(links, "HighTimePerOutputToken"), runbook_link(links, "CriticalTimePerOutputToken")),
    ).thresholds(thresholds("HighTimePerOutputToken", "CriticalTimePerOutputToken"))  # fmt: skip


def output_rate_panel() -> gd.Panel:
    usage = tx.GEN_AI_CLIENT_TOKEN_USAGE
    output = f'{_TOKEN_TYPE}="{tx.GEN_AI_TOKEN_OUTPUT}"'
    expr = f"sum by ({_BY}) ({rate(usage, '_sum', extra=output)})"
    return timeseries(
        "Output tokens / s", "short", [query(expr, _LEGEND)],
        description="Tokens generated per second, all requests of the model version together (the sum of "
        f"{usage.prometheus_name} with {_TOKEN_TYPE}={tx.GEN_AI_TOKEN_OUTPUT}).",
    )  # fmt: skip


def tokens_per_request_panel() -> gd.Panel:
    usage = tx.GEN_AI_CLIENT_TOKEN_USAGE
    by = f"{_BY}, {_TOKEN_TYPE}"
    expr = f"sum by ({by}) ({rate(usage, '_sum')}) / sum by ({by}) ({rate(usage, '_count')})"
    return timeseries(
        "Tokens per request (input, output)", "short", [query(expr, f"{{{{{_TOKEN_TYPE}}}}} {_LEGEND}")],
        description=f"Mean tokens per request, by {_TOKEN_TYPE}. {usage.description}",
    )  # fmt: skip


def duration_panel() -> gd.Panel:
    duration = tx.GEN_AI_SERVER_REQUEST_DURATION
    target = query(quantile(0.95, duration, _BY), f"p95 {_LEGEND}", exemplar=True)
    return timeseries("Generative request duration p95", "s", [target], description=duration.description)


def genai_panels(links: Links) -> list[tuple[gd.Panel, int]]:
    """The row's panels and their widths, in reading order."""
    return [
        (ttft_panel(links), 12),
        (tpot_panel(links), 12),
        (output_rate_panel(), 8),
        (tokens_per_request_panel(), 8),
        (duration_panel(), 8),
    ]
