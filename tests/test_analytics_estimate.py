"""Accuracy estimated before labels arrive, in the running collector: the SDK puts a prediction's confidence on
its span, a label joined to it calibrates the estimate, and a fall of confidence alarms with no new label."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

pytest.importorskip("scipy")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import modeltel
from modeltel import taxonomy as tx
from tests.collector_helpers import http_post, running_collector, sample, scrape, sdk_exporting_to

STEP_S, PER_STEP = 5.0, 50  # every simulated 5 s: 50 predictions, an export, a poll
LABELLED_STEPS, DRIFT_AT = 80, 90  # labels for the first 400 s only; confidence falls at 450 s


def _feedback(pids: list[str], correct: list[bool], t: float) -> bytes:
    """A labelling job's export: one feedback span per label, at simulated time ``t``."""
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for pid, right in zip(pids, correct, strict=True):
        sp = ss.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name=tx.SPAN_NAME_FEEDBACK)
        sp.start_time_unix_nano = sp.end_time_unix_nano = int(t * 1e9)
        for key, value in ((tx.SPAN_ATTR_KIND, tx.SPAN_KIND_FEEDBACK), (tx.SPAN_ATTR_PREDICTION_ID, pid)):
            sp.attributes.add(key=key).value.string_value = value
        sp.attributes.add(key=tx.SPAN_ATTR_FEEDBACK_CORRECT).value.bool_value = right
    return req.SerializeToString()


def _predict(rng, a: float, b: float, clock: list[int], t: float) -> tuple[list[str], list[bool]]:
    """``PER_STEP`` predictions from ``t`` on (the spans' clock set to each), each with a confidence drawn
    from beta(a, b) and right with that probability (a calibrated model)."""
    pids, correct = [], []
    for j, confidence in enumerate(rng.beta(a, b, PER_STEP)):
        clock[0] = int((t + j * 0.05) * 1e9)
        with modeltel.prediction("scorer", "4") as p:
            modeltel.record_confidence(float(confidence))
            pids.append(modeltel.remember_prediction(p))
        correct.append(bool(rng.random() < confidence))
    return pids, correct


def test_a_fall_of_confidence_alarms_before_any_label_with_a_calibration_from_joined_labels(monkeypatch):
    rng, t0, clock = np.random.default_rng(11), time.time(), [0]
    for module in ("opentelemetry.sdk.trace", "modeltel.hotpath.spans"):  # spans stamped with simulated time
        monkeypatch.setattr(f"{module}.time_ns", lambda: clock[0])
    with running_collector(otlp_grpc="") as c:
        c.analytics.stop()
        with sdk_exporting_to(c, monkeypatch) as pipeline:
            for i in range(DRIFT_AT + 12):
                t = t0 + STEP_S * i
                pids, correct = _predict(rng, *((8, 2) if i < DRIFT_AT else (3, 3)), clock, t)
                pipeline.force_flush()
                if i < LABELLED_STEPS:
                    status, _, text = http_post(
                        c.urls["otlp_http"] + "/v1/traces",
                        _feedback(pids, correct, t + 3.0),
                        {"Content-Type": "application/x-protobuf"},
                    )
                    assert status == 200, text
                c.flush()
                c.analytics.poll(t + STEP_S)
                if i == DRIFT_AT - 1:
                    before = c.analytics.engine.models[("scorer", "4")].results["estimated_accuracy_drop"]
                    fams = scrape(c)
    assert c.analytics.joiner.stats.joined == LABELLED_STEPS * PER_STEP
    assert before.status.value == "ok"  # evaluated (calibrated from the joined labels), and healthy
    assert before.details["low"] < before.details["estimate"] < before.details["high"]
    assert before.details["estimate"] == pytest.approx(0.8, abs=0.05)  # beta(8, 2)'s mean: a calibrated model
    labels = {"model_name": "scorer", "model_version": "4"}
    for inst, key in zip(tx.ESTIMATED_ACCURACY_INSTRUMENTS, ("estimate", "low", "high"), strict=True):
        name = inst.prometheus_name
        assert sample(fams, name, name, **labels) == pytest.approx(before.details[key])
    firing = [e for e in c.analytics.events if e.state == "firing" and e.check == "estimated_accuracy_drop"]
    assert firing and firing[0].time >= t0 + STEP_S * DRIFT_AT  # after the fall, with no label since 400 s
    assert firing[0].time - (t0 + STEP_S * DRIFT_AT) <= 60
