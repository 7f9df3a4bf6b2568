"""The monitoring spec's comprehensive health check, per model, from the engine's latest results.

Overall health is "degraded" when any check is degraded (or an alarm is still open); the worst severity is
the maximum of ordered ``Severity`` values, not of strings (the spec's ``max()`` over 'low' < 'medium' <
'high' < 'critical' was alphabetical, so 'medium' beat 'critical').
"""

from __future__ import annotations

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
