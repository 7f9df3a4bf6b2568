"""Shared fixtures: isolated modeltel pipelines with in-memory capture (``modeltel.testing``)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from modeltel.testing import Capture, capture
from tests.binaries import require_binary
from tests.instr.servers import free_port


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[Any]:
    """Test modules are imported with pytest's own flags out of ``sys.argv``.

    KServe parses ``sys.argv`` when imported (``kserve.model_server``, ``parse_known_args``): it took
    ``--co`` as an abbreviation of one of its flags and exited, and ``pytest --co`` ended in INTERNALERROR.
    In a model server the flags are KServe's, and this changes nothing there.
    """
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        return (yield)
    finally:
        sys.argv = argv


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


@pytest.fixture
def alertmanager(tmp_path) -> Iterator[str]:
    """A real Alertmanager (Debian's prometheus-alertmanager) on a free loopback port; yields its URL."""
    binary = require_binary("prometheus-alertmanager", "alertmanager", package="prometheus-alertmanager")
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route:\n  receiver: default\n  group_by: [alertname, model_name]\nreceivers:\n  - name: default\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
