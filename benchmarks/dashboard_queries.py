"""Dashboard load time, measured as query time: every panel query of the three dashboards over a 6 h range.

The seed asks for "dashboard load < 2 s". Grafana's load time is its panel queries' time, so this runs each
panel's queries as Grafana sends them (variables set to "All", ``$__rate_interval`` = 1m, ~1000 points per
panel) against a real Prometheus that holds 6 hours of data, and prints, per dashboard, the total (every query
one after another: the most Grafana can wait, as it runs panels in parallel) and the slowest query (the
least), each the median of ``--repeat`` runs.

The history: 6 h of the series the SDK exports for ``--instances`` workers of one model (every instrument of
the taxonomy, every stage, status, bucket; 15 s scrapes), written with ``promtool tsdb create-blocks-from
openmetrics`` into the TSDB of the loopback stack (``modeltel.cli.alertstack``: Prometheus with the generated
rules, a modeltel collector, the iris example server under load), which then adds live data for ``--live``
seconds. Recording rules run live only, so the SLO panels read minutes of recorded series, not 6 hours.

    python benchmarks/dashboard_queries.py [--instances 4] [--repeat 5] [--live 30]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "sdk"), str(ROOT / "collector"), str(ROOT)]

from modeltel import taxonomy as tx  # noqa: E402
from modeltel.cli.alertstack import AlertStack, missing_binaries  # noqa: E402
from tests.panelqueries import load_boards, run_panel_queries  # noqa: E402

HOURS = 6
SCRAPE_S = 15
MODEL = {"model_name": "bench-model", "model_version": "2.0.0", "job": "bench-server"}


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in kv.items()) + "}"


def _cdf(x: float, median: float, sigma: float = 0.6) -> float:
    return 0.5 * (1 + math.erf(math.log(max(x, 1e-9) / median) / (sigma * math.sqrt(2))))


def _histogram(name: str, buckets: tuple, labels: dict, steps: list[tuple[int, float, float]]) -> list[str]:
    """Cumulative buckets of a lognormal distribution around a drifting median: (timestamp, count, median)."""
    lines, count, total, cum = [], 0.0, 0.0, [0.0] * len(buckets)
    for ts, n, median in steps:
        count += n
        total += n * median * 1.2
        cum = [c + n * _cdf(b, median) for c, b in zip(cum, buckets, strict=True)]
        for b, c in zip(buckets, cum, strict=True):
            lines.append(f"{name}_bucket{_labels(**labels, le=f'{b:g}')} {c:.3f} {ts}")
        lines.append(f"{name}_bucket{_labels(**labels, le='+Inf')} {count:.3f} {ts}")
        lines.append(f"{name}_sum{_labels(**labels)} {total:.6f} {ts}")
        lines.append(f"{name}_count{_labels(**labels)} {count:.3f} {ts}")
    return lines


def _sample(inst: tx.Instrument, value: float, ts: int, **labels: str) -> str:
    return f"{inst.prometheus_series}{_labels(**labels)} {value:.3f} {ts}"


def history(instances: int, end: int, seed: int = 1) -> str:
    """OpenMetrics text of 6 h of SDK series for one model on ``instances`` workers (families not interleaved)."""
    rng = random.Random(seed)
    stamps = list(range(end - HOURS * 3600, end, SCRAPE_S))
    load = {
        i: [(ts, rng.uniform(150, 450), 0.02 + 0.01 * math.sin(ts / 1800)) for ts in stamps] for i in range(instances)
    }
    families: dict[str, tuple[str, list[str]]] = {}

    def add(inst: tx.Instrument, kind: str, lines: list[str]) -> None:
        families.setdefault(inst.prometheus_name, (kind, []))[1].extend(lines)

    for i, steps in load.items():
        base = {**MODEL, "instance": f"worker-{i}"}
        model = {k: base[k] for k in ("model_name", "model_version", "job", "instance")}
        add(tx.PREDICTION_LATENCY, "histogram", _histogram(tx.PREDICTION_LATENCY.prometheus_name,
            tx.LATENCY_BUCKETS_SECONDS, model, steps))  # fmt: skip
        for stage, share in ((tx.STAGE_PREPROCESS, 0.15), (tx.STAGE_INFERENCE, 0.7), (tx.STAGE_POSTPROCESS, 0.1)):
            add(tx.STAGE_LATENCY, "histogram", _histogram(tx.STAGE_LATENCY.prometheus_name, tx.LATENCY_BUCKETS_SECONDS,
                {**model, "stage": stage}, [(t, n, m * share) for t, n, m in steps]))  # fmt: skip
        add(tx.PREDICTION_CONFIDENCE, "histogram", _histogram(tx.PREDICTION_CONFIDENCE.prometheus_name,
            tx.CONFIDENCE_BUCKETS, model, [(t, n, 0.9) for t, n, _ in steps]))  # fmt: skip
        add(tx.BATCH_SIZE, "histogram", _histogram(tx.BATCH_SIZE.prometheus_name, tx.BATCH_SIZE_BUCKETS, model,
            [(t, n / 8, 8) for t, n, _ in steps]))  # fmt: skip
        ok = err = 0.0
        for ts, n, _ in steps:
            ok, err = ok + n * 0.99, err + n * 0.01
            add(tx.PREDICTIONS, "counter", [_sample(tx.PREDICTIONS, ok, ts, **model, status="success")])
            add(tx.PREDICTIONS, "counter", [_sample(tx.PREDICTIONS, err, ts, **model, status="error")])
            add(tx.ERRORS, "counter", [_sample(tx.ERRORS, err, ts, **model, error_type="ValueError")])
            add(tx.ONLINE_ACCURACY, "gauge", [_sample(tx.ONLINE_ACCURACY, rng.uniform(0.86, 0.95), ts, **model)])
            for resource in ("cpu", "memory"):
                labels = {k: model[k] for k in ("model_name", "job", "instance")}
                usage = rng.uniform(20, 80)
                add(
                    tx.RESOURCE_USAGE,
                    "gauge",
                    [_sample(tx.RESOURCE_USAGE, usage, ts, **labels, resource_type=resource)],
                )
    out = []
    for name, (kind, lines) in families.items():
        out.append(f"# TYPE {name} {kind}")
        out.extend(_sorted_by_series(lines))
    return "\n".join([*out, "# EOF", ""])


def _sorted_by_series(lines: list[str]) -> list[str]:
    """Each series' samples together and in time order, as promtool's backfill expects."""
    return sorted(lines, key=lambda line: (line.rsplit(" ", 2)[0], int(line.rsplit(" ", 1)[1])))


def _backfill(workdir: Path, instances: int, end: int) -> int:
    text = history(instances, end)
    source = workdir / "history.om"
    source.write_text(text)
    tsdb = workdir / "tsdb"
    tsdb.mkdir(parents=True, exist_ok=True)
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
                   check=True, capture_output=True)  # fmt: skip
    source.unlink()
    return text.count("\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=4, help="workers of the backfilled model (default 4)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per query; medians are printed (default 5)")
    parser.add_argument("--live", type=float, default=30, help="seconds of live load before querying (default 30)")
    args = parser.parse_args()
    if missing := missing_binaries():
        print(f"dashboard_queries: install {' '.join(missing)}", file=sys.stderr)
        return 2
    boards = load_boards(ROOT / "dashboards")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        samples = _backfill(workdir, args.instances, int(time.time()) - 60)
        print(f"backfilled {samples} samples (6 h, {args.instances} workers) in {time.perf_counter() - t0:.1f} s")
        with AlertStack(workdir, interval="1s") as stack:
            stack.load(args.live, rate=40)
            time.sleep(args.live)
            end = time.time()
            runs = [
                run_panel_queries(stack.prometheus_url, boards, start=end - HOURS * 3600, end=end, rate_interval="1m")
                for _ in range(args.repeat)
            ]
    _report(runs)
    return 0


def _report(runs: list) -> None:
    failed = [r for r in runs[0] if r.error]
    for r in failed:
        print(f"FAILED {r.dashboard} / {r.panel}: {r.error}")
    by_query: dict[tuple, list[float]] = {}
    series: dict[tuple, int] = {}
    for run in runs:
        for i, r in enumerate(run):
            by_query.setdefault((r.dashboard, r.panel, i), []).append(r.seconds)
            series[(r.dashboard, r.panel, i)] = r.series
    print(f"\n{'dashboard':18} {'queries':>7} {'total ms':>9} {'slowest ms':>10}  slowest panel")
    for uid in dict.fromkeys(k[0] for k in by_query):
        medians = {k: statistics.median(v) for k, v in by_query.items() if k[0] == uid}
        slowest = max(medians, key=medians.get)
        total = sum(medians.values())
        print(f"{uid:18} {len(medians):7d} {total * 1000:9.1f} {medians[slowest] * 1000:10.1f}  {slowest[1]}")
    empty = sum(1 for v in series.values() if not v)
    print(f"\n{len(series)} queries, {empty} returned no series; target: dashboard load < 2000 ms")


if __name__ == "__main__":
    sys.exit(main())
