"""Architecture rules that code review alone would let slip."""

from __future__ import annotations

import ast
from pathlib import Path

SDK = Path(__file__).resolve().parents[1] / "sdk" / "modeltel"


def test_the_sdk_never_imports_the_collector():
    offenders = []
    for path in SDK.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(SDK)}: {n}" for n in names if n.split(".")[0] == "modeltel_collector"]
    assert offenders == []
