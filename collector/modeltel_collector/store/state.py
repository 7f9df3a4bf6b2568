"""The metric store's records: a family, a resource, what one ingest did, and the shapes in-process
readers and writers (the detectors) exchange with it. ``store.metrics`` holds them under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from modeltel_collector.store.handover import Held
from modeltel_collector.store.labels import Labels, ResourceKey
from modeltel_collector.store.series import Series

__all__ = ["Family", "GaugePoint", "HistogramState", "IngestResult", "ResourceState"]


@dataclass
class Family:
    name: str
    type: str
    unit: str
    help: str
    series: dict[Labels, Series] = field(default_factory=dict)
    owner: dict[Labels, ResourceKey] = field(default_factory=dict)
    derived: set[Labels] = field(default_factory=set)  # series computed from spans
    direct_resources: set[ResourceKey] = field(default_factory=set)  # resources sending this family
    held: dict[Labels, Held] = field(default_factory=dict)  # derived series the app's own have not reached


@dataclass
class ResourceState:
    key: ResourceKey
    labels: Labels  # job, instance
    info: Labels  # target_info labels (other resource attributes)
    last_seen: float
    keys: set[tuple[str, Labels]] = field(default_factory=set)
    unfit: set[str] = field(default_factory=set)  # latency families it sent with unfit bounds (warned once)


class HistogramState(NamedTuple):
    """One histogram series as ``MetricStore.histograms`` copies it out."""

    start_ns: int
    bounds: tuple[float, ...]
    counts: tuple[int, ...]


class GaugePoint(NamedTuple):
    """A gauge value an in-process producer sets (``MetricStore.set_gauges``); attributes by OTel name."""

    family: str
    help: str
    attributes: dict[str, str]
    value: float


@dataclass
class IngestResult:
    points: int = 0
    rejected: int = 0
    reasons: set[str] = field(default_factory=set)
    unfit: dict[str, int] = field(default_factory=dict)  # latency family -> points with unfit bounds
    warnings: list[str] = field(default_factory=list)  # each resource and family's first unfit bounds
