"""The labels of a resource's overflow series: what a span-derived series becomes past
``derived_max_series`` (``MetricStore.observe_derived``).

Every label whose value a client's spans choose (model name and version, stage, scope, GenAI models and
operation, error type) becomes ``_other``, as the SDK's own overflow does; the labels the collector sets
(``job``, ``instance``, ``status``, the token type) stay, so there is one overflow series per family and
fixed label set, whatever the client rotates.
"""

from __future__ import annotations

from modeltel import taxonomy as tx
from modeltel_collector.store.labels import Labels
from modeltel_collector.translate import label_name

SPAN_LABELS = frozenset(
    label_name(a)
    for a in (tx.ATTR_MODEL_NAME, tx.ATTR_MODEL_VERSION, tx.ATTR_STAGE, tx.ATTR_ERROR_TYPE, "otel.scope.name",
              "otel.scope.version", tx.ATTR_GEN_AI_OPERATION_NAME, tx.ATTR_GEN_AI_REQUEST_MODEL,
              tx.ATTR_GEN_AI_RESPONSE_MODEL)
)  # fmt: skip


def other(labels: Labels) -> Labels:
    """``labels`` with each span label's value ``_other`` (still sorted: only values change)."""
    return tuple((k, tx.OVERFLOW_VALUE if k in SPAN_LABELS else v) for k, v in labels)
