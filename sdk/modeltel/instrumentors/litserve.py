"""LitServe: ``LitAPI`` decode_request / batch / predict / unbatch / encode_response, streaming included.

Mapping: ``decode_request`` -> preprocess, ``predict`` -> inference, ``encode_response`` -> postprocess,
``batch`` and ``unbatch`` -> custom stages ``batch`` / ``unbatch``; ``batch`` records the batch size.
Sync, async, generator and async-generator methods keep their kind (LitServe dispatches on it and tells
overrides apart by ``__code__``, which each wrapper keeps distinct). Streaming stages span the whole
stream.

Why wrappers rather than LitServe's callbacks: ``on_before_*`` / ``on_after_*`` get only the LitAPI, the
``after`` event is skipped when a stage raises, and nothing ties a pair to one request, so they cannot
close a span on error or keep concurrent requests apart. The stages run in LitServe's worker
processes, which ``opentelemetry-instrument`` also instruments (they inherit its environment).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from modeltel import taxonomy as tx

from .base import ModeltelInstrumentor, Patches, batch_len, patch_hierarchy

_STAGES = {
    "decode_request": tx.STAGE_PREPROCESS,
    "batch": "batch",
    "predict": tx.STAGE_INFERENCE,
    "unbatch": "unbatch",
    "encode_response": tx.STAGE_POSTPROCESS,
}


def _batch_of(args: tuple, kwargs: dict) -> int | None:
    inputs = args[1] if len(args) > 1 else kwargs.get("inputs")
    return batch_len(inputs)


class LitServeInstrumentor(ModeltelInstrumentor):
    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("litserve")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        from litserve import LitAPI

        makers = {
            name: self.framework_stage("litserve", name, stage, batch_of=_batch_of if name == "batch" else None)
            for name, stage in _STAGES.items()
        }
        patch_hierarchy(patches, LitAPI, makers)
