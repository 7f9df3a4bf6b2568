"""``promtool test rules`` unit tests, generated for every SLO burn-rate rule.

For each burn-rate row: one model just above ``factor x budget`` and one just below, so the row fires for
the first and not the second; an idle model never fires.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .. import taxonomy as tx
from .durations import parse_duration
from .promtest import fmt_series, render_template
from .slo import ALERT_NAME, burn_alert, burn_windows
from .sloconfig import SLOConfig

__all__ = ["slo_tests"]

_MATCHER = re.compile(r'(\w+)="([^"]*)"')
_COMPLEMENT = {tx.STATUS_SUCCESS: tx.STATUS_ERROR, tx.STATUS_ERROR: tx.STATUS_SUCCESS}


def _parse_selector(sel: str) -> tuple[str, dict[str, str]]:
    metric, _, rest = sel.partition("{")
    return metric, dict(_MATCHER.findall(rest))


def _increments(sel: str, labels: dict, world: list[tuple[str, dict, float]]) -> float:
    """Sum of per-interval increments of the series in ``world`` that ``sel`` selects for one model."""
    metric, want = _parse_selector(sel)
    return sum(
        inc
        for name, lab, inc in world
        if name == metric and all(lab.get(k) == v for k, v in {**want, **labels}.items())
    )


def _ratio_series(slo: tx.SLO, labels: dict, ratio: float, step: float) -> list[tuple[str, dict, float]]:
    """Counters (name, labels, increment per interval) whose error ratio is ``ratio`` for ``slo``."""
    sel = slo.bad or slo.good
    part = step * ratio if slo.bad else step * (1 - ratio)
    metric, filt = _parse_selector(sel)
    total_metric, _ = _parse_selector(slo.total)
    out = [(metric, {**labels, **filt}, part)]
    if total_metric == metric:  # the rest of the total: the same counter with the other label value
        other = {k: _COMPLEMENT.get(v, "other") for k, v in filt.items()}
        out.append((metric, {**labels, **other}, step - part))
    else:
        out.append((total_metric, labels, step))
    return out


def _burn_expected(config: SLOConfig, models: list[dict], ratio_of: Callable[[tx.SLO, dict], float | None]) -> list:
    out = []
    for slo in config.slos:
        for row in burn_windows(slo, config.windows, config.windows_period):
            for labels in models:
                ratio = ratio_of(slo, labels)
                if ratio is None or not ratio > row.factor * slo.error_budget:
                    continue
                d = burn_alert(slo, row, config.links)
                lab = {**labels, **d["labels"]}
                ann = {k: render_template(v, lab, ratio) for k, v in d["annotations"].items()}
                out.append({"exp_labels": lab, "exp_annotations": ann})
    return out


def _slo_test(slo: tx.SLO, config: SLOConfig, interval: int, at: int) -> dict:
    n = at // interval + 2
    rows = burn_windows(slo, config.windows, config.windows_period)
    if slo.kind == "threshold":
        below, above = {"model_name": slo.name, "model_version": "bad"}, {"model_name": slo.name, "model_version": "ok"}
        series = [
            (slo.metric, below, f"{slo.threshold - 0.05:g}x{n}"),
            (slo.metric, above, f"{slo.threshold + 0.05:g}x{n}"),
        ]
        expected = _burn_expected(
            config, [below, above], lambda s, lab: (1.0 if lab is below else 0.0) if s is slo else None
        )
        name = f"{slo.name}: a model always on the bad side burns at 1/budget, fires every row below that"
        return _test(name, interval, series, at, expected)
    world, models = [], [{"model_name": "idle", "model_version": "v1"}]
    world += _ratio_series(slo, models[0], 0.0, 0.0)
    for row in rows:
        for side, factor in (("above", 1.05), ("below", 0.95)):
            ratio = row.factor * slo.error_budget * factor
            if ratio >= 1:
                continue
            labels = {"model_name": slo.name, "model_version": f"{side}-{row.factor:g}x"}
            models.append(labels)
            world += _ratio_series(slo, labels, ratio, 100000.0)

    def ratio_of(other: tx.SLO, labels: dict) -> float | None:
        if other.kind == "threshold":
            return None
        total = _increments(other.total, labels, world)
        if not total:
            return None
        if other.bad:
            return _increments(other.bad, labels, world) / total
        return 1 - _increments(other.good, labels, world) / total

    series = [(name, lab, f"0+{inc:g}x{n}") for name, lab, inc in world]
    expected = _burn_expected(config, models, ratio_of)
    return _test(f"{slo.name}: each row fires just above its factor, not just below", interval, series, at, expected)


def _test(name: str, interval: int, series: list, at: int, expected: list) -> dict:
    return {
        "name": name,
        "interval": f"{interval}m",
        "input_series": [fmt_series(x) for x in series],
        "alert_rule_test": [{"eval_time": f"{at}m", "alertname": ALERT_NAME, "exp_alerts": expected}],
    }


def slo_tests(rule_file: str, config: SLOConfig) -> dict:
    """One test per SLO: models just above and just below every burn-rate row, and an idle one.

    Every SLO in the file is evaluated on the same input (they share counters), so the expected alerts
    are computed for all of them from the input's error ratios, not only for the SLO under test.
    """
    interval, step = 5, 30
    tests = []
    for slo in config.slos:
        longest = max(parse_duration(r.long) for r in burn_windows(slo, config.windows, config.windows_period))
        at = (longest // 60 // step + 1) * step
        tests.append(_slo_test(slo, config, interval, at))
    return {"rule_files": [rule_file], "evaluation_interval": f"{step}m", "tests": tests}
