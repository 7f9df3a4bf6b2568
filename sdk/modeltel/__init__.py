"""modeltel: OpenTelemetry traces and metrics for machine-learning model serving.

The functions here act on the pipeline built by :func:`init` (or by ``opentelemetry-instrument`` /
``modeltel run``); without one they use OpenTelemetry's global providers, so a service that sets up
OpenTelemetry itself still gets modeltel's spans and metrics.
"""

from __future__ import annotations

__version__ = "0.1.0"

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .pipeline import Pipeline, get_pipeline, init, shutdown
from .telemetry import Stage, Telemetry, current_stage, in_prediction

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "Pipeline",
    "Stage",
    "Telemetry",
    "current_stage",
    "detach_from_prediction",
    "get_pipeline",
    "in_prediction",
    "init",
    "monitor_prediction",
    "prediction",
    "record_batch_size",
    "record_confidence",
    "set_online_accuracy",
    "shutdown",
    "stage",
    "telemetry",
]


def telemetry() -> Telemetry:
    """The :class:`Telemetry` the module-level functions use."""
    pipeline = get_pipeline()
    if pipeline is not None:
        return pipeline.telemetry
    from ._global import global_telemetry

    return global_telemetry()


def stage(
    name: str,
    *,
    model_name: str | None = None,
    model_version: str | None = None,
    span_name: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    record: bool = True,
) -> Stage:
    """Time a serving stage: ``with modeltel.stage("preprocess"):`` or ``@modeltel.stage("inference")``."""
    return telemetry().stage(
        name,
        model_name=model_name,
        model_version=model_version,
        span_name=span_name,
        attributes=attributes,
        record=record,
    )


def prediction(model_name: str | None = None, model_version: str | None = None, **kwargs: Any) -> Stage:
    """Time one prediction request: root span, latency histogram, predictions counter by status."""
    return telemetry().prediction(model_name, model_version, **kwargs)


def monitor_prediction(model_name: str | None = None, model_version: str | None = None) -> Callable[[F], F]:
    """Decorator for a prediction function (sync or async); also records a ``confidence`` in its result."""
    return telemetry().monitor_prediction(model_name, model_version)


def record_confidence(value: float, model_name: str | None = None, model_version: str | None = None) -> None:
    telemetry().record_confidence(value, model_name, model_version)


def record_batch_size(size: int, model_name: str | None = None, model_version: str | None = None) -> None:
    telemetry().record_batch_size(size, model_name, model_version)


def set_online_accuracy(value: float, model_name: str | None = None, model_version: str | None = None) -> None:
    telemetry().set_online_accuracy(value, model_name, model_version)
