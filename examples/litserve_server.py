"""A LitServe iris server with no telemetry code: run it under ``opentelemetry-instrument``.

    MODELTEL_MODEL_NAME=iris OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 \
        opentelemetry-instrument python examples/litserve_server.py
    curl -fsS -H 'content-type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2]]}' localhost:8080/predict

decode_request / predict / encode_response become preprocess / inference / postprocess stage spans in
LitServe's worker process; the HTTP server span and the prediction count come from the API server.
PORT sets the HTTP port (default 8080); MAX_BATCH_SIZE > 1 turns on LitServe's batching.
"""

from __future__ import annotations

import os

import litserve as ls
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


class IrisAPI(ls.LitAPI):
    def setup(self, device):
        x, y = load_iris(return_X_y=True)
        self.clf = LogisticRegression(max_iter=500).fit(x, y)

    def decode_request(self, request):
        return np.asarray(request["instances"], dtype=float)

    def batch(self, inputs):
        return np.concatenate(inputs)

    def predict(self, x):
        return self.clf.predict_proba(x)

    def unbatch(self, output):
        return [row[None, :] for row in output]

    def encode_response(self, output):
        return {"predictions": output.argmax(axis=1).tolist()}


if __name__ == "__main__":
    batch = int(os.environ.get("MAX_BATCH_SIZE", "1"))
    api = IrisAPI(max_batch_size=batch, batch_timeout=0.01 if batch > 1 else 0.0)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8080")), generate_client_file=False)
