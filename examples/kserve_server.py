"""A KServe model server for iris, with no telemetry code: run it under ``opentelemetry-instrument``.

    MODELTEL_MODEL_VERSION=1 OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 \
        opentelemetry-instrument python examples/kserve_server.py
    curl -fsS -H 'content-type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2]]}' \
        localhost:8080/v1/models/iris:predict

Preprocess, predict and postprocess become stage spans (scikit-learn's call a child span of predict).
PORT sets the HTTP port (default 8080).
"""

from __future__ import annotations

import os

import numpy as np
from kserve import Model, ModelServer
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


class Iris(Model):
    def __init__(self) -> None:
        super().__init__("iris")
        self.clf = None

    def load(self) -> bool:
        x, y = load_iris(return_X_y=True)
        self.clf = LogisticRegression(max_iter=500).fit(x, y)
        self.ready = True
        return True

    async def preprocess(self, payload, headers=None):
        return np.asarray(payload["instances"], dtype=float)

    def predict(self, payload, headers=None):
        return self.clf.predict_proba(payload)

    async def postprocess(self, result, headers=None):
        return {"predictions": result.argmax(axis=1).tolist(), "confidence": result.max(axis=1).tolist()}


if __name__ == "__main__":
    model = Iris()
    model.load()
    ModelServer(http_port=int(os.environ.get("PORT", "8080")), enable_grpc=False, workers=1).start([model])
