from __future__ import annotations

import pytest

import modeltel
from modeltel import taxonomy as tx
from modeltel.testing import Capture
from tests.conftest import parent_of

torch = pytest.importorskip("torch")
from modeltel.instrumentors.torch import TorchInstrumentor  # noqa: E402


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

    def forward(self, x):
        if x.shape[-1] != 4:
            raise ValueError("bad width")
        return self.body(x)


@pytest.fixture
def instrumented():
    TorchInstrumentor().instrument()
    yield
    TorchInstrumentor().uninstrument()


def _global_hooks():
    from torch.nn.modules import module

    return len(module._global_forward_hooks), len(module._global_forward_pre_hooks)


def test_off(tel: Capture) -> None:
    Net()(torch.zeros(2, 4))
    assert tel.spans() == []


def test_outermost_module_only(tel: Capture, instrumented) -> None:
    net = Net()
    with torch.no_grad():
        net(torch.zeros(5, 4))
        net(torch.zeros(1, 4))
    spans = tel.spans()
    assert [s.name for s in spans] == ["inference", "inference"]
    assert spans[0].attributes[tx.SPAN_ATTR_FRAMEWORK] == "torch"
    assert spans[0].attributes[tx.SPAN_ATTR_BATCH_SIZE] == 5
    assert tel.stage_counts() == {("env-model", "7", "inference"): 2}


def test_training_mode_with_gradients_is_not_a_prediction(tel: Capture, instrumented) -> None:
    net = Net()
    net.body.append(torch.nn.Linear(3, 3).eval())  # a frozen submodule inside a module that trains
    net(torch.zeros(4, 4)).sum().backward()
    with modeltel.stage("step", model_name="m"):
        net(torch.zeros(2, 4))  # training inside an explicit stage: no torch.forward child either
    assert [s.name for s in tel.spans()] == ["step"]
    with torch.no_grad():
        net(torch.zeros(3, 4))  # training mode, gradients off: an evaluation pass
    net.eval()
    net(torch.zeros(5, 4))  # eval mode with gradients on: inference too
    assert tel.stage_counts() == {("m", "7", "step"): 1, ("env-model", "7", "inference"): 2}


def test_nested_in_stage_is_child_span(tel: Capture, instrumented) -> None:
    with modeltel.stage("inference", model_name="m", model_version="1"):
        Net().eval()(torch.zeros(2, 4))
    outer, child = sorted(tel.spans(), key=lambda s: s.name)
    assert (outer.name, child.name) == ("inference", "torch.forward")
    assert parent_of(child) == outer.context.span_id
    assert tel.stage_counts() == {("m", "1", "inference"): 1}


def test_error_recorded_and_state_cleared(tel: Capture, instrumented) -> None:
    net = Net().eval()
    with pytest.raises(ValueError, match="bad width"), modeltel.prediction():
        net(torch.zeros(2, 5))
    net(torch.zeros(2, 4))  # the next call is an outermost call again
    spans = tel.spans()
    assert [s.status.status_code.name for s in spans if s.name == "inference"] == ["ERROR", "UNSET"]
    assert tel.count(tx.ERRORS.otel_name, error_type="ValueError") == 1


@pytest.mark.filterwarnings("ignore:Using `torch.compile")
def test_compiled_module(tel: Capture, instrumented) -> None:
    from torch._dynamo.utils import counters

    counters.clear()
    compiled = torch.compile(Net(), backend="eager")
    with torch.no_grad():
        compiled(torch.zeros(3, 4))
        compiled(torch.zeros(3, 4))
    assert not counters["graph_break"]  # Dynamo never traces modeltel's own code
    assert [s.name for s in tel.spans()] == ["inference", "inference"]
    assert tel.stage_counts() == {("env-model", "7", "inference"): 2}


@pytest.mark.filterwarnings("ignore:Using `torch.compile")
def test_compiled_module_has_no_guard_on_the_compiling_flag(tel: Capture, instrumented) -> None:
    """The wrapper reads ``torch.compiler``'s compiling flag only when Dynamo is not tracing it: a guard on
    the flag would recompile every compiled model each time an export or AOT trace flips it."""
    import torch._dynamo

    torch._dynamo.reset()
    compiled = torch.compile(Net(), backend="eager")
    assert torch.compiler._is_compiling_flag is False
    with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=True):
        compiled(torch.zeros(3, 4))
        torch.compiler._is_compiling_flag = True  # as torch.export sets it while it traces
        try:
            compiled(torch.zeros(3, 4))  # a recompile raises here
        finally:
            torch.compiler._is_compiling_flag = False
        compiled(torch.zeros(3, 4))
    assert tel.stage_counts() == {("env-model", "7", "inference"): 2}  # not while the flag was set


def test_a_torch_without_the_compiling_flag_is_still_monitored(tel: Capture, monkeypatch) -> None:
    """The flag is torch's private part: where it is missing, a module call must not raise into the model."""
    monkeypatch.delattr(torch.compiler, "_is_compiling_flag")
    TorchInstrumentor().instrument()
    try:
        with torch.no_grad():
            Net()(torch.zeros(2, 4))
    finally:
        TorchInstrumentor().uninstrument()
    assert tel.stage_counts() == {("env-model", "7", "inference"): 1}


def test_on_then_off_restores_module_call_and_installs_no_global_hook(tel: Capture) -> None:
    # any global module hook sends every submodule call through torch's slow hook path
    before, call = _global_hooks(), torch.nn.Module.__call__
    TorchInstrumentor().instrument()
    assert _global_hooks() == before
    assert torch.nn.Module.__call__ is not call
    TorchInstrumentor().uninstrument()
    assert torch.nn.Module.__call__ is call
    Net()(torch.zeros(2, 4))
    assert tel.spans() == []
