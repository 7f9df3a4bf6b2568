"""The collector's metric history: increases per sample, resets, sums across workers, and its bounds."""

from __future__ import annotations

import math
import time

import pytest

from modeltel import taxonomy as tx
from modeltel.promql import histogram_quantile
from modeltel_collector.serve.console.views import PREDICTIONS, STAGE_LATENCY, Views
from modeltel_collector.store.history import MetricHistory
from modeltel_collector.store.metrics import MetricStore
from tests.collector_helpers import meter_provider, metric_exporter, running_collector

MODEL = {tx.ATTR_MODEL_NAME: "m", tx.ATTR_MODEL_VERSION: "1"}
T0 = time.time() + 1000  # after the sample the collector takes when it starts


def quiet_collector(**overrides):
    """A collector whose sampler thread never fires during a test: the test calls sample() with its own clock."""
    return running_collector(console_step_s=5.0, console_history_s=60.0, **overrides)


def predictions(mp, n: int, status: str = tx.STATUS_SUCCESS) -> None:
    mp.get_meter(tx.METER_NAME).create_counter(tx.PREDICTIONS.otel_name, unit=tx.PREDICTIONS.unit).add(
        n, {**MODEL, tx.ATTR_STATUS: status}
    )
    mp.force_flush()


def test_rows_hold_the_increase_since_the_previous_sample_and_a_drop_is_a_reset():
    with quiet_collector() as c:
        h = c.history
        h.sample(T0)
        first = meter_provider(metric_exporter(c, "http"))
        predictions(first, 10)
        c.flush()
        h.sample(T0 + 5)
        predictions(first, 5)
        c.flush()
        h.sample(T0 + 10)
        first.shutdown()
        restarted = meter_provider(metric_exporter(c, "http"))  # same worker, counters start again at 0
        predictions(restarted, 3)
        c.flush()
        h.sample(T0 + 15)
        restarted.shutdown()
        times, groups = h.query(PREDICTIONS, {"model_name": "m"}, ("status",), since=T0 + 1)
        assert times[-3:] == [T0 + 5, T0 + 10, T0 + 15]
        assert [r[0] for r in groups[0].rows[-3:]] == [10, 5, 3]
        row = Views(h).models(window_s=10, now=T0 + 15)["models"][0]
        assert row["requests_per_s"] == pytest.approx(8 / 10)  # 5 + 3 in the last two 5 s intervals
        assert row["error_ratio"] == 0


def test_workers_add_up_and_quantiles_follow_prometheus():
    with quiet_collector() as c:
        h = c.history
        h.sample(T0)
        for instance, values in (("w1", [0.004] * 90), ("w2", [0.2] * 10)):
            mp = meter_provider(metric_exporter(c, "http"), instance=instance)
            hist = mp.get_meter(tx.METER_NAME).create_histogram(
                tx.STAGE_LATENCY.otel_name, unit="s", explicit_bucket_boundaries_advisory=tx.LATENCY_BUCKETS_SECONDS
            )
            for v in values:
                hist.record(v, {**MODEL, tx.ATTR_STAGE: "inference"})
            mp.shutdown()
        c.flush()
        h.sample(T0 + 5)
        _, groups = h.query(STAGE_LATENCY, {"model_name": "m"}, ("stage",))
        assert len(groups) == 1  # w1 and w2 summed into one track per stage
        row = groups[0].rows[-1]
        assert sum(row[:-1]) == 100 and row[-1] == pytest.approx(90 * 0.004 + 10 * 0.2, rel=1e-5)
        doc = Views(h).model("m", "1")
        inference = next(s for s in doc["stages"] if s["stage"] == "inference")
        assert inference["p50"][-1] == pytest.approx(histogram_quantile(0.5, groups[0].bounds, row[:-1]), rel=1e-5)
        assert 0.0025 < inference["p50"][-1] <= 0.005  # in the 2.5-5 ms bucket, where 90% of values are
        assert 0.15 < inference["p95"][-1] <= 0.2  # the slow worker's bucket
        assert inference["rate"][-1] == pytest.approx(100 / 5)


def test_histogram_quantile_interpolates_like_prometheus():
    assert histogram_quantile(0.5, (0.1, 0.2, 0.5), [10, 10, 0, 0]) == pytest.approx(0.1)
    assert histogram_quantile(0.75, (0.1, 0.2, 0.5), [10, 10, 0, 0]) == pytest.approx(0.15)
    assert histogram_quantile(0.99, (0.1, 0.2, 0.5), [0, 0, 0, 5]) == 0.5  # +Inf: the last finite bound
    assert math.isnan(histogram_quantile(0.5, (0.1,), [0, 0]))


def test_memory_is_preallocated_per_track_capped_and_freed_when_silent():
    with quiet_collector(console_max_tracks=3) as c:
        h = c.history
        assert h.points == 12  # 60 s at 5 s
        for i in range(5):
            mp = meter_provider(metric_exporter(c, "http"), instance=f"w{i}")
            counter = mp.get_meter(tx.METER_NAME).create_counter(tx.PREDICTIONS.otel_name)
            counter.add(1, {tx.ATTR_MODEL_NAME: f"model-{i}", tx.ATTR_MODEL_VERSION: "1", tx.ATTR_STATUS: "ok"})
            mp.shutdown()
            c.flush()
            h.sample(T0 + 5 * i)
        described = h.describe()
        assert described["tracks"] == 3 and described["dropped_tracks"] == 1  # model-4, new in the last interval
        assert described["bytes"] == 12 * 8 + 3 * 12 * 4  # sample times (float64) + 3 counter tracks (float32)
        assert described["bytes"] <= described["max_bytes"]
        for i in range(5, 30):  # the ring wraps, and the silent tracks go once the whole ring is silence
            h.sample(T0 + 5 * i)
        assert len(h.times()) == 12
        assert h.describe()["tracks"] == 0


def test_history_refuses_a_ring_shorter_than_one_step():
    with pytest.raises(ValueError, match="history_s >= step_s"):
        MetricHistory(MetricStore(), (), history_s=1, step_s=5)
