"""One pass over received spans: rows for the trace store, and span-derived metrics for trace-only apps.

Like otelcol's spanmetrics connector, but emitting exactly modeltel's series (names, labels and buckets
from ``modeltel.taxonomy``), so dashboards work whether an app sends metrics, traces or both. When a
resource also sends a family itself, the store drops the derived twin (see ``MetricStore``).
"""

from __future__ import annotations

import time

from modeltel import taxonomy as tx
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from modeltel_collector.metricstore import COUNTER, HISTOGRAM, MetricStore
from modeltel_collector.spanstore import Row

_ERROR = Status.STATUS_CODE_ERROR
_WANTED = {tx.SPAN_ATTR_KIND, tx.SPAN_ATTR_STAGE, tx.ATTR_MODEL_NAME, tx.ATTR_MODEL_VERSION}
_PRED, _STAGE, _COUNT = tx.PREDICTION_LATENCY, tx.STAGE_LATENCY, tx.PREDICTIONS
_MODEL_LABEL, _VERSION_LABEL = "model_name", "model_version"


def process_traces(request, store: MetricStore, derive: bool = True, now: float | None = None) -> tuple[list[Row], int]:
    """Return (rows for the span store, spans skipped for invalid ids) and update derived metrics."""
    now = time.time() if now is None else now
    rows: list[Row] = []
    invalid = 0
    derived: list[tuple] = []
    for rs in request.resource_spans:
        service, res_model, res_version = "unknown_service", "", ""
        for kv in rs.resource.attributes:
            if kv.key == "service.name":
                service = kv.value.string_value
            elif kv.key == tx.RESOURCE_MODEL_NAME:
                res_model = kv.value.string_value
            elif kv.key == tx.RESOURCE_MODEL_VERSION:
                res_version = kv.value.string_value
        for ss in rs.scope_spans:
            scope = (ss.scope.name, ss.scope.version)
            parents: dict[bytes, tuple[str, str]] = {}
            pending_stages = []
            for sp in ss.spans:
                trace_id, span_id = sp.trace_id, sp.span_id
                if len(trace_id) != 16 or len(span_id) != 8:
                    invalid += 1
                    continue
                kind = stage = ""
                model, version = res_model, res_version
                for kv in sp.attributes:
                    key = kv.key
                    if key in _WANTED:
                        if key == tx.SPAN_ATTR_KIND:
                            kind = kv.value.string_value
                        elif key == tx.SPAN_ATTR_STAGE:
                            stage = kv.value.string_value
                        elif key == tx.ATTR_MODEL_NAME:
                            model = kv.value.string_value
                        else:
                            version = kv.value.string_value
                start, end = sp.start_time_unix_nano, sp.end_time_unix_nano
                duration = max(end - start, 0)
                code = sp.status.code
                rows.append(
                    (
                        trace_id,
                        span_id,
                        sp.parent_span_id,
                        service,
                        model,
                        stage,
                        kind,
                        sp.name,
                        code,
                        start,
                        duration,
                        sp.SerializeToString(),
                    )
                )
                if not derive or not kind:
                    continue
                if kind == tx.SPAN_KIND_PREDICTION:
                    parents[span_id] = (model, version)
                    derived.append(
                        (rs.resource, scope, kind, model, version, "", code, duration, trace_id, span_id, end)
                    )
                elif kind == tx.SPAN_KIND_STAGE:
                    pending_stages.append(
                        [
                            rs.resource,
                            scope,
                            kind,
                            model,
                            version,
                            stage,
                            code,
                            duration,
                            trace_id,
                            span_id,
                            end,
                            sp.parent_span_id,
                            sp.attributes,
                        ]
                    )
            for st in pending_stages:
                # stage spans without model attributes inherit them from their prediction span in the batch
                if st[11] in parents and not any(kv.key == tx.ATTR_MODEL_NAME for kv in st[12]):
                    st[3], st[4] = parents[st[11]]
                derived.append(tuple(st[:11]))
    if derived:
        _observe(store, derived, now)
    return rows, invalid


def _observe(store: MetricStore, derived: list[tuple], now: float) -> None:
    with store.lock:
        resources: dict[int, object] = {}
        for resource, scope, kind, model, version, stage, code, duration_ns, trace_id, span_id, end in derived:
            res = resources.get(id(resource))
            if res is None:
                res = resources[id(resource)] = store.touch_resource(resource, now)
            labels = [*res.labels, (_MODEL_LABEL, model or tx.UNKNOWN_VALUE), (_VERSION_LABEL, version or "")]
            if scope[0]:
                labels.append(("otel_scope_name", scope[0]))
            if scope[1]:
                labels.append(("otel_scope_version", scope[1]))
            seconds = duration_ns / 1e9
            exemplar = (trace_id.hex(), span_id.hex(), seconds, end / 1e9)
            if kind == tx.SPAN_KIND_STAGE:
                labels.append((tx.ATTR_STAGE, stage or tx.UNKNOWN_VALUE))
                _hist(store, res, _STAGE, tuple(sorted(labels)), seconds, exemplar)
            else:
                _hist(store, res, _PRED, tuple(sorted(labels)), seconds, exemplar)
                status = tx.STATUS_ERROR if code == _ERROR else tx.STATUS_SUCCESS
                labels.append((tx.ATTR_STATUS, status))
                store.observe_derived(
                    res, _COUNT.prometheus_name, COUNTER, _COUNT.unit, _COUNT.description, tuple(sorted(labels)), 1.0
                )


def _hist(store: MetricStore, res, inst: tx.Instrument, labels, seconds: float, exemplar) -> None:
    store.observe_derived(
        res, inst.prometheus_name, HISTOGRAM, inst.unit, inst.description, labels, seconds, inst.buckets, exemplar
    )
