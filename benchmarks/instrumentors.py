"""Added cost per wrapped call, for each instrumentor: µs over the bare call, and over the same work by hand.

    python benchmarks/instrumentors.py [--calls N] [--rounds N] [--only kserve,torch]

Each target's call is timed bare, then with its instrumentor on, in two modes: ``metrics`` (trace not
sampled: the histogram sample only, the production default at low sampling rates) and ``traced`` (a
sampled span too, exported nowhere). The calls are deliberately tiny (a 2-row predict, a 4x8 MLP, a
3-wide softmax), so the added µs is what matters and the ratio is the worst case.

"by hand" is the same call with the same stages and prediction written with ``modeltel.stage`` /
``modeltel.prediction`` (and the same confidences recorded): the wrapper's own cost is the difference,
``wrapper µs`` below (goal: at most 2 µs, metrics-only and traced). Clock: this process's CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import modeltel
from modeltel import taxonomy as tx

warnings.filterwarnings("ignore")


def per_call_us(fn: Callable[[], Any], calls: int, repeats: int = 5) -> float:
    for _ in range(min(calls // 10, 500)):
        fn()
    best = float("inf")
    for _ in range(repeats):
        gc.disable()
        t = time.process_time()  # CPU time: other load on the shared machine does not count
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - t) / calls)
        gc.enable()
    return best * 1e6


def init(mode: str) -> None:
    modeltel.shutdown()
    modeltel.init(
        set_global=False,
        traces_exporter="none",
        metrics_exporter="none",
        host_metrics=False,
        gpu_metrics=False,
        sampler="always_off" if mode == "metrics" else "always_on",
    )


Target = tuple[Any, Callable[[], Any], Callable[[], Any] | None]  # (instrumentor, call, the same by hand)


def _sklearn() -> Target:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from modeltel.instrumentors.sklearn import SklearnInstrumentor

    x, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    rows = x[:2]

    def by_hand() -> Any:
        with modeltel.stage("inference"):
            result = clf.predict_proba(rows)
        for value in result.max(axis=1):
            modeltel.record_confidence(float(value))
        return result

    return SklearnInstrumentor(), lambda: clf.predict_proba(rows), by_hand


def _torch() -> Target:
    import torch

    from modeltel.instrumentors.torch import TorchInstrumentor

    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    t_in = torch.zeros(2, 4)

    def call() -> Any:
        with torch.no_grad():
            return net(t_in)

    batch = {tx.SPAN_ATTR_BATCH_SIZE: 2}

    def by_hand() -> Any:  # what the wrapper records: the batch size on the span (set_batch_size adds a sample)
        with torch.no_grad(), modeltel.stage("inference", attributes=batch):
            return net(t_in)

    return TorchInstrumentor(), call, by_hand


def _onnxruntime() -> Target:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from modeltel.instrumentors.onnxruntime import OnnxRuntimeInstrumentor

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["probabilities"], axis=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"x": np.zeros((2, 3), dtype=np.float32)}

    def by_hand() -> Any:
        with modeltel.stage("inference"):
            result = sess.run(None, feed)
        for value in result[0].max(axis=1):
            modeltel.record_confidence(float(value))
        return result

    return OnnxRuntimeInstrumentor(), lambda: sess.run(None, feed), by_hand


def _kserve() -> Target:
    from kserve import Model

    from modeltel.instrumentors.kserve import KServeInstrumentor

    class Echo(Model):
        def preprocess(self, p, h=None):
            return p

        def predict(self, p, h=None):
            return p

        def postprocess(self, r, h=None):
            return r

    class EchoByHand(Model):
        def preprocess(self, p, h=None):
            with modeltel.stage("preprocess"):
                return p

        def predict(self, p, h=None):
            with modeltel.stage("inference"):
                return p

        def postprocess(self, r, h=None):
            with modeltel.stage("postprocess"):
                return r

    m, by_hand_model = Echo("echo"), EchoByHand("echo")
    m.ready = by_hand_model.ready = True
    loop = asyncio.new_event_loop()

    async def by_hand() -> Any:
        with modeltel.prediction("echo"):
            return await by_hand_model({})

    return KServeInstrumentor(), lambda: loop.run_until_complete(m({})), lambda: loop.run_until_complete(by_hand())


def _litserve() -> Target:
    import litserve as ls

    from modeltel.instrumentors.litserve import LitServeInstrumentor

    class Api(ls.LitAPI):
        def decode_request(self, r):
            return r

        def predict(self, x):
            return x

        def encode_response(self, o):
            return o

    def make_lit() -> Callable[[], Any]:
        api = Api()
        return lambda: api.encode_response(api.predict(api.decode_request({})))

    return LitServeInstrumentor(), make_lit, None


TARGETS: dict[str, tuple[str, Callable[[], Target]]] = {  # --only name: (row, what builds it)
    "sklearn": ("sklearn predict_proba", _sklearn),
    "torch": ("torch nn.Module (3 submodules)", _torch),
    "onnxruntime": ("onnxruntime run", _onnxruntime),
    "kserve": ("kserve Model.__call__ (3 stages + prediction)", _kserve),
    "litserve": ("litserve decode+predict+encode", _litserve),
}


def targets(only: list[str] | None = None) -> dict[str, Target]:
    """The targets named in ``only`` (default: all), each skipped when its framework is not installed."""
    out: dict[str, Target] = {}
    for key in only or TARGETS:
        row, build = TARGETS[key]
        try:
            out[row] = build()
        except ImportError as missing:
            print(f"{key}: skipped ({missing})", file=sys.stderr)
    return out


Row = tuple[str, float, dict[str, tuple[float, float, float]]]


def table(calls: int, rounds: int = 5, only: list[str] | None = None) -> list[Row]:
    """(target, bare µs, {mode: (added µs instrumented, added µs by hand, wrapper µs)}) per target and mode.

    Within a mode, the bare call, the same work by hand and the instrumented call take turns, ``rounds``
    times: the added µs are each one's best less the best bare call, and the wrapper's own cost is the
    median over rounds of (instrumented - by hand) in that round, which load on a shared machine moves
    alike (the difference of two bests taken minutes apart moved by several µs)."""
    rows = []
    for name, (instrumentor, fn, hand) in targets(only).items():
        modes = {}
        bare = float("inf")
        for mode in ("metrics", "traced"):
            init(mode)
            best = {"bare": float("inf"), "hand": float("inf"), "wrapped": float("inf")}
            gaps = []
            for _ in range(rounds):
                call = fn() if name.startswith("litserve") else fn  # LitAPI wrappers apply to classes defined before
                best["bare"] = min(best["bare"], per_call_us(call, calls, repeats=1))
                manual = per_call_us(hand, calls, repeats=1) if hand is not None else float("nan")
                best["hand"] = min(best["hand"], manual)
                instrumentor.instrument()
                try:
                    call = fn() if name.startswith("litserve") else fn
                    wrapped = per_call_us(call, calls, repeats=1)
                finally:
                    instrumentor.uninstrument()
                best["wrapped"] = min(best["wrapped"], wrapped)
                gaps.append(wrapped - manual)
            bare = min(bare, best["bare"])
            by_hand = best["hand"] - best["bare"] if hand is not None else float("nan")
            modes[mode] = (best["wrapped"] - best["bare"], by_hand, statistics.median(gaps))
        rows.append((name, bare, modes))
    modeltel.shutdown()
    return rows


def print_table(rows: list[Row]) -> None:
    print("µs per call of CPU time, garbage collector off (the wrappers' own cost; hotpath.py counts the GC);")
    print("'wrapper' = instrumented minus the same work by hand, median of the rounds (goal <= 2 µs)")
    cols = ("+metrics", "hand", "wrapper", "+traced", "hand", "wrapper")
    print(f"{'target':48} {'bare':>7} " + " ".join(f"{c:>{w}}" for c, w in zip(cols, (9, 7, 8, 9, 7, 8), strict=True)))
    for name, bare, modes in rows:
        cells = [f"{name:48} {bare:7.2f}"]
        for added, manual, wrapper in modes.values():
            cells.append(f"{added:9.2f} {manual:7.2f} {wrapper:8.2f}")
        print(" ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5, help="turns of bare / by hand / instrumented per mode")
    parser.add_argument("--only", type=_names, help=f"comma-separated targets to measure alone ({', '.join(TARGETS)})")
    args = parser.parse_args()
    print_table(table(args.calls, args.rounds, args.only))


def _names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in TARGETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown target {', '.join(unknown) or value!r}; one of {', '.join(TARGETS)}")
    return names


if __name__ == "__main__":
    main()
