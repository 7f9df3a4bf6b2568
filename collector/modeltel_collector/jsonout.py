"""JSON text the APIs send: always strict JSON.

``json.dumps`` writes ``Infinity`` and ``NaN`` for non-finite floats, which no JSON parser but Python's
accepts (a browser's ``JSON.parse`` throws), so such values are sent as ``null``. The check costs nothing
for the usual document: only one that fails the strict encoding is walked and encoded again.
"""

from __future__ import annotations

import json
import math
from typing import Any


def dumps(doc: Any) -> str:
    """``doc`` as strict JSON: non-finite floats become ``null``."""
    try:
        return json.dumps(doc, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(doc), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
