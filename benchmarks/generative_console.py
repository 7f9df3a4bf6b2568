"""What the console shows for a generative model against what its client measured (issue 25).

An in-process collector; the OpenAI-compatible example server (:mod:`modeltel.examples.openai_server`, the
tiny language model) under ``modeltel run`` exporting to it; ``--requests`` streamed chat completions sent
one after another with httpx. The client times each: TTFT from sending the request to the first SSE
``data:`` chunk carrying content, TPOT as (last content chunk - first) / (content chunks - 1). Once the
collector holds every generation, its figures are read two ways: quantiles over the whole run from the
collector's ``/metrics`` buckets with :func:`modeltel.promql.histogram_quantile` (the function the console
applies to each step of its charts), and the console API's model document (``generation``: its per-step
TTFT and TPOT lines, whose range is printed).

The two sides differ by construction: the server's TTFT counts from the request's arrival (the client's
adds the connection and the request's transfer), and the console interpolates inside the taxonomy's
buckets, so a quantile is only as exact as the bucket that holds it.
Run: ``python benchmarks/generative_console.py [--requests 60] [--max-tokens 16]`` (about a minute,
most of it the server's start).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any

import httpx

from modeltel import taxonomy as tx
from modeltel.cli.loopback import free_port, scrape, stop_process, wait_http
from modeltel.promql import histogram_quantile
from modeltel_collector import Collector

MODEL = "tinylm"
VERSION = "1"
INSTRUMENTS = {"TTFT": tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, "TPOT": tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN}


def start_server(otlp_http: str, port: int) -> subprocess.Popen:
    """The example server under ``modeltel run``, exporting to ``otlp_http`` every half second."""
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_http,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_SERVICE_NAME": "tinylm-bench",
        "MODELTEL_MODEL_NAME": MODEL,
        "MODELTEL_MODEL_VERSION": VERSION,
        "MODELTEL_HOST_METRICS": "false",
    }
    command = [
        sys.executable, "-m", "modeltel.cli", "run", "--", sys.executable, "-m", "uvicorn",
        "modeltel.examples.openai_server:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def timed_stream(client: httpx.Client, url: str, max_tokens: int) -> tuple[float, float | None]:
    """One streamed chat completion: the client's (TTFT, TPOT) in seconds; TPOT None under two tokens."""
    body = {
        "model": MODEL, "messages": [{"role": "user", "content": "tell me about tokens"}],
        "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
    }  # fmt: skip
    stamps: list[float] = []
    sent = time.perf_counter()
    with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[len("data: ") :])["choices"]
            if choices and "content" in choices[0]["delta"]:
                stamps.append(time.perf_counter())
    if not stamps:
        raise SystemExit("generative_console: a stream carried no content")
    tpot = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else None
    return stamps[0] - sent, tpot


def buckets(families: dict[str, Any], instrument: tx.Instrument) -> tuple[float, list[float]]:
    """The instrument's observation count and per-bucket counts (the last +Inf), summed over its series."""
    cumulative: dict[float, float] = {}
    family = families.get(instrument.prometheus_name)
    for s in family.samples if family is not None else []:
        if s.name == instrument.prometheus_name + "_bucket" and s.labels.get(tx.ATTR_MODEL_NAME, MODEL) == MODEL:
            le = float(s.labels["le"])
            cumulative[le] = cumulative.get(le, 0.0) + s.value
    ordered = [cumulative.get(b, 0.0) for b in (*instrument.buckets, float("inf"))]
    return ordered[-1], [b - a for a, b in zip([0.0, *ordered], ordered, strict=False)]


def wait_for_counts(listen: str, expected: dict[str, int], timeout: float = 30.0) -> dict[str, Any]:
    """The collector's families once every instrument has counted its ``expected`` observations."""
    deadline = time.monotonic() + timeout
    while True:
        families = scrape(listen)
        if all(buckets(families, INSTRUMENTS[k])[0] >= n for k, n in expected.items()):
            return families
        if time.monotonic() > deadline:
            raise SystemExit(f"generative_console: the collector did not count {expected} within {timeout:.0f} s")
        time.sleep(0.25)


def console_ranges(listen: str) -> dict[str, str]:
    """From the console's model document: each chart's per-step p50 and p95 lines as 'min..max ms'."""
    url = f"{listen}/api/v1/console/model?name={MODEL}&version={VERSION}"
    with urllib.request.urlopen(url, timeout=10) as response:
        generation = json.load(response)["generation"]
    if generation is None:
        raise SystemExit("generative_console: the console's model document has no generation charts")
    out = {}
    for name, key in (("TTFT", "ttft"), ("TPOT", "tpot")):
        for q in ("p50", "p95"):
            values = [v * 1e3 for v in generation[key][q] if v is not None]
            out[f"{name} {q}"] = f"{min(values):.1f}..{max(values):.1f}" if values else "n/a"
    return out


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def report(
    client: dict[str, list[float]],
    families: dict[str, Any],
    before: dict[str, tuple[float, list[float]]],
    ranges: dict[str, str],
) -> None:
    """The table; the collector's side less ``before`` (the warm-up's buckets), so both count the same run."""
    print(f"{'metric':<7}| client p50 | client p95 | console p50 | console p95 | console chart p50 / p95 per step")
    for name, instrument in INSTRUMENTS.items():
        counts = [a - b for a, b in zip(buckets(families, instrument)[1], before[name][1], strict=True)]
        cells = [quantile(client[name], q) * 1e3 for q in (0.5, 0.95)]
        cells += [histogram_quantile(q, instrument.buckets, counts) * 1e3 for q in (0.5, 0.95)]
        figures = " | ".join(f"{c:8.1f} ms" for c in cells)
        print(f"{name:<7}| {figures} | {ranges[f'{name} p50']} / {ranges[f'{name} p95']} ms")
    print(
        "console: histogram_quantile over the collector's buckets for the whole run (what the console computes\n"
        "per step), interpolated inside the taxonomy's buckets; the server's TTFT counts from the request's\n"
        "arrival, the client's from sending it (connection and transfer included)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    collector = Collector(otlp_http="127.0.0.1:0", otlp_grpc="127.0.0.1:0", listen="127.0.0.1:0", console_step_s=1.0)
    collector.start()
    server: subprocess.Popen | None = None
    try:
        port = free_port()
        server = start_server(collector.urls["otlp_http"], port)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", 120.0, server)
        client: dict[str, list[float]] = {"TTFT": [], "TPOT": []}
        with httpx.Client(timeout=60.0) as http:
            timed_stream(http, url, args.max_tokens)  # warm-up: the first answer pays the model's first run
            warm = wait_for_counts(collector.urls["listen"], {"TTFT": 1})
            before = {k: buckets(warm, i) for k, i in INSTRUMENTS.items()}
            for _ in range(args.requests):
                ttft, tpot = timed_stream(http, url, args.max_tokens)
                client["TTFT"].append(ttft)
                if tpot is not None:
                    client["TPOT"].append(tpot)
        expected = {k: int(before[k][0]) + len(client[k]) for k in INSTRUMENTS}
        families = wait_for_counts(collector.urls["listen"], expected)
        time.sleep(1.5)  # one more console step, so its history holds the last generations too
        print(f"{args.requests} streamed chat completions of {args.max_tokens} tokens, one at a time, on {MODEL}")
        report(client, families, before, console_ranges(collector.urls["listen"]))
    finally:
        if server is not None:
            stop_process(server)
        collector.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
