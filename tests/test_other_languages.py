"""A Node.js service as a first-class client: examples/node sends modeltel's spans and series with the
OpenTelemetry JS SDK, and the collector's quantiles match what it recorded (docs/other-languages.md).

``npm ci`` installs the example's packages into a cache folder keyed by its lock file. Without npm or
the registry the test skips, except under ``CI=true``, where CI is expected to have both and it fails.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from modeltel import taxonomy as tx
from modeltel.promql import histogram_quantile
from tests.collector_helpers import http_get, running_collector, scrape

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "node"
SOURCE = (EXAMPLE / "predict.js").read_text()
DOC = (Path(__file__).resolve().parents[1] / "docs" / "other-languages.md").read_text()


def _js_list(name: str) -> tuple[float, ...]:
    body = re.search(rf"const {name} = \[(.*?)\];", SOURCE, re.S)[1]
    return tuple(float(v) for v in body.replace("\n", " ").split(",") if v.strip())


def test_the_example_and_the_doc_use_the_taxonomys_names_units_and_buckets() -> None:
    assert _js_list("LATENCY_BUCKETS_SECONDS") == tx.LATENCY_BUCKETS_SECONDS
    assert _js_list("CONFIDENCE_BUCKETS") == tx.CONFIDENCE_BUCKETS
    assert _js_list("BATCH_SIZE_BUCKETS") == tx.BATCH_SIZE_BUCKETS
    for inst in (tx.PREDICTION_LATENCY, tx.STAGE_LATENCY, tx.PREDICTIONS, tx.ERRORS, tx.PREDICTION_CONFIDENCE,
                 tx.BATCH_SIZE):  # fmt: skip
        assert re.search(rf"'{re.escape(inst.otel_name)}', \{{ unit: '{re.escape(inst.unit)}'", SOURCE), inst
        assert f"`{inst.otel_name}`" in DOC and f"`{inst.unit}`" in DOC and f"`{inst.prometheus_series}" in DOC
    for key in (tx.SPAN_ATTR_KIND, tx.SPAN_ATTR_STAGE, tx.ATTR_MODEL_NAME, tx.ATTR_MODEL_VERSION, tx.ATTR_STATUS,
                tx.ATTR_ERROR_TYPE, tx.ATTR_STAGE):  # fmt: skip
        assert f"'{key}'" in SOURCE and f"`{key}`" in DOC, key
    for buckets in (tx.LATENCY_BUCKETS_SECONDS, tx.CONFIDENCE_BUCKETS, tx.BATCH_SIZE_BUCKETS):
        assert ", ".join(f"{b:g}" for b in buckets) in DOC


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI has npm and the registry)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node_example() -> Path:
    """The example with its packages installed by ``npm ci``, in a cache folder reused while the lock holds."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        _unavailable("npm and node are not installed")
    lock = (EXAMPLE / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modeltel-tests"
    folder = cache / f"node-{hashlib.sha256(lock).hexdigest()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", "predict.js"):
        shutil.copy2(EXAMPLE / name, folder / name)
    if not (folder / "node_modules" / ".package-lock.json").exists():
        proc = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=folder, capture_output=True,
            text=True, timeout=600,
        )  # fmt: skip
        if proc.returncode != 0:
            _unavailable(f"npm ci failed: {proc.stderr.strip()[-500:]}")
    return folder


def _quantiles(families: dict, version: str) -> dict[str, float]:
    """p50/p95/p99 of the example's prediction latency, from the collector's /metrics buckets."""
    family = families[tx.PREDICTION_LATENCY.prometheus_name]["samples"]
    cumulative = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in family.items()
        if name.endswith("_bucket") and dict(labels).get("model_version") == version
    )
    bounds = [le for le, _ in cumulative[:-1]]
    counts = [int(c - p) for (_, c), p in zip(cumulative, [0.0] + [c for _, c in cumulative[:-1]], strict=True)]
    return {f"p{round(q * 100)}": histogram_quantile(q, bounds, counts) for q in (0.5, 0.95, 0.99)}


def _run(folder: Path, collector, version: str, *args: str) -> dict:
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.urls["otlp_http"], "MODEL_VERSION": version}
    proc = subprocess.run(
        ["node", "predict.js", "--count", "400", *args], cwd=folder, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _bucket_width(value: float) -> float:
    bounds = (0.0, *tx.LATENCY_BUCKETS_SECONDS)
    return next(b - a for a, b in itertools.pairwise(bounds) if value <= b)


def test_node_spans_and_series_arrive_and_its_quantiles_match_what_it_recorded(node_example: Path) -> None:
    with running_collector() as collector:
        sent = _run(node_example, collector, "1")
        wrong = _run(node_example, collector, "default-buckets", "--default-buckets")
        families = scrape(collector)
        got = _quantiles(families, "1")
        for q, recorded in sent["recorded"].items():  # within the taxonomy bucket the value falls in
            assert abs(got[q] - recorded) <= _bucket_width(recorded), (q, got, sent["recorded"])
        # the JS SDK's default boundaries are for milliseconds: every latency in seconds is in (0, 5]
        assert _quantiles(families, "default-buckets")["p50"] == pytest.approx(2.5)
        assert wrong["recorded"]["p50"] < 0.03
        predictions = families[tx.PREDICTIONS.prometheus_name]["samples"]
        by_status = {
            dict(labels)["status"]: value
            for (name, labels), value in predictions.items()
            if dict(labels).get("model_version") == "1" and name.endswith("_total")
        }
        assert by_status == {"success": sent["count"] - sent["errors"], "error": sent["errors"]}
        status, _, body = http_get(collector.urls["listen"] + "/api/traces?model=iris-node&limit=1")
        assert status == 200
        (row,) = json.loads(body)["traces"]
        assert set(row["kinds"]) == {tx.SPAN_KIND_PREDICTION, tx.SPAN_KIND_STAGE}
        assert set(row["stages"]) == set(tx.CANONICAL_STAGES)
