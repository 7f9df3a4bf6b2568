"""``alerts/slo-config.yaml`` and OpenSLO v1 specs, read into :class:`modeltel.taxonomy.SLO` objects.

The config holds the seed's four SLOs (a test keeps them equal to ``modeltel.taxonomy.SLOS``), the
burn-rate window table, the SLA tiers the report prices, where alert links point, and a list of OpenSLO
files to import. Every mistake is reported as one line naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import taxonomy as tx
from .alerts import DEFAULT_LINKS, Links
from .durations import parse_duration

__all__ = ["SLOConfig", "SLOConfigError", "default_slo_config", "load_slo_config", "openslo_slos"]

_OPS = ("gte", "gt", "lte", "lt")


class SLOConfigError(ValueError):
    """A bad SLO config or OpenSLO spec; the message names the file and the field."""


@dataclass(frozen=True)
class Penalty:
    breach_threshold: float  # availability below this ...
    credit_percentage: float  # ... earns this service credit


@dataclass(frozen=True)
class SLA:
    name: str
    tier: str
    availability: float
    penalties: tuple[Penalty, ...]
    objectives: dict[str, str] = field(default_factory=dict)
    slo: str = "availability_slo"  # the SLO whose actual is the SLA's availability


@dataclass(frozen=True)
class SLOConfig:
    slos: tuple[tx.SLO, ...]
    windows: tuple[tx.BurnRateWindow, ...]
    windows_period: str
    links: Links
    slas: tuple[SLA, ...]


def _req(d: dict, key: str, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise SLOConfigError(f"{where}: missing field {key!r}")
    return d[key]


def _window(value: str, where: str) -> str:
    try:
        parse_duration(value)
    except ValueError as e:
        raise SLOConfigError(f"{where}: {e}") from None
    return str(value)


def _objective(value: Any, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SLOConfigError(f"{where}: target must be a number in (0, 1), got {value!r}") from None
    if not 0 < v < 1:
        raise SLOConfigError(f"{where}: target must be in (0, 1), got {v}")
    return v


def _slo(d: dict, where: str) -> tx.SLO:
    name = _req(d, "name", where)
    where = f"{where} {name}"
    common = {
        "name": name,
        "description": d.get("description", name),
        "objective": _objective(_req(d, "target", where), where),
        "window": _window(_req(d, "window", where), where),
    }
    if "threshold" in d:
        t = d["threshold"]
        op = _req(t, "op", where)
        if op not in _OPS:
            raise SLOConfigError(f"{where}: threshold op must be one of {', '.join(_OPS)}, got {op!r}")
        return tx.SLO(**common, metric=_req(t, "metric", where), op=op, threshold=float(_req(t, "value", where)))
    if ("good" in d) == ("bad" in d):
        raise SLOConfigError(f"{where}: give exactly one of 'good' or 'bad' (with 'total'), or a 'threshold'")
    return tx.SLO(**common, good=d.get("good", ""), bad=d.get("bad", ""), total=_req(d, "total", where))


def _sla(d: dict, where: str) -> SLA:
    name = _req(d, "name", where)
    objectives = {str(k): str(v) for o in d.get("objectives", []) for k, v in o.items()}
    avail = objectives.get("availability", "100%").rstrip("%")
    penalties = tuple(
        Penalty(float(_req(p, "breach_threshold", where)), float(_req(p, "credit_percentage", where)))
        for p in d.get("penalties", [])
    )
    slo = str(d.get("availability_slo", "availability_slo"))
    return SLA(name, str(d.get("tier", name)), float(avail) / 100, penalties, objectives, slo)


def default_slo_config() -> SLOConfig:
    """The taxonomy's SLOs and burn-rate windows with the default links: what the shipped
    ``alerts/slo-config.yaml`` says (a test keeps them equal), for an installed package with no checkout."""
    return SLOConfig(tx.SLOS, tx.BURN_RATE_WINDOWS, tx.BURN_RATE_PERIOD, DEFAULT_LINKS, ())


def load_slo_config(path: str | Path) -> SLOConfig:
    """Read ``path`` and every OpenSLO file it lists (relative to it)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SLOConfigError(f"{path}: {e}") from None
    slos = [_slo(d, f"{path}: service_level_objectives") for d in doc.get("service_level_objectives", [])]
    for rel in doc.get("openslo", []):
        slos += openslo_slos(path.parent / rel)
    names = [s.name for s in slos]
    if len(set(names)) != len(names):
        raise SLOConfigError(f"{path}: SLO names must be unique, got {names}")
    burn = doc.get("burn_rate", {})
    windows = (
        tuple(
            tx.BurnRateWindow(
                tx.Severity[str(_req(r, "severity", f"{path}: burn_rate")).upper()],
                float(_req(r, "factor", f"{path}: burn_rate")),
                _window(_req(r, "long", f"{path}: burn_rate"), f"{path}: burn_rate"),
                _window(_req(r, "short", f"{path}: burn_rate"), f"{path}: burn_rate"),
            )
            for r in burn.get("windows", [])
        )
        or tx.BURN_RATE_WINDOWS
    )
    links = doc.get("links", {})
    return SLOConfig(
        slos=tuple(slos),
        windows=windows,
        windows_period=_window(burn.get("period", tx.BURN_RATE_PERIOD), f"{path}: burn_rate.period"),
        links=Links(_req(links, "runbook_base_url", f"{path}: links"), _req(links, "grafana_url", f"{path}: links")),
        slas=tuple(_sla(d, f"{path}: service_level_agreements") for d in doc.get("service_level_agreements", [])),
    )


# ------------------------------------------------------------------------------------------------ OpenSLO v1
def _query(source: dict, where: str) -> str:
    spec = _req(_req(source, "metricSource", where), "spec", where)
    return str(_req(spec, "query", where)).strip()


def _indicator(slo_spec: dict, slis: dict[str, dict], where: str) -> dict:
    if "indicator" in slo_spec:
        return _req(slo_spec["indicator"], "spec", where)
    ref = _req(slo_spec, "indicatorRef", where)
    if ref not in slis:
        raise SLOConfigError(f"{where}: indicatorRef {ref!r} names no SLI in the file")
    return slis[ref]


def _openslo_one(doc: dict, slis: dict[str, dict], where: str) -> tx.SLO:
    name = _req(_req(doc, "metadata", where), "name", where)
    where = f"{where} {name}"
    spec = _req(doc, "spec", where)
    objective = _req(spec, "objectives", where)[0]
    window = _window(_req(_req(spec, "timeWindow", where)[0], "duration", where), where)
    common = {
        "name": name,
        "description": spec.get("description", name),
        "objective": _objective(_req(objective, "target", where), where),
        "window": window,
    }
    ind = _indicator(spec, slis, where)
    if "thresholdMetric" in ind:
        op = _req(objective, "op", where)
        if op not in _OPS:
            raise SLOConfigError(f"{where}: objectives[0].op must be one of {', '.join(_OPS)}, got {op!r}")
        metric = _query(ind["thresholdMetric"], where)
        return tx.SLO(**common, metric=metric, op=op, threshold=float(_req(objective, "value", where)))
    ratio = _req(ind, "ratioMetric", where)
    if not ratio.get("counter", False):
        raise SLOConfigError(f"{where}: only ratioMetric with counter: true is supported (queries are counters)")
    total = _query(_req(ratio, "total", where), where)
    if "good" in ratio:
        return tx.SLO(**common, good=_query(ratio["good"], where), total=total)
    return tx.SLO(**common, bad=_query(_req(ratio, "bad", where), where), total=total)


def openslo_slos(path: str | Path) -> list[tx.SLO]:
    """The ``kind: SLO`` documents of an OpenSLO v1 file (SLIs inline or by ``indicatorRef``)."""
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    except (OSError, yaml.YAMLError) as e:
        raise SLOConfigError(f"{path}: {e}") from None
    for d in docs:
        if d.get("apiVersion") != "openslo/v1":
            raise SLOConfigError(f"{path}: apiVersion must be openslo/v1, got {d.get('apiVersion')!r}")
    slis = {d["metadata"]["name"]: d["spec"] for d in docs if d.get("kind") == "SLI"}
    return [_openslo_one(d, slis, f"{path}:") for d in docs if d.get("kind") == "SLO"]
