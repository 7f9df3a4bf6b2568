"""The GPU and host dashboard: per-GPU utilization, memory, temperature, power and ECC errors, per-process
GPU memory, and host CPU and memory, from the :mod:`modeltel.meters` series."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as gd

from .. import taxonomy as tx
from .alerts import GPU_UID, Links
from .grafana import RATE, Layout, new_dashboard, query, runbook_link, thresholds, timeseries

__all__ = ["UID", "gpu_dashboard"]

UID = GPU_UID
_GPU_SEL = '{hw_id=~"$gpu", job=~"$job", instance=~"$instance"}'
_GPU_LEGEND = "{{instance}} GPU {{modeltel_gpu_index}} {{hw_name}}"


def _gauge(instrument: tx.Instrument) -> str:
    return f"{instrument.prometheus_name}{_GPU_SEL}"


def utilization_panel() -> gd.Panel:
    return timeseries(  # no thresholds: a busy GPU is not an alert
        "GPU utilization", "percentunit", [query(_gauge(tx.GPU_UTILIZATION), _GPU_LEGEND)],
        description=tx.GPU_UTILIZATION.description,
    ).min(0).max(1)  # fmt: skip


def memory_panel(links: Links) -> gd.Panel:
    full = tx.ALERTS_BY_NAME["GPUMemoryNearlyFull"][0].threshold
    targets = [
        query(_gauge(tx.GPU_MEMORY_USAGE), f"used {_GPU_LEGEND}", "A"),
        query(_gauge(tx.GPU_MEMORY_LIMIT), f"size {_GPU_LEGEND}", "B"),
    ]
    return timeseries(
        "GPU memory", "bytes", targets,
        description=f"{tx.GPU_MEMORY_USAGE.description} GPUMemoryNearlyFull fires above {full:.0%} of the size.",
        links=(runbook_link(links, "GPUMemoryNearlyFull"),),
    )  # fmt: skip


def temperature_panel(links: Links) -> gd.Panel:
    return timeseries(
        "GPU temperature", "celsius", [query(_gauge(tx.GPU_TEMPERATURE), _GPU_LEGEND)],
        description=tx.GPU_TEMPERATURE.description,
        links=(runbook_link(links, "GPUHighTemperature"), runbook_link(links, "GPUCriticalTemperature")),
    ).thresholds(thresholds("GPUHighTemperature", "GPUCriticalTemperature"))  # fmt: skip


def power_panel() -> gd.Panel:
    targets = [
        query(_gauge(tx.GPU_POWER), f"draw {_GPU_LEGEND}", "A"),
        query(_gauge(tx.GPU_POWER_LIMIT), f"limit {_GPU_LEGEND}", "B"),
    ]
    return timeseries("GPU power", "watt", targets, description=tx.GPU_POWER.description)


def ecc_panel(links: Links) -> gd.Panel:
    expr = f"sum by (instance, hw_id, error_type) (increase({tx.GPU_ERRORS.prometheus_series}{_GPU_SEL}[{RATE}]))"
    return timeseries(
        "GPU ECC errors", "short", [query(expr, "{{instance}} {{hw_id}} {{error_type}}")],
        description=tx.GPU_ERRORS.description, links=(runbook_link(links, "GPUUncorrectableECCErrors"),),
    )  # fmt: skip


def process_memory_panel() -> gd.Panel:
    expr = f"sum by (job, instance, hw_id) ({_gauge(tx.GPU_PROCESS_MEMORY)})"
    return timeseries(
        "GPU memory per process", "bytes", [query(expr, "{{job}} {{instance}} {{hw_id}}")],
        description=tx.GPU_PROCESS_MEMORY.description,
    )  # fmt: skip


def host_panel(links: Links, resource: str) -> gd.Panel:
    r = tx.RESOURCE_USAGE
    sel = f'{{resource_type="{resource}", job=~"$job", instance=~"$instance"}}'
    alert = {"cpu": "HighCPUUsage", "memory": "HighMemoryUsage"}[resource]
    expr = f"avg by (job, instance) ({r.prometheus_name}{sel})"
    return timeseries(
        f"Host {resource}", "percent", [query(expr, "{{job}} {{instance}}")],
        description=r.description, links=(runbook_link(links, alert),),
    ).min(0).max(100).thresholds(thresholds(alert))  # fmt: skip


def gpu_dashboard(links: Links) -> gd.Dashboard:
    lay = Layout()
    board = new_dashboard(UID, tx.RESOURCE_USAGE.prometheus_name, (("gpu", tx.GPU_MEMORY_LIMIT.prometheus_name),))
    board = board.description("Per-GPU readings (NVML) and host CPU and memory, from modeltel.meters.")
    board = board.with_row(lay.row("GPUs"))
    for panel in (utilization_panel(), memory_panel(links), temperature_panel(links), power_panel(),
                  ecc_panel(links), process_memory_panel()):  # fmt: skip
        board = board.with_panel(lay.place(panel, 12))
    board = board.with_row(lay.row("Host"))
    for resource in ("cpu", "memory"):
        board = board.with_panel(lay.place(host_panel(links, resource), 12))
    return board
