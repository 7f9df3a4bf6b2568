"""A TorchServe handler with modeltel: three lines at the top, nothing in the handler itself.

TorchServe's Java frontend starts the Python workers itself, so ``opentelemetry-instrument`` cannot wrap
them; the handler module turns modeltel on when the worker imports it (workers inherit the frontend's
environment, so ``OTEL_*`` / ``MODELTEL_*`` variables apply)::

    mkdir -p model_store
    torch-model-archiver --model-name tiny --version 1.0 --handler examples/torchserve_handler.py \
        --export-path model_store
    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 torchserve --start --ncs --disable-token-auth \
        --model-store model_store --models tiny=tiny.mar
    curl -H 'Content-Type: application/json' -d '[1.0, 2.0, 3.0, 4.0]' localhost:8080/predictions/tiny

(``torch-model-archiver`` comes with ``modeltel[torchserve]``; TorchServe's frontend needs Java 11+, e.g.
Debian's ``default-jre-headless``. Without the JSON content type curl sends a form, which TorchServe hands
the handler as form fields, not as the body; ``--disable-token-auth`` keeps TorchServe's
token check (on by default since 0.11) out of a local try.) ``tests/test_instr_zero_code.py`` runs these commands.

``handle`` becomes the prediction (model name / version from the archive's manifest, batch size =
requests in the batch); preprocess / inference / postprocess its stages; the torch forward inside
``inference`` a child span.
"""

from __future__ import annotations

import json

import torch
from ts.torch_handler.base_handler import BaseHandler

import modeltel
from modeltel.instrumentors.torch import TorchInstrumentor
from modeltel.instrumentors.torchserve import TorchServeInstrumentor

modeltel.init()  # once per worker process (a second call returns the first pipeline)
TorchServeInstrumentor().instrument()  # also wraps the class below, through BaseHandler.__init_subclass__
TorchInstrumentor().instrument()


class TinyHandler(BaseHandler):
    """Scores 4-feature rows with a small MLP built in place (no serialized file needed)."""

    def initialize(self, context):
        self.manifest = context.manifest
        self.device = torch.device("cpu")
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
        self.initialized = True

    def preprocess(self, data):
        rows = []
        for request in data:
            body = request.get("body") or request.get("data")
            if isinstance(body, bytes | bytearray):
                body = json.loads(body)
            rows.append([float(v) for v in body])
        return torch.as_tensor(rows)

    def postprocess(self, data):
        probs = torch.softmax(data, dim=1)
        return [{"class": int(p.argmax()), "confidence": float(p.max())} for p in probs]
