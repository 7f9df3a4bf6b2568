"""Supported framework versions are stated once, in pyproject.toml's extras; each instrumentor's
``instrumentation_dependencies`` is its extra (``modeltel_kserve`` -> ``modeltel[kserve]``), read from the
installed distribution. A failure here after editing pyproject.toml means: reinstall (``make setup``)."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from modeltel.export.distro import requirements_met
from modeltel.instrumentors import base

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
INSTRUMENTORS = {
    name: value
    for name, value in PYPROJECT["project"]["entry-points"]["opentelemetry_instrumentor"].items()
    if value.startswith("modeltel.")
}


def _normal(requirements: list[str] | tuple[str, ...]) -> list[tuple[str, frozenset[str], str]]:
    reqs = [Requirement(r) for r in requirements]
    return [(canonicalize_name(r.name), frozenset(r.extras), str(r.specifier)) for r in reqs]


def _instrumentor(value: str) -> base.ModeltelInstrumentor:
    module, _, cls = value.partition(":")
    return getattr(importlib.import_module(module), cls)()


@pytest.mark.parametrize("name", sorted(INSTRUMENTORS))
def test_an_instrumentor_supports_exactly_its_pyproject_extra(name: str) -> None:
    extra = PYPROJECT["project"]["optional-dependencies"][name.removeprefix("modeltel_")]
    stated = _normal(extra)
    declared = _normal(tuple(_instrumentor(INSTRUMENTORS[name]).instrumentation_dependencies()))
    assert declared == stated  # same requirements, same order: the framework first (requirements_met reads it so)


def test_a_source_tree_that_pip_never_installed_checks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "requires", not_installed)
    base.extra_requirements.cache_clear()
    try:
        from modeltel.instrumentors.kserve import KServeInstrumentor

        instrumentor = KServeInstrumentor()
        assert tuple(instrumentor.instrumentation_dependencies()) == ()
        assert requirements_met("modeltel_kserve", instrumentor)
    finally:
        base.extra_requirements.cache_clear()
