"""The collector's degradation-detector metrics: one gauge family per quantity, labelled by model and check.

The ``check`` label takes the names in ``DEGRADATION_CHECKS``, which ends with ``GENAI_DEGRADATION_CHECKS``
(generative models' only); ``alerts/runbooks/ModelDegradationDetected.md`` has a section for each.

``model_degradation_detected`` is 1 while a check's alarm is open (``severity`` is the alarm's), else 0
with ``severity="ok"``; the p-value, statistic and effect size are the latest evaluation's.
"""

from __future__ import annotations

from .names import ATTR_MODEL_NAME, ATTR_MODEL_VERSION, Instrument, InstrumentKind

__all__ = [
    "ATTR_CHECK",
    "ATTR_CORRECT",
    "ATTR_SEVERITY",
    "BASELINE_AGE",
    "BASELINE_STALE",
    "DEGRADATION_ALERT",
    "DEGRADATION_CHECKS",
    "DEGRADATION_DETECTED",
    "DEGRADATION_EFFECT_SIZE",
    "DEGRADATION_INSTRUMENTS",
    "DEGRADATION_P_VALUE",
    "DEGRADATION_STATISTIC",
    "ESTIMATED_ACCURACY",
    "ESTIMATED_ACCURACY_HIGH",
    "ESTIMATED_ACCURACY_INSTRUMENTS",
    "ESTIMATED_ACCURACY_LOW",
    "GENAI_DEGRADATION_CHECKS",
    "LABELLED_PREDICTIONS",
    "SPAN_ATTR_FEEDBACK_CORRECT",
    "SPAN_ATTR_FEEDBACK_LABEL",
    "SPAN_ATTR_PREDICTION_CONFIDENCE",
    "SPAN_ATTR_PREDICTION_ID",
    "SPAN_ATTR_PREDICTION_VALUE",
    "SPAN_KIND_FEEDBACK",
    "SPAN_NAME_FEEDBACK",
]

ATTR_CHECK = "check"  # one of DEGRADATION_CHECKS
# Generative models' checks (taxonomy.genai): a shift of time to first token, of time per output token, and a
# drift of output length (tokens per response). A model that sends no generation data never runs them.
GENAI_DEGRADATION_CHECKS = ("ttft_shift", "tpot_shift", "output_length_drift")
DEGRADATION_CHECKS = (
    "latency_shift",
    "error_rate_rise",
    "throughput_drop",
    "accuracy_drop",
    "confidence_drift",
    "estimated_accuracy_drop",
    *GENAI_DEGRADATION_CHECKS,
)
DEGRADATION_ALERT = "ModelDegradationDetected"  # the detectors' Alertmanager alert; its runbook is generated
ATTR_SEVERITY = "severity"  # ok | warning | critical
ATTR_CORRECT = "correct"  # true | false: whether a labelled prediction was right
# Delayed labels (modeltel.record_feedback): the id joins a prediction span to the feedback that arrives later,
# in-process or, from another process such as a labelling job, as a feedback span through the collector.
SPAN_ATTR_PREDICTION_ID = "modeltel.prediction.id"
SPAN_ATTR_PREDICTION_VALUE = "modeltel.prediction.value"  # what was predicted, as text, to compare labels with
# the confidence recorded inside the prediction (record_confidence; a batch's last): a joined label calibrates
# the collector's estimated accuracy with it
SPAN_ATTR_PREDICTION_CONFIDENCE = "modeltel.prediction.confidence"  # float
SPAN_KIND_FEEDBACK = "feedback"  # the modeltel.kind of a feedback span
SPAN_NAME_FEEDBACK = "modeltel.feedback"
SPAN_ATTR_FEEDBACK_CORRECT = "modeltel.feedback.correct"  # bool
SPAN_ATTR_FEEDBACK_LABEL = "modeltel.feedback.label"  # the true label, as text
_ATTRS = (ATTR_MODEL_NAME, ATTR_MODEL_VERSION, ATTR_CHECK)


def _gauge(name: str, unit: str, description: str, *extra: str, base: tuple[str, ...] = _ATTRS) -> Instrument:
    return Instrument(
        otel_name=name.replace("model_", "model.", 1),
        prometheus_name=name,
        kind=InstrumentKind.GAUGE,
        unit=unit,
        description=description,
        attributes=(*base, *extra),
    )


DEGRADATION_DETECTED = _gauge(
    "model_degradation_detected", "", "1 while a degradation check's alarm is open, else 0.", ATTR_SEVERITY
)
DEGRADATION_P_VALUE = _gauge("model_degradation_p_value", "", "p-value of the check's latest test.")
DEGRADATION_STATISTIC = _gauge("model_degradation_statistic", "", "Test statistic of the check's latest test.")
DEGRADATION_EFFECT_SIZE = _gauge(
    "model_degradation_effect_size", "", "Effect size of the check's latest test (what its severity is graded on)."
)
DEGRADATION_INSTRUMENTS = (DEGRADATION_DETECTED, DEGRADATION_P_VALUE, DEGRADATION_STATISTIC, DEGRADATION_EFFECT_SIZE)
BASELINE_STALE = Instrument(
    otel_name="model.baseline_stale",
    prometheus_name="model_baseline_stale",
    kind=InstrumentKind.GAUGE,
    unit="",
    description="1 when the model version's stored baseline is missing, older than its maximum age, or corrupt.",
    attributes=(ATTR_MODEL_NAME, ATTR_MODEL_VERSION),
)
BASELINE_AGE = Instrument(
    otel_name="model.baseline_age",
    prometheus_name="model_baseline_age_seconds",
    kind=InstrumentKind.GAUGE,
    unit="s",
    description="Age of the model version's stored baseline (absent when there is none).",
    attributes=(ATTR_MODEL_NAME, ATTR_MODEL_VERSION),
)


# Confidence-based performance estimation (the estimated_accuracy_drop check): the accuracy expected of the
# current window's predictions from their confidences, calibrated on the baseline's labelled predictions, and
# its 95 % band for their realized accuracy. Three gauges with model_online_accuracy's labels rather than one
# with a bound label, so the estimate and the realized accuracy compare without a label filter.
_MODEL = (ATTR_MODEL_NAME, ATTR_MODEL_VERSION)
ESTIMATED_ACCURACY = _gauge(
    "model_estimated_accuracy",
    "{fraction}",
    "Accuracy estimated from the current window's confidences, calibrated on the baseline's labels (0..1).",
    base=_MODEL,
)
ESTIMATED_ACCURACY_LOW = _gauge(
    "model_estimated_accuracy_low", "{fraction}", "Lower end of the estimated accuracy's 95 % band.", base=_MODEL
)
ESTIMATED_ACCURACY_HIGH = _gauge(
    "model_estimated_accuracy_high", "{fraction}", "Upper end of the estimated accuracy's 95 % band.", base=_MODEL
)
ESTIMATED_ACCURACY_INSTRUMENTS = (ESTIMATED_ACCURACY, ESTIMATED_ACCURACY_LOW, ESTIMATED_ACCURACY_HIGH)
LABELLED_PREDICTIONS = Instrument(
    otel_name="model.labelled_predictions",
    prometheus_name="model_labelled_predictions",
    kind=InstrumentKind.COUNTER,
    unit="{prediction}",
    description="Predictions whose delayed label (record_feedback) has joined them, by correctness.",
    attributes=(ATTR_MODEL_NAME, ATTR_MODEL_VERSION, ATTR_CORRECT),
)
