"""The modeltel SDK (``modeltel.init``) exporting to the collector over both protocols."""

from __future__ import annotations

import json
import time

import pytest

import modeltel
from tests.collector_helpers import http_get, running_collector, sample, scrape


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_modeltel_sdk_metrics_exemplars_and_traces(protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_collector() as c:
        endpoint = c.urls["otlp_http"] if protocol == "http/protobuf" else "http://" + c.urls["otlp_grpc"]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "sdk-app")
        modeltel.init(set_global=False)
        try:
            for i in range(5):
                with modeltel.prediction("iris", "v1"):
                    with modeltel.stage("preprocess"):
                        pass
                    with modeltel.stage("inference"):
                        time.sleep(0.03 if i == 4 else 0)
        finally:
            modeltel.shutdown()
        fams = scrape(c, openmetrics=True)
        lbl = {"job": "sdk-app", "model_name": "iris", "model_version": "v1"}
        # the SDK sends these families itself: its spans must not add to them
        fam = "model_prediction_latency_seconds"
        assert sample(fams, fam, fam + "_count", **lbl) == 5
        assert sample(fams, "model_predictions", "model_predictions_total", status="success", **lbl) == 5
        stage = "model_stage_latency_seconds"
        assert sample(fams, stage, stage + "_count", stage="inference", **lbl) == 5
        exemplar_ids = {e.labels["trace_id"] for e in fams[fam]["exemplars"].values()}
        assert exemplar_ids
        for trace_id in exemplar_ids:
            assert http_get(f"{c.urls['listen']}/api/traces/{trace_id}")[0] == 200
        slowest = json.loads(http_get(c.urls["listen"] + "/api/traces?kind=prediction&sort=duration&limit=1")[2])
        assert slowest["traces"][0]["duration_ms"] >= 30
        assert slowest["traces"][0]["stages"] == ["preprocess", "inference"]  # pipeline order
