"""Mean time to detect: from a fault injected into a served model to the notification at the receiver.

Runs the loopback alert stack (real Prometheus and Alertmanager with the generated rules and the
production route timing, a modeltel collector, the iris example under paced load) with a 5 s scrape,
evaluation and SDK export interval, injects a latency regression and then an error burst, and prints,
for every alert that reaches a receiver within ``--wait`` seconds of a fault, the time from the fault.

    python benchmarks/mttd.py [--interval 5s] [--wait 150] [--rate 40]

Prometheus starts empty, so the long burn-rate windows hold only this run: a latency page (72 % of the
1 h window slow) comes sooner than it would after an hour of healthy traffic. The seed's threshold
alerts keep their ``for:`` (2-5 min), so they arrive later than the burn-rate pages, as printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "sdk"), str(ROOT / "collector")]

from modeltel.cli.alertstack import AlertStack, missing_binaries  # noqa: E402
from modeltel.generators.alertmanager import PRODUCTION_TIMING  # noqa: E402

FAULTS = {
    "latency regression (+300 ms in inference)": ({"latency_s": 0.3}, ("Latency", "prediction_latency_slo")),
    "error burst (30 % of predictions fail)": (
        {"error_fraction": 0.3},
        ("Error", "availability_slo", "error_rate_slo"),
    ),
}


def _related(alert: dict, words: tuple[str, ...]) -> bool:
    """A burn-rate alert of one of the fault's SLOs, or a threshold alert whose name has one of the words."""
    slo = alert["labels"].get("slo")
    return slo in words if slo else any(w in alert["labels"]["alertname"] for w in words)


def measure(stack: AlertStack, fault: dict, words: tuple[str, ...], wait: float) -> list[tuple[str, str, str, float]]:
    """(alert, severity, receiver, seconds after the fault) for each related alert's first notification."""
    start = stack.inject(**fault)
    seen: dict[tuple[str, str, str], float] = {}
    deadline = start + wait
    while time.monotonic() < deadline:
        time.sleep(1)
        for note in list(stack.webhook.notifications):
            if note.at < start or note.status != "firing":
                continue
            for a in note.alerts:
                if _related(a, words):
                    name = a["labels"]["alertname"] + (f" {a['labels']['slo']}" if "slo" in a["labels"] else "")
                    if "long_window" in a["labels"]:
                        name += f" {a['labels']['long_window']}/{a['labels']['short_window']}"
                    seen.setdefault((name, a["labels"]["severity"], note.receiver), note.at - start)
    stack.inject()  # heal
    return sorted(((n, s, r, t) for (n, s, r), t in seen.items()), key=lambda row: row[3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", default="5s", help="scrape, evaluation and SDK export interval (default 5s)")
    parser.add_argument("--wait", type=float, default=150.0, help="seconds to collect notifications per fault")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second (default 40)")
    parser.add_argument("--warmup", type=float, default=20.0, help="healthy seconds before the first fault")
    args = parser.parse_args()
    if missing_binaries():
        print(f"mttd: install the Debian packages {' '.join(missing_binaries())}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="modeltel-mttd-") as tmp:
        with AlertStack(Path(tmp), interval=args.interval, timing=PRODUCTION_TIMING) as stack:
            total = args.warmup + len(FAULTS) * (args.wait + 5) + 10
            stack.load(total, rate=args.rate)
            print(
                f"MTTD, {args.interval} scrape/evaluation/export interval, {args.rate:g} req/s, production", flush=True
            )
            print(f"Alertmanager timing ({PRODUCTION_TIMING['critical_wait']} critical group wait)")
            time.sleep(args.warmup)
            for fault_name, (fault, words) in FAULTS.items():
                rows = measure(stack, fault, words, args.wait)
                print(f"\n{fault_name}:")
                print(f"  {'alert':44} {'severity':9} {'receiver':14} {'MTTD':>7}")
                for name, severity, receiver, seconds in rows:
                    print(f"  {name:44} {severity:9} {receiver:14} {seconds:6.1f}s")
                if not rows:
                    print(f"  nothing within {args.wait:.0f} s")
                sys.stdout.flush()
                time.sleep(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
