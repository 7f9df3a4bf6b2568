"""Labels from OTLP attributes, per the OpenTelemetry -> Prometheus compatibility spec: the resource's
``job``/``instance`` and ``target_info`` attributes, and a point's attributes, each name and value cut to
the label value bound (``labelcap``), since a client controls them and every scrape carries them.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from modeltel_collector.labelcap import LabelCap
from modeltel_collector.otlp import any_value_str
from modeltel_collector.translate import label_name

__all__ = ["Labels", "ResourceKey", "add_label", "point_labels", "resource_identity"]

Labels = tuple[tuple[str, str], ...]
ResourceKey = tuple[str, str]  # (job, instance)

_RESOURCE_IDENTITY = ("service.name", "service.namespace", "service.instance.id")


def resource_identity(resource: Resource, cap: LabelCap) -> tuple[ResourceKey, Labels]:
    """(job, instance) and the remaining resource attributes (for ``target_info``), per the compat spec;
    every value cut to the label value bound."""
    attrs = {kv.key: any_value_str(kv.value) for kv in resource.attributes}
    name = attrs.get("service.name", "unknown_service")
    ns = attrs.get("service.namespace")
    job = cap(f"{ns}/{name}" if ns else name)
    instance = cap(attrs.get("service.instance.id", ""))
    info: dict[str, str] = {}
    for k, v in attrs.items():
        if k not in _RESOURCE_IDENTITY:
            add_label(info, label_name(k), v, cap)
    return (job, instance), tuple(sorted(info.items()))


def add_label(labels: dict[str, str], key: str, value: str, cap: LabelCap) -> None:
    """Keys that sanitise to the same label name ('a.b', 'a_b') are joined with ';', as the compat spec says;
    the name and the value are cut to the label value bound."""
    if len(key) > cap.short:  # the checks inline: this runs per attribute of every point
        key = cap.name(key)
    if key in labels:
        value = f"{labels[key]};{value}"
    labels[key] = value if len(value) <= cap.short else cap(value)


def point_labels(base: Labels, attributes: Iterable, cap: LabelCap) -> Labels:
    labels = dict(base)
    for kv in attributes:
        add_label(labels, label_name(kv.key), any_value_str(kv.value), cap)
    return tuple(sorted(labels.items()))
