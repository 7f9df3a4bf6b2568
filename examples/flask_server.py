"""A Flask iris server with no telemetry code: run it under ``opentelemetry-instrument``.

    MODELTEL_MODEL_NAME=iris OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 \
        opentelemetry-instrument python examples/flask_server.py
    curl -fsS -H 'content-type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2]]}' localhost:8080/predict

Each POST is a prediction on the HTTP server span; scikit-learn's predict_proba is its inference stage.
PORT sets the HTTP port (default 8080).
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

X, Y = load_iris(return_X_y=True)
CLF = LogisticRegression(max_iter=500).fit(X, Y)
app = Flask(__name__)


@app.post("/predict")
def predict():
    instances = request.get_json()["instances"]
    probs = CLF.predict_proba(instances)
    return jsonify(predictions=probs.argmax(axis=1).tolist())


@app.get("/health")
def health():
    return "ok"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8080")), threaded=True)
