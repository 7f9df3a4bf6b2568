"""Plain JSON out of whatever numbers a computation used: every ``--format json`` writes through ``dumps``.

Why: numpy scalars (``np.int64``, ``np.float32``, ``np.bool_``) and arrays are not JSON serializable, and
Python's own encoder writes NaN and infinity as the bare words ``NaN`` / ``Infinity``, which are not JSON
and which most parsers reject. ``plain`` turns a value into one ``json.dumps`` writes as strict JSON:
numpy integers become ints, numpy floats become floats, numpy booleans become booleans, arrays and tuples
become lists, enums their value, and every non-finite float (NaN, +inf, -inf) becomes ``null`` (JSON has
no such numbers; a reader sees "no value"). Duck-typed, so the SDK needs no numpy to use it. The
collector's HTTP APIs send their documents through ``dumps`` too: the usual document, already plain,
is encoded once; only one that fails strict encoding is walked by ``plain`` and encoded again.
"""

from __future__ import annotations

import json
import math
from enum import Enum
from typing import Any


def plain(value: Any) -> Any:
    """``value`` as dicts, lists, str, int, float (finite), bool and None only."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(plain(k)) if not isinstance(k, str) else k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars (np.int64.tolist() is an int)
        return plain(value.tolist())
    if hasattr(value, "item"):
        return plain(value.item())
    raise TypeError(f"{type(value).__name__} has no plain-JSON form")


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``plain(value)``, refusing anything that would not be strict JSON."""
    try:  # a document that is already plain JSON (the APIs' usual one) costs one encoding
        return json.dumps(value, allow_nan=False, **kwargs)
    except (TypeError, ValueError):  # numpy types, NaN or infinities somewhere: walk it
        return json.dumps(plain(value), allow_nan=False, **kwargs)
