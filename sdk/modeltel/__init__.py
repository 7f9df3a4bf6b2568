"""modeltel: OpenTelemetry traces and metrics for machine-learning model serving.

This module is the whole public API. The functions here act on the pipeline built by :func:`init` (or
by ``opentelemetry-instrument`` / ``modeltel run``); without one they use OpenTelemetry's global
providers, so a service that sets up OpenTelemetry itself still gets modeltel's spans and metrics.
``docs/architecture.md`` shows the packages behind it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace

from ._version import __version__
from .export import Pipeline, get_pipeline, init, shutdown
from .export import pipeline as _pipeline_state
from .hotpath import (
    Generation,
    Prediction,
    Stage,
    Telemetry,
    current_generation,
    current_stage,
    detach_from_prediction,
    global_telemetry,
    in_prediction,
    telemetry_for,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Iterable

    from typing_extensions import Unpack

    from .hotpath.generation import GenerationOptions, TokensOf
    from .hotpath.prediction import PredictionOptions
    from .hotpath.stage import StageOptions

__all__ = [
    "Generation",
    "Pipeline",
    "Prediction",
    "Stage",
    "Telemetry",
    "__version__",
    "current_generation",
    "current_stage",
    "detach_from_prediction",
    "generation",
    "get_pipeline",
    "in_prediction",
    "init",
    "monitor_prediction",
    "prediction",
    "record_batch_size",
    "record_confidence",
    "record_feedback",
    "remember_prediction",
    "set_online_accuracy",
    "shutdown",
    "stage",
    "stream",
    "telemetry",
]


def telemetry(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Telemetry:
    """The :class:`Telemetry` the module-level functions use.

    Given providers (as instrumentors are, through ``tracer_provider=`` / ``meter_provider=``), one bound
    to them instead, built once per pair; a provider not given is the pipeline's, else the global one.
    """
    pipeline = _pipeline_state._pipeline  # get_pipeline(), without its call: wrappers ask once per call
    if tracer_provider is None and meter_provider is None:  # the per-request case: keep it short
        return pipeline.telemetry if pipeline is not None else global_telemetry()
    if pipeline is None:
        return telemetry_for(
            tracer_provider or trace.get_tracer_provider(), meter_provider or metrics.get_meter_provider()
        )
    tracer_provider = tracer_provider or pipeline.tracer_provider
    meter_provider = meter_provider or pipeline.meter_provider
    if tracer_provider is pipeline.tracer_provider and meter_provider is pipeline.meter_provider:
        return pipeline.telemetry
    return telemetry_for(tracer_provider, meter_provider, pipeline.settings)


def stage(name: str, **options: Unpack[StageOptions]) -> Stage:
    """Time a serving stage: ``with modeltel.stage("preprocess"):`` or ``@modeltel.stage("inference")``
    (options: :meth:`Telemetry.stage`)."""
    if options:
        return telemetry().stage(name, **options)
    # the common call, per request: telemetry()'s first case inlined, and no keywords packed once more
    pipeline = _pipeline_state._pipeline
    return Stage(pipeline.telemetry if pipeline is not None else global_telemetry(), name)


def prediction(
    model_name: str | None = None, model_version: str | None = None, **options: Unpack[PredictionOptions]
) -> Prediction:
    """Time one prediction request: root span, latency histogram, predictions counter by status (options:
    :meth:`Telemetry.prediction`)."""
    return telemetry().prediction(model_name, model_version, **options)


def generation(
    model_name: str | None = None, model_version: str | None = None, **options: Unpack[GenerationOptions]
) -> Generation:
    """A prediction whose end is a token stream's end: ``with modeltel.generation("llm", operation="chat") as g:``
    then ``g.token()``, ``g.usage(...)``, ``g.finish("stop")`` (options: :meth:`Telemetry.generation`;
    ``docs/generative.md``)."""
    return telemetry().generation(model_name, model_version, **options)


def stream(
    iterable: Iterable[Any] | AsyncIterable[Any],
    model_name: str | None = None,
    model_version: str | None = None,
    *,
    tokens_of: TokensOf | None = None,
    generation: Generation | None = None,
    **options: Unpack[GenerationOptions],
) -> Any:
    """Iterate a token stream as one generation: ``for chunk in modeltel.stream(chunks, "llm"):`` (or
    ``async for`` over an async iterable).

    The first item marks the first token; each item counts as one token unless ``tokens_of(item)`` says
    how many it holds (0 for an item with none); the generation ends when the iterable ends (success),
    raises (error) or is closed early or cancelled (``status="cancelled"``). ``generation`` is one made
    by :func:`generation` and not yet entered, to call ``usage()`` / ``finish()`` on while it streams;
    else one is made from the other arguments (options: :meth:`Telemetry.generation`).
    """
    from .hotpath.streams import stream as run

    if generation is None:
        generation = telemetry().generation(model_name, model_version, **options)
    return run(generation, iterable, tokens_of)


def monitor_prediction(model_name: str | None = None, model_version: str | None = None) -> Prediction:
    """:func:`prediction` under the monitoring spec's decorator name: ``@modeltel.monitor_prediction()`` on a sync or
    async function; it also records a ``confidence`` found in the result."""
    return telemetry().monitor_prediction(model_name, model_version)


def record_confidence(value: float, model_name: str | None = None, model_version: str | None = None) -> None:
    telemetry().record_confidence(value, model_name, model_version)


def record_batch_size(size: int, model_name: str | None = None, model_version: str | None = None) -> None:
    telemetry().record_batch_size(size, model_name, model_version)


def set_online_accuracy(value: float, model_name: str | None = None, model_version: str | None = None) -> None:
    telemetry().set_online_accuracy(value, model_name, model_version)


def _joiner():
    """The process's feedback table, built on first use, publishing to model_online_accuracy."""
    global _JOINER
    if _JOINER is None:
        from .feedback import FeedbackJoiner

        _JOINER = FeedbackJoiner(publish=_publish_feedback)
    return _JOINER


def _publish_feedback(model: tuple[str, str], accuracy: float, _labelled: int, correct: bool) -> None:
    from . import taxonomy as tx

    set_online_accuracy(accuracy, *model)
    pipeline = get_pipeline()
    provider = pipeline.meter_provider if pipeline is not None else metrics.get_meter_provider()
    inst = tx.LABELLED_PREDICTIONS  # the SDK caches instruments by name, so this is one counter
    counter = provider.get_meter(tx.METER_NAME).create_counter(inst.otel_name, inst.unit, inst.description)
    attrs = {tx.ATTR_MODEL_NAME: model[0], tx.ATTR_MODEL_VERSION: model[1], tx.ATTR_CORRECT: str(correct).lower()}
    counter.add(1, attrs)


_JOINER = None


def remember_prediction(
    prediction_context: Stage | None = None,
    *,
    model_name: str | None = None,
    model_version: str | None = None,
    prediction: Any = None,
    prediction_id: str | None = None,
) -> str:
    """Remember a prediction for :func:`record_feedback`; returns its id, also put on the prediction's span
    (with the prediction itself when it is a str, int, float or bool, so the collector can join labels too).

    ``with modeltel.prediction("iris", "1") as p: ...; pid = modeltel.remember_prediction(p, prediction=y)``.
    """
    from . import taxonomy as tx

    model = getattr(prediction_context, "model", None)
    name = model_name or (model.name if model is not None else None) or "unknown"
    version = model_version or (model.version if model is not None else None) or "unknown"
    pid = _joiner().remember((name, version), prediction, prediction_id)
    if prediction_context is not None:
        prediction_context.set_attribute(tx.SPAN_ATTR_PREDICTION_ID, pid)
        if isinstance(prediction, (str, int, float, bool)):
            prediction_context.set_attribute(tx.SPAN_ATTR_PREDICTION_VALUE, str(prediction))
    return pid


def record_feedback(prediction_id: str, *, correct: bool | None = None, label: Any = None) -> str:
    """Join ground truth that arrived later (seconds to days) to its prediction: ``correct=`` or ``label=``.

    Returns 'joined' when this process remembered the prediction; 'duplicate' when its label was already
    joined (counted, not used); 'no_value' for a ``label=`` whose prediction was remembered without
    ``prediction=`` (nothing to compare: counted, not guessed); 'forwarded' when this process does not know
    the id (a labelling job, say): the label then goes out as a feedback span, and the collector joins it
    to the prediction's span.
    """
    outcome = _joiner().record(prediction_id, correct=correct, label=label)
    if outcome != "unknown":
        return outcome
    from . import taxonomy as tx

    pipeline = get_pipeline()
    provider = pipeline.tracer_provider if pipeline is not None else trace.get_tracer_provider()
    attrs: dict[str, Any] = {tx.SPAN_ATTR_KIND: tx.SPAN_KIND_FEEDBACK, tx.SPAN_ATTR_PREDICTION_ID: prediction_id}
    if correct is not None:
        attrs[tx.SPAN_ATTR_FEEDBACK_CORRECT] = bool(correct)
    else:
        attrs[tx.SPAN_ATTR_FEEDBACK_LABEL] = str(label)
    provider.get_tracer(tx.TRACER_NAME).start_span(tx.SPAN_NAME_FEEDBACK, attributes=attrs).end()
    return "forwarded"
