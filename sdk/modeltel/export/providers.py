"""What a pipeline is built from: resource, sampler, exporters, views and exemplar filter, from Settings.

Kept apart from :mod:`.pipeline` so the wiring reads in one screen; each builder maps one validated
setting onto the OpenTelemetry SDK object it names. Exporters read the standard ``OTEL_EXPORTER_OTLP_*``
variables (endpoint, headers, timeout, compression) themselves; OTLP ones encode with :mod:`.otlp` unless
``MODELTEL_OTLP_ENCODER=upstream``.
"""

from __future__ import annotations

import uuid
from typing import Any

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from .. import config
from .. import taxonomy as tx
from .._version import __version__
from . import otlp


def build_sampler(name: str, arg: float) -> Sampler:
    return {
        "always_on": lambda: ALWAYS_ON,
        "always_off": lambda: ALWAYS_OFF,
        "traceidratio": lambda: TraceIdRatioBased(arg),
        "parentbased_always_on": lambda: ParentBased(ALWAYS_ON),
        "parentbased_always_off": lambda: ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": lambda: ParentBased(TraceIdRatioBased(arg)),
    }[name]()


def build_resource(settings: config.Settings) -> Resource:
    """Resource.create() adds OTEL_RESOURCE_ATTRIBUTES and SDK defaults; ours take precedence."""
    return Resource.create(
        {
            "service.name": settings.service_name,
            "service.instance.id": str(uuid.uuid4()),
            tx.RESOURCE_MODEL_NAME: settings.model_name,
            tx.RESOURCE_MODEL_VERSION: settings.model_version,
            "telemetry.distro.name": tx.DISTRO_NAME,
            "telemetry.distro.version": __version__,
        }
    )


def span_exporter(settings: config.Settings) -> Any:
    if settings.traces_exporter == "console":
        return ConsoleSpanExporter()
    exporter_class = otlp.span_exporter_class(settings.traces_protocol, settings.otlp_encoder)
    # headers, timeout, compression (and the endpoint, unless config completed it): the standard OTEL_* variables
    return exporter_class(endpoint=settings.traces_endpoint)


def metric_exporter(settings: config.Settings) -> Any:
    temporality = preferred_temporality(settings.metrics_temporality)
    if settings.metrics_exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter(preferred_temporality=temporality)
    exporter_class = otlp.metric_exporter_class(settings.metrics_protocol, settings.otlp_encoder)
    return exporter_class(endpoint=settings.metrics_endpoint, preferred_temporality=temporality)


def preferred_temporality(name: str) -> dict[type, AggregationTemporality]:
    """The temporality per instrument type that ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` means
    (the OTLP exporter's own table), built from the setting so that ``init(metrics_temporality=...)`` counts
    too: the exporter itself reads only the environment variable."""
    delta = AggregationTemporality.DELTA if name in ("delta", "lowmemory") else AggregationTemporality.CUMULATIVE
    observable = AggregationTemporality.DELTA if name == "delta" else AggregationTemporality.CUMULATIVE
    cumulative = AggregationTemporality.CUMULATIVE
    return {
        Counter: delta,
        Histogram: delta,
        ObservableCounter: observable,
        UpDownCounter: cumulative,
        ObservableUpDownCounter: cumulative,
        ObservableGauge: cumulative,
    }


def views(settings: config.Settings) -> list[View]:
    out = []
    for name, buckets in settings.bucket_overrides.items():
        if settings.histogram == "exponential":
            aggregation = ExponentialBucketHistogramAggregation()
        else:
            aggregation = ExplicitBucketHistogramAggregation(list(buckets))
        out.append(View(instrument_name=name, meter_name=tx.METER_NAME, aggregation=aggregation))
    return out


def exemplar_filter(name: str) -> Any:
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, TraceBasedExemplarFilter

    return {
        "trace_based": TraceBasedExemplarFilter,
        "always_on": AlwaysOnExemplarFilter,
        "always_off": AlwaysOffExemplarFilter,
    }[name]()
