"""Bound series per model, and the cap that keeps label values bounded.

Like ``prometheus_client``'s ``labels()`` children, every series of a (model name, version) is bound
once and cached, so the per-request path is one dict lookup plus one record. Custom stage names and
error types come from user code: past a cap, new values collapse into one overflow value with one
warning, so a bug that puts an id in a stage name cannot grow memory or the backend's series count.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes

from .. import taxonomy as tx
from .recorders import Recorder

_MAX_EXTRA = 256  # (span attributes, wrapper attributes) pairs merged per model; beyond, merged per call

_log = logging.getLogger("modeltel")


class CardinalityGuard:
    """Admits at most ``cap`` distinct values besides ``always``; the rest collapse to one overflow value."""

    def __init__(self, what: str, cap: int, always: tuple[str, ...] = ()) -> None:
        self._what = what
        self._cap = cap
        self._allowed = set(always)
        self._extra = 0
        self._warned = False
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._allowed:
            return value
        with self._lock:
            if value in self._allowed:
                return value
            if self._extra < self._cap:
                self._extra += 1
                self._allowed.add(value)
                return value
            if not self._warned:
                self._warned = True
                _log.warning(
                    "modeltel: more than %d distinct %s values; %r and later new values are recorded as %r",
                    self._cap,
                    self._what,
                    value,
                    tx.OVERFLOW_VALUE,
                )
        return tx.OVERFLOW_VALUE


class ModelSeries:
    """Every bound series and span attribute set of one (model name, version), built once."""

    __slots__ = (
        "_error_guard",
        "_recorder",
        "_stage_guard",
        "_with_extra",
        "batch",
        "cancelled",
        "client_span_attrs",
        "confidence",
        "errors",
        "failure",
        "latency",
        "metric_attrs",
        "name",
        "prediction_span_attrs",
        "stages",
        "success",
        "version",
    )

    def __init__(
        self,
        recorder: Recorder,
        name: str,
        version: str,
        *,
        stage_guard: CardinalityGuard,
        error_guard: CardinalityGuard,
    ) -> None:
        self._recorder = recorder
        self._stage_guard = stage_guard
        self._error_guard = error_guard
        self.name = name
        self.version = version
        attrs = {tx.ATTR_MODEL_NAME: name, tx.ATTR_MODEL_VERSION: version}
        self.metric_attrs = attrs
        self.latency = recorder.histogram(tx.PREDICTION_LATENCY, attrs)
        self.success = recorder.counter(tx.PREDICTIONS, {**attrs, tx.ATTR_STATUS: tx.STATUS_SUCCESS})
        self.failure = recorder.counter(tx.PREDICTIONS, {**attrs, tx.ATTR_STATUS: tx.STATUS_ERROR})
        self.cancelled: Any = None  # bound at the first cancelled prediction (count_cancelled)
        self.confidence = recorder.histogram(tx.PREDICTION_CONFIDENCE, attrs)
        self.batch = recorder.histogram(tx.BATCH_SIZE, attrs)
        self.prediction_span_attrs = {**attrs, tx.SPAN_ATTR_KIND: tx.SPAN_KIND_PREDICTION}
        self.client_span_attrs = {**attrs, tx.SPAN_ATTR_KIND: tx.SPAN_KIND_CLIENT}  # a call inside a prediction
        self.stages: dict[str, tuple[Any, dict[str, str]]] = {}
        self.errors: dict[str, Any] = {}
        self._with_extra: dict[tuple[int, int], tuple[Mapping[str, Any], Mapping, Mapping]] = {}

    def span_attrs_with(self, base: Mapping[str, str], extra: Mapping[str, Any]) -> Mapping[str, Any]:
        """``base`` (a stage's or the prediction's span attributes) plus a wrapper's ``extra``, merged and
        validated once per pair. Wrappers build ``extra`` once, when they patch, so a span shares this dict
        instead of copying and validating the extra attributes on every call (5-7 µs a span)."""
        key = (id(base), id(extra))
        hit = self._with_extra.get(key)
        if hit is not None:
            return hit[0]
        merged = dict(BoundedAttributes(attributes={**base, **extra}))
        if len(self._with_extra) < _MAX_EXTRA:
            self._with_extra[key] = (merged, base, extra)  # holding both keeps their ids from being reused
        return merged

    def stage(self, name: str) -> tuple[Any, dict[str, str]]:
        """(bound stage histogram, stage span attributes), built on first use of ``name``."""
        label = self._stage_guard(name)
        series = self._recorder.histogram(tx.STAGE_LATENCY, {**self.metric_attrs, tx.ATTR_STAGE: label})
        span_attrs = {**self.metric_attrs, tx.SPAN_ATTR_KIND: tx.SPAN_KIND_STAGE, tx.SPAN_ATTR_STAGE: label}
        if label == name:  # cache admitted names only, so overflowing names cannot grow this dict
            self.stages[name] = (series, span_attrs)
        return series, span_attrs

    def count_cancelled(self) -> None:
        """Count a prediction a cancellation ended (``status="cancelled"``), on a series bound at the first
        one: a model that never saw one exports no such series."""
        counter = self.cancelled
        if counter is None:
            status = {**self.metric_attrs, tx.ATTR_STATUS: tx.STATUS_CANCELLED}
            counter = self.cancelled = self._recorder.counter(tx.PREDICTIONS, status)
        counter.add(1)

    def count_error(self, exc: BaseException) -> None:
        kind = type(exc).__name__
        counter = self.errors.get(kind)
        if counter is None:
            label = self._error_guard(kind)
            counter = self._recorder.counter(tx.ERRORS, {**self.metric_attrs, tx.ATTR_ERROR_TYPE: label})
            if label == kind:
                self.errors[kind] = counter
        counter.add(1)
