"""``promtool test rules`` unit tests, generated for every alerting rule (the SLO burn-rate rules':
``promtool_slo``).

For each alerting rule: a faulty model next to a healthy one (same name, another version), so exactly one
alert with exactly these labels and rendered annotations may fire; it must not fire one evaluation before
``for:`` has passed; a healthy series and an idle model (flat counters) never fire. Expected annotations
are rendered from the same templates (``promtest.render_template``).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import taxonomy as tx
from .alerts import Links, Rule, alert_rules
from .durations import parse_duration
from .promtest import fmt_series, render_template

__all__ = ["alert_tests"]

A = {"model_name": "fraud", "model_version": "v2"}  # the faulty one
B = {"model_name": "fraud", "model_version": "v1"}  # healthy, same model name
C = {"model_name": "idle", "model_version": "v1"}  # no traffic
POINTS = 40  # minutes of input per alert test
Series = list[tuple[str, dict[str, str], str]]  # (metric, labels, promtool values)


def _series(metric: str, labels: dict[str, str], values: str) -> tuple[str, dict[str, str], str]:
    return (metric, labels, values)


def _counter(per_min: float) -> str:
    return f"0+{per_min:g}x{POINTS}"


def _gauge(v: float) -> str:
    return f"{v:g}x{POINTS}"


# ------------------------------------------------------------------ cases per rule: (bad, healthy, idle)
# the histogram a p95 rule reads, by alert family; its threshold is one of the histogram's bucket boundaries
_P95_OF = {
    "prediction_latency": tx.PREDICTION_LATENCY,
    "stage_latency": tx.STAGE_LATENCY,
    "ttft": tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
    "tpot": tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
}


def _latency_case(rule: Rule) -> dict:
    """All of the faulty model's requests in the bucket just above the threshold, all of the healthy's below."""
    s, inst = rule.spec, _P95_OF[rule.spec.family]
    upper = next(b for b in inst.buckets if b > s.threshold)
    extra = {"stage": s.stage} if s.stage else {}

    def hist(labels: dict, below: float, above: float) -> Series:
        le = {f"{s.threshold:g}": below, f"{upper:g}": below + above, "+Inf": below + above}
        name = inst.prometheus_name + "_bucket"
        return [_series(name, {**labels, **extra, "le": k}, _counter(v)) for k, v in le.items()]

    return {
        "bad": hist(A, 0, 100) + hist(B, 100, 0),
        "healthy": hist(A, 100, 0) + hist(B, 100, 0),
        "idle": hist(C, 0, 0),
        "labels": {**A, **extra},
        "value": s.threshold + (upper - s.threshold) * 0.95,
        "first": 1,
    }


def _predictions(labels: dict, success: float, error: float | None) -> Series:
    out = [_series(tx.PREDICTIONS.prometheus_series, {**labels, "status": "success"}, _counter(success))]
    if error is not None:
        out.append(_series(tx.PREDICTIONS.prometheus_series, {**labels, "status": "error"}, _counter(error)))
    return out


def _error_rate_case(rule: Rule) -> dict:
    bad, ok = rule.spec.threshold * 1.5, rule.spec.threshold / 2
    return {
        "bad": _predictions(A, 1000 * (1 - bad), 1000 * bad) + _predictions(B, 1000 * (1 - ok), 1000 * ok),
        "healthy": _predictions(A, 1000, None) + _predictions(B, 1000 * (1 - ok), 1000 * ok),  # no error series
        "idle": _predictions(C, 0, 0),
        "labels": A,
        "value": bad,
        "first": 1,
    }


def _throughput_case(rule: Rule) -> dict:
    low = rule.spec.threshold * 0.6
    return {
        "bad": _predictions(A, low * 60, None) + _predictions(B, rule.spec.threshold * 120, 0),
        "healthy": _predictions(A, rule.spec.threshold * 120, None),
        "idle": _predictions(C, 0, 0),
        "labels": A,
        "value": low,
        "first": 1,
    }


def _gauge_case(metric: str, bad: float, ok: float, labels_a: dict, labels_b: dict, result: dict) -> dict:
    return {
        "bad": [_series(metric, labels_a, _gauge(bad)), _series(metric, labels_b, _gauge(ok))],
        "healthy": [_series(metric, labels_a, _gauge(ok)), _series(metric, labels_b, _gauge(ok))],
        "idle": None,
        "labels": result,
        "value": bad,
        "first": 0,
    }


def _confidence_case(rule: Rule) -> dict:
    name, t = tx.PREDICTION_CONFIDENCE.prometheus_name, rule.spec.threshold

    def conf(labels: dict, mean: float, n: float) -> Series:
        return [_series(name + "_sum", labels, _counter(mean * n)), _series(name + "_count", labels, _counter(n))]

    return {
        "bad": conf(A, t - 0.1, 100) + conf(B, t + 0.2, 100),
        "healthy": conf(A, t + 0.2, 100),
        "idle": conf(C, 0, 0),
        "labels": A,
        "value": t - 0.1,
        "first": 1,
    }


_POD_A = {"job": "serving", "instance": "pod-a"}
_POD_B = {"job": "serving", "instance": "pod-b"}
_GPU_A = {**_POD_A, "hw_id": "GPU-a", "hw_name": "NVIDIA H100", "modeltel_gpu_index": "0"}
_GPU_B = {**_POD_A, "hw_id": "GPU-b", "hw_name": "NVIDIA H100", "modeltel_gpu_index": "1"}


def _resource_case(resource: str) -> Callable[[Rule], dict]:
    def case(rule: Rule) -> dict:
        metric, t = tx.RESOURCE_USAGE.prometheus_name, rule.spec.threshold
        a = {**_POD_A, "model_name": "fraud", "resource_type": resource}
        b = {**_POD_B, "model_name": "fraud", "resource_type": resource}
        return _gauge_case(metric, t + 5, t - 30, a, b, {**_POD_A, "model_name": "fraud"})

    return case


def _server_down_case(rule: Rule) -> dict:
    if dict(rule.extra_labels)["cause"] == "silent":
        a, b = {**_POD_A, **A}, {**_POD_B, **B}
        series = [_series("target_info", a, "1x10 stale"), _series("target_info", b, _gauge(1))]
        healthy = [_series("target_info", a, _gauge(1)), _series("target_info", b, _gauge(1))]
        return {"bad": series, "healthy": healthy, "idle": None, "labels": a, "value": 1, "first": 11}
    a, b = {"job": tx.COLLECTOR_JOB, "instance": "c1:9464"}, {"job": tx.COLLECTOR_JOB, "instance": "c2:9464"}
    series = [_series("up", a, "1x5 0x35"), _series("up", b, _gauge(1))]
    return {"bad": series, "healthy": [_series("up", a, _gauge(1))], "idle": None, "labels": a, "value": 0, "first": 6}


def _gpu_gauge_case(instrument: tx.Instrument, offset: float) -> Callable[[Rule], dict]:
    def case(rule: Rule) -> dict:
        t = rule.spec.threshold
        return _gauge_case(instrument.prometheus_name, t + offset, t - 10 * offset, _GPU_A, _GPU_B, _GPU_A)

    return case


def _ecc_case(rule: Rule) -> dict:
    name = tx.GPU_ERRORS.prometheus_series
    un, co = {"error_type": tx.ECC_UNCORRECTED}, {"error_type": tx.ECC_CORRECTED}
    bad = [_series(name, {**_GPU_A, **un}, "0 0 0 1x37"), _series(name, {**_GPU_B, **un}, _gauge(0))]
    healthy = [_series(name, {**_GPU_A, **un}, _gauge(0)), _series(name, {**_GPU_A, **co}, _counter(5))]
    return {"bad": bad, "healthy": healthy, "idle": None, "labels": _GPU_A, "value": None, "first": 3}


def _gpu_missing_case(rule: Rule) -> dict:
    name = tx.GPU_MEMORY_LIMIT.prometheus_name
    info = _series("target_info", _POD_A, _gauge(1))
    bad = [_series(name, _GPU_A, "8e10x10 stale"), _series(name, _GPU_B, _gauge(8e10)), info]
    # the whole server gone is ModelServerDown's business, not GPUMissing's
    gone = [_series(name, _GPU_A, "8e10x10 stale"), _series("target_info", _POD_A, "1x10 stale")]
    return {"bad": bad, "healthy": gone, "idle": None, "labels": _GPU_A, "value": None, "first": 11}


def _collector_case(counter: str, key: str, value: str) -> Callable[[Rule], dict]:
    def case(rule: Rule) -> dict:
        a = {"job": tx.COLLECTOR_JOB, "instance": "c1:9464", key: value}
        b = {"job": tx.COLLECTOR_JOB, "instance": "c2:9464", key: value}
        bad = [_series(counter, a, _counter(60)), _series(counter, b, _gauge(0))]
        healthy = [_series(counter, a, _gauge(3))]
        return {"bad": bad, "healthy": healthy, "idle": None, "labels": a, "value": 1.0, "first": 1}

    return case


_CASES: dict[str, Callable[[Rule], dict]] = {
    **dict.fromkeys(_P95_OF, _latency_case),
    "error_rate": _error_rate_case,
    "throughput": _throughput_case,
    "accuracy": lambda r: _gauge_case(
        tx.ONLINE_ACCURACY.prometheus_name, r.spec.threshold - 0.05, r.spec.threshold + 0.1, A, B, A
    ),
    "confidence": _confidence_case,
    "cpu": _resource_case(tx.RESOURCE_TYPE_CPU),
    "memory": _resource_case(tx.RESOURCE_TYPE_MEMORY),
    "availability": _server_down_case,
    "gpu_memory": _gpu_gauge_case(tx.GPU_MEMORY_UTILIZATION, 0.02),
    "gpu_temperature": _gpu_gauge_case(tx.GPU_TEMPERATURE, 3),
    "gpu_ecc": _ecc_case,
    "gpu_missing": _gpu_missing_case,
    "CollectorRefusingData": _collector_case("modeltel_collector_refused_requests_total", "reason", "overloaded"),
    "CollectorDroppingData": _collector_case("modeltel_collector_dropped_total", "what", "metric_points"),
}


def _minutes(m: int) -> str:
    return f"{m}m"


def _alert_test(rule: Rule, links: Links) -> list[dict]:
    s = rule.spec
    case = (_CASES.get(s.alert) or _CASES[s.family])(rule)
    d = rule.as_dict(links)
    fires_at = case["first"] + parse_duration(s.for_) // 60
    labels = {**case["labels"], **d["labels"]}
    annotations = {k: render_template(v, labels, case["value"]) for k, v in d["annotations"].items()}
    expected = [{"exp_labels": labels, "exp_annotations": annotations}]
    checks = [{"eval_time": _minutes(fires_at), "alertname": s.alert, "exp_alerts": expected}]
    if fires_at > 0:
        checks.insert(0, {"eval_time": _minutes(fires_at - 1), "alertname": s.alert, "exp_alerts": []})
    name = "/".join(filter(None, [s.alert, s.stage, dict(rule.extra_labels).get("cause")]))
    tests = [
        {"name": f"{name} fires after for: on the faulty series only", "interval": "1m",
         "input_series": [fmt_series(x) for x in case["bad"]], "alert_rule_test": checks},
        {"name": f"{name} stays quiet on healthy series", "interval": "1m",
         "input_series": [fmt_series(x) for x in case["healthy"]],
         "alert_rule_test": [{"eval_time": _minutes(POINTS - 5), "alertname": s.alert, "exp_alerts": []}]},
    ]  # fmt: skip
    if case["idle"]:
        tests.append(
            {"name": f"{name} stays quiet on an idle model", "interval": "1m",
             "input_series": [fmt_series(x) for x in case["idle"]],
             "alert_rule_test": [{"eval_time": _minutes(POINTS - 5), "alertname": s.alert, "exp_alerts": []}]}
        )  # fmt: skip
    return tests


def alert_tests(rule_file: str, links: Links) -> dict:
    """The promtool test file for every generated alerting rule."""
    tests = [t for rule in alert_rules() for t in _alert_test(rule, links)]
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}
