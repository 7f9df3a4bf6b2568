"""One pass over received spans: rows for the trace store, and span-derived metrics for trace-only apps.

Like otelcol's spanmetrics connector, but emitting exactly modeltel's series (names, labels and buckets
from ``modeltel.taxonomy``), so dashboards work whether an app sends metrics, traces or both. When a
resource also sends a family itself, the store drops the derived twin (see ``MetricStore``).
"""

from __future__ import annotations

import time

from opentelemetry.proto.trace.v1.trace_pb2 import Status

from modeltel import taxonomy as tx
from modeltel_collector.store.metrics import COUNTER, HISTOGRAM, MetricStore, ResourceState
from modeltel_collector.store.spans import Row

_ERROR = Status.STATUS_CODE_ERROR
_WANTED = {tx.SPAN_ATTR_KIND, tx.SPAN_ATTR_STAGE, tx.ATTR_MODEL_NAME, tx.ATTR_MODEL_VERSION}
_PRED, _STAGE, _COUNT = tx.PREDICTION_LATENCY, tx.STAGE_LATENCY, tx.PREDICTIONS
_MODEL_LABEL, _VERSION_LABEL = "model_name", "model_version"
_KIND, _STAGE_ATTR, _MODEL_ATTR = tx.SPAN_ATTR_KIND, tx.SPAN_ATTR_STAGE, tx.ATTR_MODEL_NAME
_PREDICTION, _STAGE_KIND = tx.SPAN_KIND_PREDICTION, tx.SPAN_KIND_STAGE


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def process_traces(request, store: MetricStore, derive: bool = True, now: float | None = None) -> tuple[list[Row], int]:
    """Return (rows for the span store, spans skipped for invalid ids) and update derived metrics.

    This loop is the collector's hot path: spans are grouped per trace into one store row, and derived
    observations per series, so SQLite and the metric store are touched once per group, not per span.
    """
    now = time.time() if now is None else now
    rows: list[Row] = []
    invalid = 0
    groups: dict[tuple, list] = {}
    for ri, rs in enumerate(request.resource_spans):
        service, res_model, res_version = "unknown_service", "", ""
        for kv in rs.resource.attributes:
            if kv.key == "service.name":
                service = kv.value.string_value
            elif kv.key == tx.RESOURCE_MODEL_NAME:
                res_model = kv.value.string_value
            elif kv.key == tx.RESOURCE_MODEL_VERSION:
                res_version = kv.value.string_value
        # trace_id -> [model, stages, kinds, name, status, start, longest, span_id, parts, count]
        traces: dict[bytes, list] = {}
        for ss in rs.scope_spans:
            scope = (ss.scope.name, ss.scope.version)
            parents: dict[bytes, tuple[str, str]] = {}
            stages = []
            for sp in ss.spans:
                trace_id, span_id = sp.trace_id, sp.span_id
                if len(trace_id) != 16 or len(span_id) != 8:
                    invalid += 1
                    continue
                kind = stage = ""
                model, version, has_model = res_model, res_version, False
                for kv in sp.attributes:
                    key = kv.key
                    if key in _WANTED:
                        if key == _KIND:
                            kind = kv.value.string_value
                        elif key == _STAGE_ATTR:
                            stage = kv.value.string_value
                        elif key == _MODEL_ATTR:
                            model, has_model = kv.value.string_value, True
                        else:
                            version = kv.value.string_value
                start, end = sp.start_time_unix_nano, sp.end_time_unix_nano
                duration = end - start if end > start else 0
                code = sp.status.code
                parent = sp.parent_span_id
                data = sp.SerializeToString()
                t = traces.get(trace_id)
                if t is None:
                    t = traces[trace_id] = [model, set(), set(), sp.name, code, start, duration, span_id, [], 0]
                else:
                    if duration > t[6] or not parent:
                        t[3], t[6], t[7] = sp.name, duration, span_id
                    if kind == _PREDICTION or not t[0]:
                        t[0] = model
                    if code > t[4]:
                        t[4] = code
                    if start < t[5]:
                        t[5] = start
                if stage:
                    t[1].add(stage)
                if kind:
                    t[2].add(kind)
                t[8].append(b"\x12" + _varint(len(data)) + data)
                t[9] += 1
                if not derive or not kind:
                    continue
                if kind == _PREDICTION:
                    parents[span_id] = (model, version)
                    key = (ri, scope, kind, model, version, "", code == _ERROR)
                    groups.setdefault(key, []).append((duration, trace_id, span_id, end))
                elif kind == _STAGE_KIND:
                    stages.append((has_model, parent, model, version, stage, (duration, trace_id, span_id, end)))
            for has_model, parent, model, version, stage, obs in stages:
                # stage spans without model attributes inherit them from their prediction span in the batch
                if not has_model and parent in parents:
                    model, version = parents[parent]
                groups.setdefault((ri, scope, _STAGE_KIND, model, version, stage, False), []).append(obs)
        for trace_id, (model, stage_set, kinds, name, code, start, longest, span_id, parts, n) in traces.items():
            rows.append(
                (
                    trace_id,
                    service,
                    model,
                    _csv(stage_set),
                    _csv(kinds),
                    name,
                    code,
                    start,
                    longest,
                    span_id,
                    n,
                    b"".join(parts),
                )
            )
    if groups:
        _observe(store, request.resource_spans, groups, now)
    return rows, invalid


def _csv(values: set[str]) -> str:
    """',a,b,' so that instr(col, ',a,') matches whole values only."""
    return "," + ",".join(sorted(values)) + "," if values else ""


def _observe(store: MetricStore, resource_spans, groups: dict[tuple, list], now: float) -> None:
    with store.lock:
        resources: dict[int, ResourceState] = {}
        for (ri, scope, kind, model, version, stage, failed), obs in groups.items():
            res = resources.get(ri)
            if res is None:
                res = resources[ri] = store.touch_resource(resource_spans[ri].resource, now)
            labels = [*res.labels, (_MODEL_LABEL, model or tx.UNKNOWN_VALUE), (_VERSION_LABEL, version)]
            if scope[0]:
                labels.append(("otel_scope_name", scope[0]))
            if scope[1]:
                labels.append(("otel_scope_version", scope[1]))
            if kind == _STAGE_KIND:
                labels.append((tx.ATTR_STAGE, stage or tx.UNKNOWN_VALUE))
                _hist(store, res, _STAGE, tuple(sorted(labels)), obs)
                continue
            _hist(store, res, _PRED, tuple(sorted(labels)), obs)
            labels.append((tx.ATTR_STATUS, tx.STATUS_ERROR if failed else tx.STATUS_SUCCESS))
            store.observe_derived(
                res, _COUNT.prometheus_name, COUNTER, _COUNT.unit, _COUNT.description, tuple(sorted(labels)), len(obs)
            )


def _hist(store: MetricStore, res: ResourceState, inst: tx.Instrument, labels, obs: list) -> None:
    store.observe_derived(res, inst.prometheus_name, HISTOGRAM, inst.unit, inst.description, labels, obs, inst.buckets)
