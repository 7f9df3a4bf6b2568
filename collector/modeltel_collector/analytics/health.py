"""The monitoring spec's comprehensive health check, per model, from the engine's latest results.

Overall health is "degraded" when any check is degraded (or an alarm is still open); the worst severity is
the maximum of ordered ``Severity`` values, not of strings (the spec's ``max()`` over 'low' < 'medium' <
'high' < 'critical' was alphabetical, so 'medium' beat 'critical').
"""

from __future__ import annotations

import re

from modeltel import taxonomy as tx
from modeltel.taxonomy import Severity

from .engine import Engine


def health_report(engine: Engine) -> dict:
    models = []
    for (model, version), w in sorted(engine.models.items()):
        checks = {check: r.as_dict() for check, r in sorted(w.results.items())}
        worst = max([w.worst(), *(r.severity for r in w.results.values())], default=Severity.OK)
        degraded = any(r.degraded for r in w.results.values()) or bool(w.episodes)
        models.append(
            {
                "model_name": model,
                "model_version": version,
                "overall_health": "degraded" if degraded else "healthy",
                "max_severity": worst.label,
                "details": checks,
            }
        )
    return {"models": models}


def render_health(report: dict) -> str:
    lines = []
    for m in report["models"]:
        lines.append(f"{m['model_name']} {m['model_version']}: {m['overall_health']} (worst: {m['max_severity']})")
        for check, r in m["details"].items():
            p = "-" if r["p_value"] is None else f"{r['p_value']:.3g}"
            effect = "-" if r["effect_size"] is None else f"{r['effect_size']:.3g}"
            lines.append(f"  {check:<18} {r['status']:<16} {r['severity']:<9} p={p:<10} effect={effect}")
    return "\n".join(lines) if lines else "no models seen"


_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in Prometheus text exposition (comments skipped)."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(m.group(2) or "")}
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def report_from_metrics(text: str) -> dict:
    """The health report from a collector's /metrics: its model_degradation_* gauges, per model version."""
    models: dict[tuple[str, str], dict] = {}
    names = {
        tx.DEGRADATION_P_VALUE.prometheus_name: "p_value",
        tx.DEGRADATION_STATISTIC.prometheus_name: "statistic",
        tx.DEGRADATION_EFFECT_SIZE.prometheus_name: "effect_size",
    }
    for name, labels, value in parse_samples(text):
        if name != tx.DEGRADATION_DETECTED.prometheus_name and name not in names:
            continue
        key = (labels.get("model_name", ""), labels.get("model_version", ""))
        check = models.setdefault(key, {}).setdefault(labels.get("check", ""), {"check": labels.get("check", "")})
        if name in names:
            check[names[name]] = value
        elif value == 1.0:
            check["severity"] = labels.get("severity", "")
    out = []
    for (model, version), checks in sorted(models.items()):
        details = {}
        for check, r in sorted(checks.items()):
            severity = r.get("severity")
            status = "degraded" if severity else ("ok" if "p_value" in r else "not_enough_data")
            details[check] = {"status": status, "severity": severity or "ok", "p_value": r.get("p_value"),
                              "statistic": r.get("statistic"), "effect_size": r.get("effect_size")}  # fmt: skip
        worst = max((Severity[d["severity"].upper()] for d in details.values()), default=Severity.OK)
        degraded = any(d["status"] == "degraded" for d in details.values())
        out.append({"model_name": model, "model_version": version, "overall_health": "degraded" if degraded else
                    "healthy", "max_severity": worst.label, "details": details})  # fmt: skip
    return {"models": out}
