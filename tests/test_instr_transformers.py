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
