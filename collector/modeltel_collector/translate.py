"""OpenTelemetry -> Prometheus name translation, per the OTel/Prometheus compatibility specification.

Kept separate from the store so the rules (unit suffixes, ``_total``, label sanitising) are testable alone
and match ``modeltel.taxonomy``'s precomputed ``prometheus_name`` values.
"""

from __future__ import annotations

import re
from functools import lru_cache

_INVALID_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_MULTI_UNDERSCORE = re.compile(r"__+")
_BRACES = re.compile(r"\{[^}]*\}")

_UNITS = {
    # time
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    # bytes
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    # SI
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "%": "percent",
}
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}


def _unit_word(unit: str) -> str:
    return _UNITS.get(unit, unit)


@lru_cache(maxsize=4096)
def unit_suffix(unit: str, is_gauge: bool = False) -> str:
    """The Prometheus unit suffix for an UCUM unit, '' when the unit adds none (annotations, '1' on counters)."""
    unit = _BRACES.sub("", unit).strip()
    if not unit:
        return ""
    if unit == "1":
        return "ratio" if is_gauge else ""
    if "/" in unit:
        num, _, den = unit.partition("/")
        num_word = _unit_word(num.strip()) if num.strip() else ""
        den_word = _PER_UNITS.get(den.strip(), _unit_word(den.strip()))
        word = f"{num_word}_per_{den_word}" if num_word else f"per_{den_word}"
    else:
        word = _unit_word(unit)
    return _MULTI_UNDERSCORE.sub("_", _INVALID_METRIC_CHARS.sub("_", word)).strip("_")


@lru_cache(maxsize=4096)
def metric_family_name(name: str, unit: str, is_gauge: bool = False) -> str:
    """The family name of an OTel metric (without ``_total``/``_bucket``), e.g. model.stage.latency+s."""
    base = _MULTI_UNDERSCORE.sub("_", _INVALID_METRIC_CHARS.sub("_", name))
    if base and base[0].isdigit():
        base = "_" + base
    suffix = unit_suffix(unit, is_gauge)
    if suffix and not base.endswith("_" + suffix) and base != suffix:
        base = f"{base}_{suffix}"
    if base.endswith("_total"):
        base = base[: -len("_total")]
    return base


# labels the collector or Prometheus set itself: an attribute of that name is exposed as exported_<name>,
# as Prometheus does for scraped labels that clash with target labels (honor_labels: false)
RESERVED_LABELS = frozenset({"job", "instance", "le", "quantile"})
_SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
# family names the collector's own exposition uses: a client family of that name would duplicate them
_RESERVED_FAMILY_PREFIX = "modeltel_collector_"
_RESERVED_FAMILIES = frozenset({"target", "target_info"})
# names Prometheus gives a meaning: a client's `up` = 0 (with honor_labels: true) is a false "target down"
# for whatever job/instance it names; scrape_* are the scrape's own series; ALERTS* the rule engine's
_PROMETHEUS_FAMILIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})
_PROMETHEUS_PREFIX = "scrape_"
_VALID_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@lru_cache(maxsize=16384)
def label_name(key: str) -> str:
    """Sanitise an attribute key into a Prometheus label name (dots -> '_', leading digit -> 'key_').

    Reserved names (``RESERVED_LABELS``) become ``exported_<name>``, so a data point or resource attribute
    can neither override the series' job/instance nor break a histogram's ``le``.
    """
    name = _INVALID_LABEL_CHARS.sub("_", key)
    if not name:
        return "_"
    if name[0].isdigit():
        name = "key_" + name
    elif name.startswith("__"):
        name = "key" + name
    if name in RESERVED_LABELS:
        name = "exported_" + name
    return name


def sample_names(family: str, type_: str) -> tuple[str, ...]:
    """Every name a family claims in the exposition: its own (the TYPE line) and its samples'."""
    return (family, *(family + s for s in _SAMPLE_SUFFIXES.get(type_, ())))


def family_name_problem(family: str) -> str:
    """Why a family name cannot be exposed ('' when it can): empty after sanitising, or reserved."""
    if not _VALID_METRIC_NAME.fullmatch(family):
        return f"metric name {family!r} is not a valid Prometheus name"
    if family in _RESERVED_FAMILIES or family.startswith(_RESERVED_FAMILY_PREFIX):
        return f"metric name {family!r} is reserved for the collector's own series"
    if family in _PROMETHEUS_FAMILIES or family.startswith(_PROMETHEUS_PREFIX):
        return f"metric name {family!r} is reserved: Prometheus writes it itself"
    if ":" in family:  # OTel names have no ':'; Prometheus reserves it for recording rules (ours: slo:...)
        return f"metric name {family!r} is reserved: names with ':' are written by recording rules"
    return ""


def escape_label_value(value: str) -> str:
    """Escape a label value for both exposition formats."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str, *, openmetrics: bool = False) -> str:
    """Escape HELP text: backslash and newline in both formats, double quotes too in OpenMetrics."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text
