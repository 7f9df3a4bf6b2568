"""Architecture rules that code review alone would let slip (``docs/architecture.md`` explains them).

Every module's imports are read with ``ast`` (relative ones resolved). Every module belongs to a layer of
the lists below, and each layer may import only the layers its entry names (all below it).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import modeltel
from modeltel.instrumentors import base

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "sdk"


def _module_name(path: Path, top: Path) -> str:
    parts = list(path.relative_to(top).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(top: Path, package: str) -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module under ``top/package``."""
    for path in sorted((top / package).rglob("*.py")):
        yield _module_name(path, top), path


def imports(top: Path, package: str) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(importing module, imported module, names imported from it) for every import under ``top/package``."""
    for module, path in modules(top, package):
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield module, alias.name, ()
            elif isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:
                    anchor = module.split(".")
                    anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                    target = ".".join([*anchor, target] if target else anchor)
                names = tuple(alias.name for alias in node.names)
                submodules = [n for n in names if _is_module(f"{target}.{n}")]
                for name in submodules:  # `from package import module` imports that module
                    yield module, f"{target}.{name}", ()
                if len(submodules) < len(names):
                    yield module, target, tuple(n for n in names if n not in submodules)


def _is_module(dotted: str) -> bool:
    for top in (SDK, ROOT / "collector"):
        path = top.joinpath(*dotted.split("."))
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return True
    return False


def _within(module: str, *packages: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def _in_layer(module: str, layer: str) -> bool:
    """A layer is a module or a package with everything under it; a top-level package (``modeltel``, the
    public API) is its ``__init__`` alone, or every module would sit in it."""
    return module == layer or ("." in layer and module.startswith(layer + "."))


API = "modeltel"  # `import modeltel`: the public API, which imports the layers that implement it
# layer -> the layers (besides itself) it may import, lowest layers first. Every module is in one.
SDK_LAYERS = {
    "modeltel._version": (),  # the version string, a leaf any layer may read
    "modeltel.taxonomy": (),
    "modeltel.promql": (),  # Prometheus' arithmetic, a leaf: the demo and the collector's console share it
    "modeltel.plainjson": (),  # strict JSON out of numpy and non-finite numbers, a leaf: every --format json
    "modeltel.labeljoin": (),  # the label join, a leaf: the SDK's feedback and the collector's joiner share it
    "modeltel.feedback": ("modeltel.labeljoin",),  # ground truth joined to predictions
    "modeltel.config": ("modeltel.taxonomy",),
    "modeltel.meters": ("modeltel.taxonomy", "modeltel.config"),
    # never export plumbing or instrumentors
    "modeltel.hotpath": ("modeltel._version", "modeltel.taxonomy", "modeltel.config"),
    "modeltel.export": (
        "modeltel._version", "modeltel.taxonomy", "modeltel.config", "modeltel.hotpath", "modeltel.meters",
    ),
    "modeltel.generators": ("modeltel.taxonomy",),  # pure functions: taxonomy (+ SLO config) -> files
    API: ("modeltel._version", "modeltel.taxonomy", "modeltel.feedback", "modeltel.hotpath", "modeltel.export"),
    # above the public API: what users write, written the way users write it
    "modeltel.instrumentors": (API, "modeltel.taxonomy", "modeltel.hotpath"),
    "modeltel.testing": (API, "modeltel.taxonomy", "modeltel.export"),
    "modeltel.examples": (API, "modeltel.taxonomy"),
    "modeltel.cli": (API, "modeltel._version", "modeltel.taxonomy", "modeltel.config", "modeltel.promql",
                     "modeltel.plainjson", "modeltel.generators", "modeltel.examples"),
}  # fmt: skip
_C = "modeltel_collector"
_SHARED = tuple(
    f"{_C}.{m}"
    for m in (
        "config",
        "stats",
        "httpbase",
        "translate",
        "otlp",
        "validate",
        "labelcap",
        "facts",
        "latency_bounds",
    )
)
_STAGES = tuple(f"{_C}.{m}" for m in ("store", "forward", "process", "receive", "serve", "analytics"))
COLLECTOR_LAYERS = {
    **{shared: (*_SHARED, "modeltel.plainjson") for shared in _SHARED},  # the HTTP APIs' strict JSON
    f"{_C}.latency_bounds": (*_SHARED, "modeltel.taxonomy"),  # the taxonomy's latency histograms and SLO
    f"{_C}.store": _SHARED,
    f"{_C}.forward": _SHARED,
    f"{_C}.process": (f"{_C}.store", f"{_C}.forward", *_SHARED, "modeltel.taxonomy"),
    f"{_C}.receive": (f"{_C}.process", *_SHARED),
    # promql: the console charts
    f"{_C}.serve": (f"{_C}.store", *_SHARED, "modeltel.taxonomy", "modeltel.promql", "modeltel.plainjson"),
    f"{_C}.analytics": (f"{_C}.store", *_SHARED, "modeltel.taxonomy", "modeltel.plainjson", "modeltel.labeljoin"),
    f"{_C}.wiring": (*_STAGES, *_SHARED),  # the typed dependencies object every stage is handed
    f"{_C}.collector": (f"{_C}.wiring", *_STAGES, *_SHARED),  # builds the stages and connects them
    f"{_C}.analytics_cli": (f"{_C}.analytics", *_SHARED, "modeltel.taxonomy", "modeltel.plainjson"),
    f"{_C}.analytics_commands": (f"{_C}.analytics_cli", *_SHARED),
    f"{_C}.cli": (f"{_C}.collector", f"{_C}.analytics_commands", *_SHARED),
    f"{_C}.__main__": (f"{_C}.cli",),
    _C: (f"{_C}.collector", *_SHARED),  # the package's __init__: `from modeltel_collector import Collector`
}


def _layer(module: str, layers: dict[str, tuple[str, ...]]) -> str | None:
    return next((name for name in layers if _in_layer(module, name)), None)


def _offenders(top: Path, package: str, layers: dict[str, tuple[str, ...]]) -> list[str]:
    """Imports of this project's modules by a layer outside what ``layers`` allows for it."""
    out = []
    for module, target, names in imports(top, package):
        layer = _layer(module, layers)  # None: test_every_module_is_in_a_layer reports it
        if layer is None or not _within(target, "modeltel", _C) or _in_layer(target, layer):
            continue
        if not any(_in_layer(target, allowed) for allowed in layers[layer]):
            out.append(f"{module} imports {target} {names}")
    return out


def _unlayered(top: Path, package: str, layers: dict[str, tuple[str, ...]]) -> list[str]:
    return [module for module, _ in modules(top, package) if _layer(module, layers) is None]


def test_the_sdk_never_imports_the_collector():
    offenders = [f"{m}: {t}" for m, t, _ in imports(SDK, "modeltel") if _within(t, "modeltel_collector")]
    assert offenders == []


def test_every_module_is_in_a_layer():
    assert _unlayered(SDK, "modeltel", SDK_LAYERS) == []
    assert _unlayered(ROOT / "collector", _C, COLLECTOR_LAYERS) == []


def test_sdk_imports_point_one_way_from_the_public_api_down_to_taxonomy():
    assert _offenders(SDK, "modeltel", SDK_LAYERS) == []


def test_collector_layers_import_downward_only():
    assert _offenders(ROOT / "collector", _C, COLLECTOR_LAYERS) == []
    sdk_used = {t for _, t, _ in imports(ROOT / "collector", _C) if _within(t, "modeltel")}
    assert sdk_used <= {"modeltel.taxonomy", "modeltel.promql", "modeltel.plainjson", "modeltel.labeljoin"}


def test_instrumentors_use_the_public_api_and_the_bases_public_names_only():
    shared = {
        "modeltel.instrumentors.base",
        "modeltel.instrumentors.patching",
        "modeltel.instrumentors.scopes",  # the base's scopes (its names are imported through the base)
        "modeltel.instrumentors.http_server",
        "modeltel.instrumentors.http_stream",  # streamed bodies as generations: HTTP servers' shared part
    }
    offenders = []
    for module, target, names in imports(SDK, "modeltel"):
        if not _within(module, "modeltel.instrumentors") or module in shared:
            continue
        if _within(target, ".".join(module.split(".")[:3])):  # an instrumentor package imports its own parts
            continue
        if _within(target, "modeltel.instrumentors"):
            private = [n for n in names if n.startswith("_")]
            if target not in shared - {"modeltel.instrumentors.patching", "modeltel.instrumentors.scopes"} or private:
                offenders.append(f"{module} imports {target} {names}")
        elif _within(target, "modeltel") and target not in ("modeltel", "modeltel.taxonomy"):
            offenders.append(f"{module} imports {target} (not the public API)")
    assert offenders == []
    assert all(not name.startswith("_") and hasattr(base, name) for name in base.__all__)


def test_every_public_name_exists():
    missing = [name for name in modeltel.__all__ if not hasattr(modeltel, name)]
    assert missing == []


def test_modules_stay_readable_in_one_sitting():
    too_long = {}
    for top in (SDK, ROOT / "collector"):
        for path in top.rglob("*.py"):
            lines = len(path.read_text().splitlines())
            if lines > 450:
                too_long[str(path.relative_to(ROOT))] = lines
    assert too_long == {}
