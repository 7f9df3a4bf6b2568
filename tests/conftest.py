"""Shared fixtures: isolated modeltel pipelines with in-memory capture (``modeltel.testing``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from modeltel.testing import Capture, capture


@pytest.fixture
def make_captured() -> Iterator[Callable[..., Capture]]:
    """``make_captured(**settings)``: a capture with model ``iris`` / ``1.0`` unless the settings say otherwise."""
    with ExitStack() as stack:
        yield lambda **settings: stack.enter_context(
            capture(**{"model_name": "iris", "model_version": "1.0", **settings})
        )


@pytest.fixture
def captured(make_captured: Callable[..., Capture]) -> Capture:
    return make_captured()


@pytest.fixture
def tel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Capture]:
    """The instrumentor tests' capture: the environment's model is ``env-model`` / ``7``."""
    monkeypatch.delenv("MODELTEL_MODEL_NAME", raising=False)
    monkeypatch.delenv("MODELTEL_MODEL_VERSION", raising=False)
    with capture(model_name="env-model", model_version="7") as c:
        yield c


def parent_of(span: Any) -> int | None:
    return span.parent.span_id if span.parent is not None else None
