"""One Prometheus name per series on every path: the SDK's endpoint, modeltel's collector, the taxonomy.

Alert rules and dashboards are generated from ``modeltel.taxonomy``'s ``prometheus_name``; a path that
exposed another name (the Python exporter used to drop ``_ratio`` from unit-"1" gauges) would leave
them silently empty.
"""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modeltel import taxonomy as tx
from modeltel.export.readers import prometheus_reader_class
from modeltel_collector.translate import label_name, metric_family_name

ALL = (*tx.INSTRUMENTS, *tx.GPU_INSTRUMENTS, *tx.GENAI_INSTRUMENTS)


def _sdk_exposition() -> dict[str, set[str]]:
    """Record one point on every taxonomy instrument through the SDK's Prometheus reader; family -> labels."""
    registry = CollectorRegistry()
    reader = prometheus_reader_class()(registry=registry)
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("names-test")
    for inst in ALL:
        attrs = {a: "x" for a in inst.attributes}
        if inst.kind is tx.InstrumentKind.HISTOGRAM:
            meter.create_histogram(inst.otel_name, unit=inst.unit).record(0.5, attrs)
        elif inst.kind is tx.InstrumentKind.COUNTER:
            meter.create_counter(inst.otel_name, unit=inst.unit).add(1, attrs)
        else:
            meter.create_gauge(inst.otel_name, unit=inst.unit).set(0.5, attrs)
    text = generate_latest(registry).decode()
    provider.shutdown()
    families: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            families.setdefault(sample.name, set()).update(sample.labels)
    return families


@pytest.fixture(scope="module")
def sdk_families() -> dict[str, set[str]]:
    return _sdk_exposition()


@pytest.mark.parametrize("inst", ALL, ids=lambda i: i.otel_name)
def test_every_path_exposes_the_taxonomy_name(inst: tx.Instrument, sdk_families: dict[str, set[str]]) -> None:
    is_gauge = inst.kind is tx.InstrumentKind.GAUGE
    assert metric_family_name(inst.otel_name, inst.unit, is_gauge) == inst.prometheus_name  # collector
    sample = {
        tx.InstrumentKind.HISTOGRAM: inst.prometheus_name + "_count",
        tx.InstrumentKind.COUNTER: inst.prometheus_name + "_total",
        tx.InstrumentKind.GAUGE: inst.prometheus_name,
    }[inst.kind]
    assert sample in sdk_families, sorted(n for n in sdk_families if n.startswith(inst.otel_name.split(".")[0]))
    assert set(inst.prometheus_labels) <= sdk_families[sample]
    assert tuple(label_name(a) for a in inst.attributes) == inst.prometheus_labels


def test_unit_one_gauges_carry_ratio_everywhere() -> None:
    ratios = [i for i in ALL if i.unit == "1" and i.kind is tx.InstrumentKind.GAUGE]
    assert {i.prometheus_name for i in ratios} == {
        "hw_gpu_utilization_ratio",
        "hw_gpu_memory_utilization_ratio",
        "modeltel_gpu_memory_controller_utilization_ratio",
    }


def test_rules_query_only_names_the_taxonomy_lists() -> None:
    """Every metric a generated rule reads is a series some path exposes under that exact name."""
    import re
    from pathlib import Path

    from modeltel_collector.stats import Stats

    series = {"target_info", "up"} | {name + "_total" for name in Stats.COUNTERS}
    for inst in ALL:
        suffixes = {
            tx.InstrumentKind.HISTOGRAM: ("_bucket", "_count", "_sum"),
            tx.InstrumentKind.COUNTER: ("_total",),
            tx.InstrumentKind.GAUGE: ("",),
        }[inst.kind]
        series |= {inst.prometheus_name + s for s in suffixes}
    labels = {label for inst in ALL for label in inst.prometheus_labels} | {"modeltel_gpu_index"}
    rules = (Path(__file__).resolve().parents[1] / "alerts" / "rules").glob("*.yml")
    text = "\n".join(p.read_text() for p in rules)
    exprs = "\n".join(re.findall(r"expr: (.*(?:\n\s{6,}.*)*)", text))
    used = set(re.findall(r"\b((?:model|hw|modeltel|gen_ai)_[a-z_]+)\b", exprs)) | set(
        re.findall(r"\b(target_info|up)\b", exprs)
    )
    assert used - labels <= series, sorted((used - labels) - series)
    assert {"hw_gpu_memory_utilization_ratio", "model_predictions_total"} <= used
    assert {"gen_ai_server_time_to_first_token_seconds_bucket", "gen_ai_server_time_per_output_token_seconds_bucket",
            "gen_ai_server_time_to_first_token_seconds_count"} <= used  # fmt: skip
