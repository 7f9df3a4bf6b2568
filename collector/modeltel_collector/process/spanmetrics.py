"""One pass over received spans: rows for the trace store, span-derived metrics for trace-only apps, and
the facts the degradation detectors need.

Like otelcol's spanmetrics connector, but emitting exactly modeltel's series (names, labels and buckets
from ``modeltel.taxonomy``), so dashboards work whether an app sends metrics, traces or both. A request
is counted as the SDK counts it (an HTTP status >= 400 fails it) under the scope the SDK's own series
carry, so when a resource also sends a family itself, its series continue the derived ones (see
``store.handover``). The same pass reads what the detectors need of prediction and feedback spans
(``_add_fact``), so the analytics never decode a span again.
"""

from __future__ import annotations

import time

from opentelemetry.proto.trace.v1.trace_pb2 import Status

from modeltel import taxonomy as tx
from modeltel_collector.facts import Fact, Feedback, Prediction
from modeltel_collector.process import genaispans, overflow
from modeltel_collector.process.genaispans import Generation, number, read_generation
from modeltel_collector.store.metrics import COUNTER, HISTOGRAM, MetricStore, Observation, ResourceState
from modeltel_collector.store.spanrows import MAX_INT64, TraceRow, csv

_ERROR = Status.STATUS_CODE_ERROR
_FACT_ATTRS = (tx.SPAN_ATTR_PREDICTION_ID, tx.SPAN_ATTR_PREDICTION_VALUE, tx.SPAN_ATTR_PREDICTION_CONFIDENCE,
               tx.SPAN_ATTR_FEEDBACK_CORRECT, tx.SPAN_ATTR_FEEDBACK_LABEL)  # fmt: skip
# the HTTP response status of a server span (current and pre-1.21 conventions): >= 400 is a failed
# prediction, as the SDK counts it, though the span's own status stays unset on a 4xx
_HTTP_STATUS = frozenset(("http.response.status_code", "http.status_code"))
_WANTED = {
    tx.SPAN_ATTR_KIND,
    tx.SPAN_ATTR_STAGE,
    tx.ATTR_MODEL_NAME,
    tx.ATTR_MODEL_VERSION,
    *_FACT_ATTRS,
    *_HTTP_STATUS,
    *genaispans.ATTRS,  # a generation's, read with the facts' (``extra``)
}
_PRED, _STAGE, _COUNT = tx.PREDICTION_LATENCY, tx.STAGE_LATENCY, tx.PREDICTIONS
_MODEL_LABEL, _VERSION_LABEL = "model_name", "model_version"
_KIND, _STAGE_ATTR, _MODEL_ATTR = tx.SPAN_ATTR_KIND, tx.SPAN_ATTR_STAGE, tx.ATTR_MODEL_NAME
_VERSION_ATTR = tx.ATTR_MODEL_VERSION
_PREDICTION, _STAGE_KIND, _FEEDBACK = tx.SPAN_KIND_PREDICTION, tx.SPAN_KIND_STAGE, tx.SPAN_KIND_FEEDBACK
_CALL = tx.SPAN_KIND_CLIENT  # a client generation inside a prediction: GenAI series, no prediction count
_FACT_KINDS = frozenset((_PREDICTION, _FEEDBACK))
_GENERATION_KINDS = frozenset((_PREDICTION, _CALL))
_GENERATION = "generation"  # a group of generations (prediction spans with gen_ai.operation.name)
# (resource index, scope (name, version), span kind, model, version, stage, status): one derived series
_GroupKey = tuple[int, tuple[str, str], str, str, str, str, str]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class _Trace:
    """What the spans of one trace in one request add up to; becomes one ``TraceRow``."""

    __slots__ = ("count", "kinds", "longest", "model", "name", "parts", "span_id", "stages", "start", "status",
                 "version")  # fmt: skip

    def __init__(
        self, model: str, version: str, name: str, status: int, start: int, longest: int, span_id: bytes
    ) -> None:
        self.model = model  # the prediction span's model, else the first span's
        self.version = version  # that span's model version
        self.stages: set[str] = set()
        self.kinds: set[str] = set()
        self.name = name  # of span ``span_id``
        self.status = status  # the worst status code
        self.start = start  # the earliest start
        self.longest = longest  # duration of span ``span_id``: the longest, or the root
        self.span_id = span_id
        self.parts: list[bytes] = []  # each span encoded as ScopeSpans field 2
        self.count = 0

    def row(self, trace_id: bytes, service: str) -> TraceRow:
        return TraceRow(
            trace_id,
            service,
            self.model,
            csv(self.stages),
            csv(self.kinds),
            self.name,
            self.status,
            min(self.start, MAX_INT64),  # fixed64 on the wire, INTEGER in SQLite: a far-future time is clamped
            min(self.longest, MAX_INT64),
            self.span_id,
            self.count,
            b"".join(self.parts),
            self.version,
        )


def process_traces(
    request, store: MetricStore, derive: bool = True, now: float | None = None, *, facts: list[Fact] | None = None
) -> tuple[list[TraceRow], int]:
    """Return (rows for the span store, spans skipped for invalid ids) and update derived metrics; with
    ``facts``, append the detectors' facts of each prediction and feedback span to it (see ``_add_fact``).

    This loop is the collector's hot path: spans are grouped per trace into one store row, and derived
    observations per series, so SQLite and the metric store are touched once per group, not per span.
    """
    now = time.time() if now is None else now
    rows: list[TraceRow] = []
    invalid = 0
    groups: dict[_GroupKey, list[Observation]] = {}
    for ri, rs in enumerate(request.resource_spans):
        service, res_model, res_version, sdk_scope = _resource_attributes(rs.resource)
        traces: dict[bytes, _Trace] = {}
        for ss in rs.scope_spans:
            scope = sdk_scope or (ss.scope.name, ss.scope.version)
            invalid += _scan_scope(ss, ri, scope, res_model, res_version, traces, groups if derive else None, facts)
        rows.extend([t.row(trace_id, service) for trace_id, t in traces.items()])
    if groups:
        _observe(store, request.resource_spans, groups, now)
    return rows, invalid


def _resource_attributes(resource) -> tuple[str, str, str, tuple[str, str] | None]:
    """(service name, model name, model version, scope) of a resource; the model ones are span defaults.

    The scope is the one the app's own series carry when the app runs modeltel's SDK (its resource names
    the distro): derived series take it, so that when the app's metrics arrive they continue the same
    series rather than start others beside them. None otherwise: each span's own scope is used.
    """
    service, model, version, distro, distro_version = "unknown_service", "", "", "", ""
    for kv in resource.attributes:
        if kv.key == "service.name":
            service = kv.value.string_value
        elif kv.key == tx.RESOURCE_MODEL_NAME:
            model = kv.value.string_value
        elif kv.key == tx.RESOURCE_MODEL_VERSION:
            version = kv.value.string_value
        elif kv.key == "telemetry.distro.name":
            distro = kv.value.string_value
        elif kv.key == "telemetry.distro.version":
            distro_version = kv.value.string_value
    return service, model, version, ((tx.METER_NAME, distro_version) if distro == tx.DISTRO_NAME else None)


def _scan_scope(
    ss,
    ri: int,
    scope: tuple[str, str],
    res_model: str,
    res_version: str,
    traces: dict[bytes, _Trace],
    groups,
    facts: list[Fact] | None,
) -> int:
    """Fold one scope's spans into ``traces``, their observations into ``groups`` and their detector
    facts into ``facts`` (each unless None).

    Returns the number of spans skipped for invalid ids.
    """
    derived: list[tuple] | None = None if groups is None else []  # spans with a modeltel kind
    invalid = 0
    for sp in ss.spans:
        trace_id, span_id = sp.trace_id, sp.span_id
        if len(trace_id) != 16 or len(span_id) != 8:
            invalid += 1
            continue
        kind = stage = ""
        model, version, has_model, extra, http_status = res_model, res_version, False, None, 0
        for kv in sp.attributes:
            key = kv.key
            if key in _WANTED:
                if key == _KIND:
                    kind = kv.value.string_value
                elif key == _STAGE_ATTR:
                    stage = kv.value.string_value
                elif key == _MODEL_ATTR:
                    model, has_model = kv.value.string_value, True
                elif key == _VERSION_ATTR:
                    version = kv.value.string_value
                elif key in _HTTP_STATUS:
                    http_status = kv.value.int_value
                else:  # what only the detectors read
                    extra = {**extra, key: kv.value} if extra else {key: kv.value}
        start, end = sp.start_time_unix_nano, sp.end_time_unix_nano
        duration = end - start if end > start else 0
        code, parent, data = sp.status.code, sp.parent_span_id, sp.SerializeToString()
        t = traces.get(trace_id)
        if t is None:
            t = traces[trace_id] = _Trace(model, version, sp.name, code, start, duration, span_id)
        else:
            if duration > t.longest or not parent:
                t.name, t.longest, t.span_id = sp.name, duration, span_id
            if kind == _PREDICTION or not t.model:
                t.model, t.version = model, version
            if code > t.status:
                t.status = code
            if start < t.start:
                t.start = start
        if stage:
            t.stages.add(stage)
        if kind:
            t.kinds.add(kind)
        t.parts.append(b"\x12" + _varint(len(data)) + data)
        t.count += 1
        failed = code == _ERROR or http_status >= 400
        gen = read_generation(sp, extra, model, failed) if kind in _GENERATION_KINDS and extra else None
        if derived is not None and kind:
            obs = (duration, trace_id, span_id, end)
            status = _status(failed, extra, gen) if kind == _PREDICTION else ""
            derived.append((kind, stage, model, version, has_model, span_id, parent, status, obs, gen))
        if facts is not None and kind in _FACT_KINDS:
            _add_fact(facts, kind, model, version, duration, end, failed, extra or {}, gen)
    if derived:
        _group(derived, ri, scope, groups)
    return invalid


def _add_fact(
    facts: list[Fact],
    kind: str,
    model: str,
    version: str,
    duration: int,
    end: int,
    failed: bool,
    extra: dict,
    gen: Generation | None,
) -> None:
    """Append a prediction span as a ``Prediction`` (with TTFT, TPOT and output tokens for a generation),
    a feedback span as a ``Feedback``: what the detectors and the label joiner read. A prediction naming no
    model, or feedback naming no prediction, adds nothing."""
    pid = extra.get(tx.SPAN_ATTR_PREDICTION_ID)
    pid = pid.string_value if pid is not None else None
    if kind == _PREDICTION and model:
        value = extra.get(tx.SPAN_ATTR_PREDICTION_VALUE)
        value = value.string_value if value is not None else None
        version = version or tx.UNKNOWN_VALUE
        ttft, tpot, tokens = (gen.ttft, gen.tpot, gen.output_tokens) if gen is not None else (None, None, None)
        conf = number(extra, tx.SPAN_ATTR_PREDICTION_CONFIDENCE)
        facts.append(
            Prediction(end / 1e9, model, version, duration / 1e9, not failed, pid, value, ttft, tpot, tokens, conf)
        )
    elif kind == _FEEDBACK and pid:
        correct, label = extra.get(tx.SPAN_ATTR_FEEDBACK_CORRECT), extra.get(tx.SPAN_ATTR_FEEDBACK_LABEL)
        correct = None if correct is None else correct.bool_value
        facts.append(Feedback(end / 1e9, pid, correct, None if label is None else label.string_value))


def _status(failed: bool, extra: dict | None, gen: Generation | None) -> str:
    """A prediction span's ``status`` label, as the SDK counts it: a cancellation (``error.type`` cancelled
    on a span that did not fail, or a generation whose consumer left) is neither success nor error."""
    if failed:
        return tx.STATUS_ERROR
    if gen is not None and gen.cancelled:
        return tx.STATUS_CANCELLED
    error_type = extra.get(tx.ATTR_ERROR_TYPE) if extra else None
    if error_type is not None and error_type.string_value == tx.ERROR_TYPE_CANCELLED:
        return tx.STATUS_CANCELLED
    return tx.STATUS_SUCCESS


def _group(spans: list[tuple], ri: int, scope: tuple[str, str], groups: dict[_GroupKey, list[Observation]]) -> None:
    """Add one scope's prediction and stage spans to their derived series' observations.

    Stage spans without model attributes inherit them from their prediction span in the same batch. A
    prediction counts under the status :func:`_status` read from its span. A client
    call inside a prediction (``modeltel.kind=client``) adds its GenAI series only: its prediction counts
    the request.
    """
    parents: dict[bytes, tuple[str, str]] = {}  # prediction (or call) span id -> its (model, version)
    for kind, _, model, version, _, span_id, _, status, obs, gen in spans:
        if kind not in _GENERATION_KINDS:
            continue
        parents[span_id] = (model, version)
        if gen is not None:
            groups.setdefault((ri, scope, _GENERATION, model, version, "", ""), []).append(gen)
        if kind == _PREDICTION:
            groups.setdefault((ri, scope, kind, model, version, "", status), []).append(obs)
    for kind, stage, model, version, has_model, _, parent, _, obs, _ in spans:
        if kind == _STAGE_KIND:
            if not has_model and parent in parents:
                model, version = parents[parent]
            groups.setdefault((ri, scope, kind, model, version, stage, ""), []).append(obs)


def _observe(store: MetricStore, resource_spans, groups: dict[_GroupKey, list[Observation]], now: float) -> None:
    with store.lock:
        resources: dict[int, ResourceState] = {}
        for (ri, scope, kind, model, version, stage, status), obs in groups.items():
            if ri not in resources:
                resources[ri] = store.touch_resource(resource_spans[ri].resource, now)
            res = resources[ri]
            if res is None:  # a new resource over the series limit: its observations are refused with it
                store.refuse_derived(_samples(kind, obs))
                continue
            labels = [*res.labels, (_MODEL_LABEL, model or tx.UNKNOWN_VALUE), (_VERSION_LABEL, version)]
            if scope[0]:
                labels.append(("otel_scope_name", scope[0]))
            if scope[1]:
                labels.append(("otel_scope_version", scope[1]))
            if kind == _STAGE_KIND:
                labels.append((tx.ATTR_STAGE, stage or tx.UNKNOWN_VALUE))
                _hist(store, res, _STAGE, tuple(sorted(labels)), obs)
                continue
            if kind == _GENERATION:
                genaispans.observe(store, res, labels, obs)
                continue
            _hist(store, res, _PRED, tuple(sorted(labels)), obs)
            labels.append((tx.ATTR_STATUS, status))
            store.observe_derived(
                res, _COUNT.prometheus_name, COUNTER, _COUNT.unit, _COUNT.description, tuple(sorted(labels)), len(obs),
                overflow=overflow.other,
            )  # fmt: skip


def _samples(kind: str, obs: list) -> int:
    """The derived samples a group adds: a stage's histogram; a prediction's histogram and counter; a
    generation's GenAI samples."""
    if kind == _GENERATION:
        return sum(len(genaispans.observations(gen)) for gen in obs)
    return len(obs) if kind == _STAGE_KIND else 2 * len(obs)


def _hist(store: MetricStore, res: ResourceState, inst: tx.Instrument, labels, obs: list[Observation]) -> None:
    store.observe_derived(
        res, inst.prometheus_name, HISTOGRAM, inst.unit, inst.description, labels, obs, inst.buckets,
        overflow=overflow.other,
    )  # fmt: skip
