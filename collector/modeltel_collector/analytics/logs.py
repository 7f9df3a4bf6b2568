"""Prediction logs (CSV or JSON lines) as rows for the engine: every bad row is reported, never guessed.

Columns: timestamp (Unix seconds or ISO 8601; no zone means UTC), model_name, model_version,
latency_seconds, status (success/ok or error/failure), confidence (empty: none), and optionally correct
(1/0/true/false) or label plus prediction (correct when equal), prediction_id (what a later label
names), and a generation's ttft_s, tpot_s (seconds) and output_tokens (empty: not a generation). A
labels file (``read_labels``) has timestamp (when the label arrived), prediction_id, and correct or
label. A row that breaks any of these comes back as a ``BadRow`` with its line number and the reason,
and the replay skips it.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from modeltel.taxonomy import STATUS_ERROR, STATUS_SUCCESS

REQUIRED = ("timestamp", "model_name", "model_version", "latency_seconds", "status", "confidence")
GENAI = ("ttft_s", "tpot_s", "output_tokens")  # optional: a generation's time to first token, per token, length
LABEL_REQUIRED = ("timestamp", "prediction_id")
_OK = {STATUS_SUCCESS, "ok", "true", "1"}
_ERROR = {STATUS_ERROR, "failure", "failed", "false", "0"}
_TRUE, _FALSE = {"1", "true", "yes"}, {"0", "false", "no"}


@dataclass(frozen=True)
class Row:
    line: int
    time: float
    model: str
    version: str
    latency: float
    ok: bool
    confidence: float
    correct: bool | None
    pid: str | None = None  # prediction_id: joins a delayed label
    prediction: str | None = None  # the predicted value, to compare a label with
    ttft: float | None = None  # a generation's time to first token, seconds
    tpot: float | None = None  # its time per output token, seconds
    output_tokens: float | None = None  # its output token count


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str
    file: str | None = None  # None: the prediction log itself


@dataclass(frozen=True)
class Label:
    line: int
    time: float  # when the label arrived
    pid: str
    correct: bool | None
    label: str | None


def read_log(path: str | Path) -> Iterator[Row | BadRow]:
    """Rows of a CSV or JSON-lines log (JSON when the name ends .jsonl/.ndjson/.json or the text starts '{')."""
    return _read(Path(path), REQUIRED, parse)


def read_labels(path: str | Path) -> Iterator[Label | BadRow]:
    """Labels of a CSV or JSON-lines labels file, in the file's order (their arrival order)."""
    return _read(Path(path), LABEL_REQUIRED, parse_label, str(path))


def _read(path: Path, required: tuple[str, ...], parser, name: str | None = None) -> Iterator:
    with path.open(newline="") as f:
        head = f.read(1)
        f.seek(0)
        if path.suffix in (".jsonl", ".ndjson", ".json") or head == "{":
            for number, text in enumerate(f, 1):
                if text.strip():
                    yield _json_row(number, text, parser, name)
            return
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or ())]
        if missing:
            yield BadRow(1, f"header lacks column(s) {', '.join(missing)}; nothing read", name)
            return
        for record in reader:
            out = parser(reader.line_num, record)
            yield BadRow(out.line, out.reason, name) if isinstance(out, BadRow) and name else out


def _json_row(number: int, text: str, parser, name: str | None):
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return BadRow(number, f"not JSON ({exc.msg})", name)
    if not isinstance(record, dict):
        return BadRow(number, "not a JSON object", name)
    out = parser(number, {k: "" if v is None else str(v) for k, v in record.items()})
    return BadRow(out.line, out.reason, name) if isinstance(out, BadRow) and name else out


def parse_label(line: int, record: dict[str, str]) -> Label | BadRow:
    """One labels-file record to a ``Label``: when it arrived, the prediction it names, right or the label."""
    missing = [c for c in LABEL_REQUIRED if c not in record or record[c] is None]
    if missing:
        return BadRow(line, f"missing {', '.join(missing)}")
    try:
        when, pid = _timestamp(record["timestamp"].strip()), record["prediction_id"].strip()
        if not pid:
            raise ValueError("empty prediction_id")
        text = (record.get("correct") or "").strip().lower()
        if text and text not in _TRUE | _FALSE:
            raise ValueError(f"correct {text!r} is not 1/0/true/false")
        label = (record.get("label") or "").strip() or None
        if not text and label is None:
            raise ValueError("neither correct nor label")
    except ValueError as exc:
        return BadRow(line, str(exc))
    return Label(line, when, pid, (text in _TRUE) if text else None, label)


def parse(line: int, record: dict[str, str]) -> Row | BadRow:
    """One record (strings by column) to a ``Row``, or the first reason it is not one."""
    missing = [c for c in REQUIRED if c not in record or record[c] is None]
    if missing:
        return BadRow(line, f"missing {', '.join(missing)}")
    try:
        when = _timestamp(record["timestamp"].strip())
        model, version = record["model_name"].strip(), record["model_version"].strip()
        if not model:
            raise ValueError("empty model_name")
        latency = _number(record["latency_seconds"], "latency_seconds", low=0.0)
        status = record["status"].strip().lower()
        if status not in _OK | _ERROR:
            raise ValueError(f"status {status!r} is neither success/ok nor error/failure")
        conf_text = record["confidence"].strip()
        confidence = _number(conf_text, "confidence", low=0.0, high=1.0) if conf_text else math.nan
        correct = _correct(record)
        gen = [_number(text, c, low=0.0) if (text := (record.get(c) or "").strip()) else None for c in GENAI]
    except ValueError as exc:
        return BadRow(line, str(exc))
    pid, prediction = (record.get("prediction_id") or "").strip(), (record.get("prediction") or "").strip()
    ok = status in _OK
    return Row(line, when, model, version, latency, ok, confidence, correct, pid or None, prediction or None, *gen)


def _timestamp(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"timestamp {text!r} is neither Unix seconds nor ISO 8601") from None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
    if not math.isfinite(value):
        raise ValueError(f"timestamp {text!r} is not finite")
    return value


def _number(text: str, column: str, *, low: float, high: float = math.inf) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} {text.strip()!r} is not a number") from None
    if not (low <= value <= high):  # NaN fails this too
        raise ValueError(f"{column} {value} is outside [{low}, {high}]")
    return value


def _correct(record: dict[str, str]) -> bool | None:
    text = (record.get("correct") or "").strip().lower()
    if text:
        if text not in _TRUE | _FALSE:
            raise ValueError(f"correct {text!r} is not 1/0/true/false")
        return text in _TRUE
    label, prediction = (record.get("label") or "").strip(), (record.get("prediction") or "").strip()
    if label and prediction:
        return label == prediction
    return None
