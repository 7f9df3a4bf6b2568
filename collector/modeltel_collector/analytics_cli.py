"""``modeltel detect | health | baseline | evidence``: the analytics' commands (``modeltel.commands`` plugins).

They run the collector's own detectors and settings on a prediction log, so a user can backtest the
thresholds on their own traffic before trusting the alerts.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from modeltel.plainjson import dumps
from modeltel_collector.analytics.baseline import capture, load, load_baselines, save
from modeltel_collector.analytics.engine import Event
from modeltel_collector.analytics.evidence import PACKAGE, Sources, build
from modeltel_collector.analytics.health import health_report, render_health, report_from_metrics
from modeltel_collector.analytics.logs import REQUIRED, BadRow, read_labels, read_log
from modeltel_collector.analytics.replay import replay
from modeltel_collector.analytics.scraped import capture_prometheus, capture_scraped, scrape


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _table(events: list[Event]) -> str:
    head = ("time", "line", "model", "version", "check", "state", "severity", "p_value", "effect")
    rows = [
        (
            _iso(e.time),
            str(e.line or "-"),
            e.model,
            e.version,
            e.check,
            e.state,
            e.severity.label,
            _num(e.result.p_value),
            _num(e.result.effect_size),
        )
        for e in events
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows])


_LOG_COLUMNS = f"""\
the log: CSV with a header row, or JSON lines (one object per line); one row per prediction, columns:
  timestamp         Unix seconds or ISO 8601 (no zone means UTC)
  model_name        the model
  model_version     its version
  latency_seconds   end-to-end latency, seconds
  status            success (or ok) / error (or failure)
  confidence        top-class probability, 0-1; empty when there is none
optional, for accuracy_drop:
  correct           1/0 (or true/false): whether the prediction was right
  label, prediction the true label and the predicted one (right when equal)
  prediction_id     what a --labels file's label names
optional, for a generative model's ttft_shift, tpot_shift, output_length_drift (empty: not a generation):
  ttft_s            time to first token, seconds
  tpot_s            time per output token, seconds
  output_tokens     output tokens of the response
e.g.
  {",".join(REQUIRED)}
  2026-12-01T10:00:00Z,fraud,v2,0.012,success,0.93
A row that breaks any of these is reported with its line number and skipped."""


def _replay_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="prediction log: CSV or JSON lines")
    p.add_argument(
        "--baseline",
        metavar="FILE",
        help="a log in the same format, or a baseline-metrics.json (default: learn it from the log's start)",
    )
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    p.add_argument(
        "--labels",
        metavar="FILE",
        help="delayed labels: timestamp (arrival), prediction_id, correct or label; joined to the log's prediction_id",
    )


def detect(argv: list[str] | None = None) -> int:
    """Backtest the degradation detectors on a prediction log: every detection, with the row that raised it."""
    p = argparse.ArgumentParser(prog="modeltel detect", description=detect.__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    _replay_args(
        sub.add_parser(
            "replay",
            help="replay a prediction log through the collector's detectors",
            description="Replay a prediction log through the collector's detectors and print every detection.",
            epilog=_LOG_COLUMNS,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    args = p.parse_args(argv)
    try:
        baselines = load_baselines(args.baseline) if args.baseline else None
    except (OSError, ValueError) as exc:
        print(f"modeltel detect: --baseline {args.baseline}: {exc}", file=sys.stderr)
        return 2
    try:
        labels = read_labels(args.labels) if args.labels else ()
        result = replay(read_log(args.file), baselines=baselines, labels=labels, labels_file=args.labels or "")
    except OSError as exc:
        print(f"modeltel detect: {exc.filename or args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for bad in result.bad:
        print(f"{bad.file or args.file}:{bad.line}: skipped: {bad.reason}", file=sys.stderr)
    notes = result.notes()
    for note in notes:
        print(f"modeltel detect: {note}", file=sys.stderr)
    if args.format == "json":
        bad = [{"file": b.file or args.file, "line": b.line, "reason": b.reason} for b in result.bad]
        labels = {"joined": result.labels_joined, "unknown": result.unknown_labels, "evicted": result.evicted}
        doc = {"detections": [e.as_dict() for e in result.events], "bad_rows": bad, "notes": notes,
               "labels": labels, "models": result.models()}  # fmt: skip
        print(dumps(doc, indent=2))
    else:
        print(_table(result.events) if result.events else "no detections")
    return 0


def health(argv: list[str] | None = None) -> int:
    """Each model's health: healthy or degraded, the worst severity, and every check's details."""
    p = argparse.ArgumentParser(prog="modeltel health", description=health.__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--collector", metavar="URL", help="a running collector, e.g. http://127.0.0.1:9464")
    source.add_argument("--log", metavar="FILE", help="a prediction log to judge instead (CSV or JSON lines)")
    p.add_argument("--baseline", metavar="FILE", help="with --log: log or baseline-metrics.json (default: its start)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    args = p.parse_args(argv)
    try:
        if args.collector:
            with urllib.request.urlopen(args.collector.rstrip("/") + "/metrics", timeout=10) as resp:
                report = report_from_metrics(resp.read().decode())
        else:
            baselines = load_baselines(args.baseline) if args.baseline else None
            report = health_report(replay(read_log(args.log), baselines=baselines).engine)
    except (OSError, ValueError) as exc:
        print(f"modeltel health: {exc}", file=sys.stderr)
        return 2
    print(dumps(report, indent=2) if args.format == "json" else render_health(report))
    return 1 if any(m["overall_health"] == "degraded" for m in report["models"]) else 0


def baseline(argv: list[str] | None = None) -> int:
    """Capture or check baseline-metrics.json: what normal looks like for each model version."""
    p = argparse.ArgumentParser(prog="modeltel baseline", description=baseline.__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("capture", help="write baseline-metrics.json from a prediction log or a collector")
    src = cap.add_mutually_exclusive_group(required=True)
    src.add_argument("--log", metavar="FILE", help="prediction log (CSV or JSON lines)")
    src.add_argument("--collector", metavar="URL", help="a modeltel collector: what its /metrics adds over --window")
    src.add_argument("--prometheus", metavar="URL", help="Prometheus: increase() over the last --window seconds")
    cap.add_argument("--window", type=float, default=300.0, help="seconds to watch or look back (default 300)")
    cap.add_argument("--token", default="", help="with --collector: its auth_token, when /metrics needs it")
    cap.add_argument("--out", metavar="FILE", default="baseline-metrics.json", help="(default baseline-metrics.json)")
    chk = sub.add_parser("check", help="validate a baseline-metrics.json; exit 1 naming every problem")
    chk.add_argument("file", metavar="FILE")
    args = p.parse_args(argv)
    try:
        if args.command == "check":
            doc = load(args.file)
            print(f"{args.file}: valid ({len(doc['models'])} model versions)")
            return 0
        if args.prometheus:
            doc = capture_prometheus(args.prometheus, args.window)
            if not doc["models"]:
                raise ValueError(f"no predictions in {args.prometheus} over the last {args.window:g} s")
        else:
            doc = _capture_collector(args) if args.collector else _capture_log(args.log)
        save(doc, args.out)
    except (OSError, ValueError) as exc:
        print(f"modeltel baseline: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {', '.join(m['model_name'] + ' ' + m['model_version'] for m in doc['models'])}")
    return 0


def _capture_log(path: str) -> dict:
    rows = list(read_log(path))
    for bad in (r for r in rows if isinstance(r, BadRow)):
        print(f"{path}:{bad.line}: skipped: {bad.reason}", file=sys.stderr)
    return capture(rows)


def _capture_collector(args: argparse.Namespace) -> dict:
    """Two scrapes ``--window`` seconds apart; an empty result (no traffic) is an error, not an empty file."""
    start, before = time.time(), scrape(args.collector, args.token)
    print(f"watching {args.collector}/metrics for {args.window:g} s", file=sys.stderr)
    time.sleep(args.window)
    doc = capture_scraped(before, scrape(args.collector, args.token), (start, time.time()))
    if not doc["models"]:
        raise ValueError(f"no predictions at {args.collector} over {args.window:g} s: nothing to baseline")
    return doc


def evidence(argv: list[str] | None = None) -> int:
    """Build the monitoring spec's evidence package from the running system and check its quality gates."""
    p = argparse.ArgumentParser(prog="modeltel evidence", description=evidence.__doc__)
    p.add_argument("--out", metavar="DIR", required=True, help="where evidence/protocol-22-... is written")
    p.add_argument("--collector", metavar="URL", help="the collector's /metrics base URL, e.g. http://127.0.0.1:9464")
    p.add_argument("--prometheus", metavar="URL", help="Prometheus base URL (targets, rules, SLO compliance)")
    p.add_argument("--alertmanager", metavar="URL", help="Alertmanager base URL (a test alert is posted)")
    p.add_argument("--baseline", metavar="FILE", help="baseline-metrics.json to include and check")
    p.add_argument("--repo", metavar="DIR", default=".", help="checkout with alerts/, dashboards/ (default .)")
    args = p.parse_args(argv)
    src = Sources(
        Path(args.repo),
        args.collector,
        args.prometheus,
        args.alertmanager,
        Path(args.baseline) if args.baseline else None,
    )
    try:
        gates = build(Path(args.out), src)
    except OSError as exc:
        print(f"modeltel evidence: {exc}", file=sys.stderr)
        return 2
    for g in gates:
        print(f"{'PASS' if g.passed else 'FAIL'}  {g.gate} / {g.check}: {g.evidence}")
    print(f"wrote {Path(args.out) / PACKAGE}")
    return 0 if all(g.passed for g in gates) else 1
