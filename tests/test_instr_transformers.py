from __future__ import annotations

import os

import pytest

import modeltel
from modeltel import taxonomy as tx
from modeltel.testing import Capture
from tests.conftest import parent_of

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
tokenizers = pytest.importorskip("tokenizers")

from modeltel.instrumentors.torch import TorchInstrumentor  # noqa: E402
from modeltel.instrumentors.transformers import TransformersInstrumentor  # noqa: E402


@pytest.fixture(scope="module")
def classifier():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast, pipeline

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "movie", "a"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=32, num_labels=2,
    )  # fmt: skip
    model = BertForSequenceClassification(config).eval()
    return pipeline("text-classification", model=model, tokenizer=fast, device="cpu")


@pytest.fixture
def instrumented():
    TransformersInstrumentor().instrument()
    TorchInstrumentor().instrument()
    yield
    TorchInstrumentor().uninstrument()
    TransformersInstrumentor().uninstrument()


def test_off(tel: Capture, classifier) -> None:
    classifier("a good movie")
    assert tel.spans() == []


def test_pipeline_stages_and_confidence(tel: Capture, classifier, instrumented) -> None:
    (out,) = classifier("a good movie")
    names = [s.name for s in tel.spans()]
    assert names == ["preprocess", "inference", "postprocess"]  # no torch.forward span inside _forward
    assert tel.stage_counts() == {("env-model", "7", s): 1 for s in tx.CANONICAL_STAGES}
    conf = tel.points(tx.PREDICTION_CONFIDENCE.otel_name)
    assert sum(p.count for p in conf) == 1 and sum(p.sum for p in conf) == pytest.approx(out["score"])


def test_nested_in_stage(tel: Capture, classifier, instrumented) -> None:
    with modeltel.stage("inference", model_name="sentiment"):
        classifier("bad movie")
    spans = {s.name: s for s in tel.spans()}
    outer = spans["inference"]
    for m in ("preprocess", "_forward", "postprocess"):
        assert parent_of(spans[f"transformers.{m}"]) == outer.context.span_id
    assert tel.stage_counts() == {("sentiment", "7", "inference"): 1}


def test_on_then_off(classifier) -> None:
    from transformers.pipelines.base import Pipeline
    from transformers.pipelines.text_classification import TextClassificationPipeline

    owners = (Pipeline, TextClassificationPipeline)
    before = {(c, m): c.__dict__.get(m) for c in owners for m in ("preprocess", "_forward", "postprocess")}
    TransformersInstrumentor().instrument()
    assert {(c, m): c.__dict__.get(m) for c in owners for m in ("preprocess", "_forward", "postprocess")} != before
    TransformersInstrumentor().uninstrument()
    assert {(c, m): c.__dict__.get(m) for c in owners for m in ("preprocess", "_forward", "postprocess")} == before


# -- generation: generate() with and without a streamer, pipeline("text-generation") -------------------
TTFT = tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name
TPOT = tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN.otel_name
USAGE = tx.GEN_AI_CLIENT_TOKEN_USAGE.otel_name
PREDICTIONS = tx.PREDICTIONS.otel_name


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny causal LM, saved and loaded back with from_pretrained."""
    from modeltel.examples import tinylm

    folder = tinylm.save(tmp_path_factory.mktemp("tinylm"))
    model, tokenizer = tinylm.load(folder)
    return model, tokenizer, str(folder)


def _usage(tel: Capture, kind: str) -> float:
    return tel.point(USAGE, **{tx.ATTR_GEN_AI_TOKEN_TYPE: kind}).sum


def _generation_span(tel: Capture):
    (span,) = [s for s in tel.spans() if s.attributes.get(tx.SPAN_ATTR_KIND) == tx.SPAN_KIND_PREDICTION]
    return span


def test_generate_without_streamer_records_tokens_not_ttft(tel: Capture, tiny, instrumented) -> None:
    model, tok, name = tiny
    inputs = tok("hello world", return_tensors="pt")
    model.generate(**inputs, max_new_tokens=5, min_new_tokens=5)
    assert tel.count(PREDICTIONS, model_name=name, status="success") == 1
    assert tel.points(TTFT) == [] and tel.points(TPOT) == []  # the first token is never seen: not guessed
    assert _usage(tel, "input") == int(inputs["attention_mask"].sum()) and _usage(tel, "output") == 5
    assert tel.point(tx.GEN_AI_SERVER_REQUEST_DURATION.otel_name).attributes[tx.ATTR_GEN_AI_REQUEST_MODEL] == name
    assert tel.stage_counts() == {(name, "7", "inference"): 1}
    span = _generation_span(tel)
    assert span.attributes[tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)
    assert [s.name for s in tel.spans()] == ["inference", span.name]  # no span per decoding step


def test_generate_with_text_streamer_splits_prefill_and_decode(tel: Capture, tiny, instrumented, capsys) -> None:
    from transformers import TextStreamer

    model, tok, name = tiny
    model.generate(**tok("hello", return_tensors="pt"), max_new_tokens=6, min_new_tokens=6, streamer=TextStreamer(tok))
    assert capsys.readouterr().out  # the caller's streamer still printed
    assert tel.point(TTFT).count == 1 and tel.point(TPOT).count == 1 and _usage(tel, "output") == 6
    assert tel.stage_counts() == {(name, "7", "prefill"): 1, (name, "7", "decode"): 1}
    span = _generation_span(tel)
    stages = {s.name: s for s in tel.stage_spans()}
    (first,) = span.events
    assert stages["prefill"].end_time <= stages["decode"].start_time
    assert stages["prefill"].start_time <= first.timestamp <= stages["decode"].start_time  # prefill ends at token 1
    assert all(parent_of(s) == span.context.span_id for s in stages.values())


def test_text_iterator_streamer_in_a_thread(tel: Capture, tiny, instrumented) -> None:
    import threading

    from transformers import TextIteratorStreamer

    model, tok, _ = tiny
    streamer = TextIteratorStreamer(tok, skip_prompt=True)
    kwargs = {**tok("hi", return_tensors="pt"), "max_new_tokens": 4, "min_new_tokens": 4, "streamer": streamer}
    worker = threading.Thread(target=model.generate, kwargs=kwargs)
    worker.start()
    text = "".join(streamer)
    worker.join()
    assert text
    assert tel.point(TTFT).count == 1 and _usage(tel, "output") == 4
    assert tel.count(PREDICTIONS, status="success") == 1


def test_generate_stops_at_eos(tel: Capture, tiny, instrumented) -> None:
    model, tok, _ = tiny
    inputs = tok("hello", return_tensors="pt")
    free = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6)
    third = int(free[0, inputs["input_ids"].shape[-1] + 2])
    new = free[0, inputs["input_ids"].shape[-1] :].tolist()
    model.generate(**inputs, max_new_tokens=6, eos_token_id=third, pad_token_id=third)
    spans = [s for s in tel.spans() if s.attributes.get(tx.SPAN_ATTR_KIND) == tx.SPAN_KIND_PREDICTION]
    assert spans[-1].attributes[tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert spans[-1].attributes[tx.SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] == new.index(third) + 1


def test_text_generation_pipeline_is_one_generation(tel: Capture, tiny, instrumented) -> None:
    from transformers import TextStreamer, pipeline

    model, tok, _ = tiny
    generator = pipeline("text-generation", model=model, tokenizer=tok)
    generator([{"role": "user", "content": "hi"}], max_new_tokens=3, min_new_tokens=3, streamer=TextStreamer(tok))
    span = _generation_span(tel)
    assert span.attributes[tx.ATTR_GEN_AI_OPERATION_NAME] == "chat"
    assert tel.count(PREDICTIONS, status="success") == 1
    assert tel.point(TTFT).count == 1 and _usage(tel, "output") == 3
    stages = {(s.name, parent_of(s)) for s in tel.stage_spans()}
    assert stages == {(n, span.context.span_id) for n in ("preprocess", "prefill", "decode", "postprocess")}


def test_generate_feeds_the_applications_generation(tel: Capture, tiny, instrumented) -> None:
    model, tok, _ = tiny
    with modeltel.generation("chatbot", operation="chat") as g:
        model.generate(**tok("hello", return_tensors="pt"), max_new_tokens=4, min_new_tokens=4)
        assert g.output_tokens == 4
    assert tel.count(PREDICTIONS) == 1 and tel.count(PREDICTIONS, model_name="chatbot", status="success") == 1
    assert _usage(tel, "output") == 4


def test_generation_on_then_off(tiny) -> None:
    from transformers.generation.utils import GenerationMixin
    from transformers.pipelines.text_generation import TextGenerationPipeline

    before = GenerationMixin.__dict__["generate"]
    TransformersInstrumentor().instrument()
    assert GenerationMixin.__dict__["generate"] is not before and "run_single" in TextGenerationPipeline.__dict__
    TransformersInstrumentor().uninstrument()
    assert GenerationMixin.__dict__["generate"] is before and "run_single" not in TextGenerationPipeline.__dict__


ZERO_CODE_SCRIPT = """
import sys
from transformers import TextStreamer, pipeline
from modeltel.examples import tinylm

model, tok = tinylm.load(tinylm.save(sys.argv[1]))
model.generate(**tok("hello", return_tensors="pt"), max_new_tokens=4, min_new_tokens=4, streamer=TextStreamer(tok))
pipeline("text-generation", model=model, tokenizer=tok)("hi", max_new_tokens=3, min_new_tokens=3)
"""


def test_zero_code_under_modeltel_run(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from modeltel.testing import OtlpSink, attributes

    script = tmp_path / "gen.py"
    script.write_text(ZERO_CODE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELTEL_"))}
    with OtlpSink() as sink:
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint, MODELTEL_GPU_METRICS="false", MODELTEL_HOST_METRICS="false"
        )
        launcher = [str(Path(sys.executable).parent / "modeltel"), "run", "--", sys.executable]
        proc = subprocess.run(
            [*launcher, str(script), str(tmp_path / "m")], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        assert sink.wait_for(lambda s: list(s.metric_points(TTFT)) and list(s.metric_points(USAGE)), timeout=20)
        ttft = [p for _, _, p in sink.metric_points(TTFT)]
        ops = {attributes(p.attributes)[tx.ATTR_GEN_AI_OPERATION_NAME] for _, _, p in sink.metric_points(USAGE)}
    # the streamed generate(); the pipeline ran without a streamer. Cumulative points: a periodic export and
    # the one at exit can both carry it, each with count 1
    assert {p.count for p in ttft} == {1}
    assert len({tuple(sorted(attributes(p.attributes).items())) for p in ttft}) == 1  # one series
    assert ops == {"text_completion"}


def test_generate_keeps_the_applications_input_count_and_adds_outputs(tel: Capture, tiny, instrumented) -> None:
    model, tok, _ = tiny
    inputs = tok("hello", return_tensors="pt")
    with modeltel.generation("agent", input_tokens=100):
        model.generate(**inputs, max_new_tokens=2, min_new_tokens=2)
        model.generate(**inputs, max_new_tokens=3, min_new_tokens=3)
    assert _usage(tel, "input") == 100 and _usage(tel, "output") == 5
    assert _generation_span(tel).attributes[tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS] == ("length", "length")
