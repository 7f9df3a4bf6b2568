"""A small FastAPI model server: scikit-learn on iris, its three stages wrapped with modeltel.

Start it with environment variables alone, e.g.::

    MODELTEL_MODEL_NAME=iris-classifier modeltel run -- uvicorn modeltel.examples.iris_server:app --port 8000

``POST /predict`` takes ``{"features": [[5.1, 3.5, 1.4, 0.2], ...]}``; rows that are not four finite
numbers are rejected in preprocessing (a counted ``ValueError``, HTTP 422).

With ``IRIS_FAULTS=1`` it also serves ``POST /faults``
``{"latency_s": 0.3, "error_fraction": 0.5, "feature_noise": 0.5}``: from then on inference sleeps that
long, fails that share of requests (HTTP 500), and sees every feature plus Gaussian noise of that standard
deviation (drifted inputs, so the confidence distribution drifts). That is how the alerting end-to-end
test, ``benchmarks/mttd.py`` and the demo inject a latency regression, an error burst and input drift.
"""

from __future__ import annotations

import math
import os
import random
import time

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import modeltel

_iris = load_iris()
_model = LogisticRegression(max_iter=500).fit(_iris.data, _iris.target)
app = FastAPI(title="iris")


class PredictRequest(BaseModel):
    features: list[list[float]]


class Faults(BaseModel):
    latency_s: float = 0.0
    error_fraction: float = 0.0
    feature_noise: float = 0.0


_faults = {"latency_s": 0.0, "error_fraction": 0.0, "feature_noise": 0.0}
_noise = np.random.default_rng()


def _preprocess(rows: list[list[float]]) -> np.ndarray:
    if not rows or any(len(r) != 4 or not all(math.isfinite(v) for v in r) for r in rows):
        raise ValueError("each row needs four finite numbers")
    return np.asarray(rows, dtype=np.float64)


@modeltel.monitor_prediction()
def predict(rows: list[list[float]]) -> dict:
    with modeltel.stage("preprocess"):
        x = _preprocess(rows)
    modeltel.record_batch_size(len(x))
    with modeltel.stage("inference"):
        if _faults["latency_s"]:
            time.sleep(_faults["latency_s"])
        if _faults["error_fraction"] and random.random() < _faults["error_fraction"]:
            raise RuntimeError("injected fault")
        if _faults["feature_noise"]:
            x = x + _noise.normal(0.0, _faults["feature_noise"], x.shape)
        proba = _model.predict_proba(x)
    with modeltel.stage("postprocess"):
        labels = [str(_iris.target_names[i]) for i in proba.argmax(axis=1)]
        confidence = proba.max(axis=1)
        for c in confidence:
            modeltel.record_confidence(float(c))
    return {"labels": labels, "confidence": [round(float(c), 4) for c in confidence]}


@app.post("/predict")
def predict_endpoint(request: PredictRequest) -> dict:
    try:
        return predict(request.features)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


if os.environ.get("IRIS_FAULTS") == "1":

    @app.post("/faults")
    def set_faults(faults: Faults) -> dict:
        _faults.update(faults.model_dump())
        return _faults


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}
