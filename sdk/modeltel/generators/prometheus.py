"""A Prometheus config for a loopback stack (the end-to-end test, ``benchmarks/mttd.py``, the demo):
the generated rule files, the collectors as the ``modeltel-collector`` job, one Alertmanager."""

from __future__ import annotations

from pathlib import Path

from .. import taxonomy as tx
from .yamlout import dump

__all__ = ["prometheus_config"]


def prometheus_config(rule_files: list[Path], collectors: list[str], alertmanager: str, interval: str) -> str:
    """Scrape ``collectors`` (host:port) and evaluate ``rule_files`` every ``interval``."""
    return dump(
        {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
            "scrape_configs": [
                # honor_labels: job/instance are the apps' service.name/service.instance.id, not the collector's
                {"job_name": tx.COLLECTOR_JOB, "honor_labels": True, "static_configs": [{"targets": collectors}]}
            ],
        }
    )
