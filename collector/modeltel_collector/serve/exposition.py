"""Render the metric store as Prometheus text 0.0.4 or OpenMetrics 1.0 (the latter with exemplars).

Written by hand rather than through prometheus_client because the store already holds final cumulative
state, and prometheus_client cannot attach OTel exemplars (trace/span ids) to buckets of foreign series.
"""

from __future__ import annotations

import math

from modeltel_collector.stats import Stats
from modeltel_collector.store.metrics import COUNTER, GAUGE, HISTOGRAM, Labels, MetricStore
from modeltel_collector.store.series import Exemplar
from modeltel_collector.translate import escape_help, escape_label_value, unit_suffix

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def wants_openmetrics(accept: str) -> bool:
    """Content negotiation: OpenMetrics when the client lists it with a q-value at least that of text."""
    best_om, best_text = -1.0, -1.0
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        media, q = fields[0].lower(), 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        if media == "application/openmetrics-text":
            best_om = max(best_om, q)
        elif media in ("text/plain", "*/*", "text/*"):
            best_text = max(best_text, q)
    return best_om > 0 and best_om >= best_text


def fmt(v: float) -> str:
    """Shortest float text, '%g'-style like Go clients (le="0.1", le="1"), exact when %g would round."""
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    s = f"{v:g}"
    return s if float(s) == v else repr(v)


def _labels(labels: Labels) -> str:
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels) + "}" if labels else ""


def _exemplar(ex: Exemplar | None) -> str:
    if ex is None:
        return ""
    return f' # {{trace_id="{ex[0]}",span_id="{ex[1]}"}} {fmt(ex[2])} {ex[3]:.3f}'


def _histograms(w, name: str, series, openmetrics: bool) -> None:
    """The lines of a histogram family's series. A scrape's time is mostly here (a series is 10-20 bucket
    lines): each series' labels are escaped once, not once per bucket, and each bound formatted once."""
    les: dict[float, str] = {}  # bound -> 'le="..."}'
    bucket = name + "_bucket{"
    for labels, s in series:
        lb = _labels(labels)
        head = bucket + lb[1:-1] + "," if labels else bucket
        for bound, cum, ex in s.buckets():
            le = les.get(bound)
            if le is None:
                le = les[bound] = f'le="{fmt(bound)}"}} '
            if openmetrics and ex is not None:
                w(f"{head}{le}{cum}{_exemplar(ex)}\n")
            else:
                w(f"{head}{le}{cum}\n")
        w(f"{name}_sum{lb} {fmt(s.sum)}\n{name}_count{lb} {s.count}\n")


def render(store: MetricStore, stats: Stats | None, openmetrics: bool) -> bytes:
    """The full scrape body: target_info, every merged family, then the collector's self-metrics.

    The store's lock is held only to copy the series (``frozen``); formatting, most of the time, runs
    after it is let go, so a large scrape does not stall ingest."""
    with store.lock:
        infos = [(s.labels + s.info) for s in store.resources.values() if s.info]
        families = [
            (fam.name, fam.type, fam.unit, fam.help, [
                (labels, s.frozen() if fam.type == HISTOGRAM else s.value) for labels, s in fam.series.items()
            ])
            for fam in sorted(store.families.values(), key=lambda f: f.name)
            if fam.series
        ]  # fmt: skip
    out: list[str] = []
    w = out.append
    if infos:
        w("# TYPE target info\n" if openmetrics else "# TYPE target_info gauge\n")
        w("# HELP target Target metadata\n" if openmetrics else "# HELP target_info Target metadata\n")
        for lb in infos:
            w(f"target_info{_labels(tuple(sorted(lb)))} 1\n")
    for name, type_, unit, help_, series in families:
        type_name = name + "_total" if type_ == COUNTER and not openmetrics else name
        w(f"# TYPE {type_name} {type_}\n")
        suffix = unit_suffix(unit, type_ == GAUGE)
        if openmetrics and suffix and name.endswith("_" + suffix):
            w(f"# UNIT {name} {suffix}\n")
        if help_:
            w(f"# HELP {type_name} {escape_help(help_, openmetrics=openmetrics)}\n")
        if type_ == HISTOGRAM:
            _histograms(w, name, series, openmetrics)
        else:
            sample = name + "_total" if type_ == COUNTER else name
            for labels, value in series:
                w(f"{sample}{_labels(labels)} {fmt(value)}\n")
    if stats is not None:
        counters, gauges = stats.snapshot()
        for name, help_, key, values in counters:
            w(f"# TYPE {name if openmetrics else name + '_total'} counter\n")
            w(f"# HELP {name if openmetrics else name + '_total'} {help_}\n")
            for label, v in values:
                w(f'{name}_total{{{key}="{escape_label_value(label)}"}} {fmt(v)}\n')
        for name, help_, v in gauges:
            w(f"# TYPE {name} gauge\n# HELP {name} {help_}\n{name} {fmt(v)}\n")
    if openmetrics:
        w("# EOF\n")
    return "".join(out).encode()
