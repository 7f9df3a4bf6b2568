"""A tiny causal language model that runs here: built in code, saved, and loaded like a downloaded one.

Machines here cannot download weights, so the generative tests, examples and benchmarks build a randomly
initialised GPT-2 (2 layers, width 32: under 100k parameters, a token in about a millisecond on a CPU)
with a byte-level BPE tokenizer trained in code on a few sentences (``tokenizers``), save both with
``save_pretrained`` and load them back with ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained``,
so the real loading path runs. Its text is gibberish; its timings, token counts, streamers and pipelines
are real. Byte-level means any prompt encodes (no unknown token), as an OpenAI-compatible server needs.

    from modeltel.examples import tinylm
    folder = tinylm.save(tmp_path)            # or tinylm.save() for a fresh temporary folder
    model, tokenizer = tinylm.load(folder)
    ids = tokenizer("hello", return_tensors="pt").input_ids
    model.generate(ids, max_new_tokens=8)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

EOS = "<|endoftext|>"
CORPUS = (
    "the model reads the prompt and writes one token at a time.",
    "time to first token is the wait before the stream starts; time per output token is its pace.",
    "a client that leaves early cancels the stream, which is neither a success nor an error.",
    "monitoring should cost a fraction of a microsecond per token.",
)
# A plain chat template, so pipeline("text-generation") takes chat messages (operation "chat") too.
CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
_VOCAB = 320  # the 256 byte symbols, the end-of-text token and a few dozen merges from the corpus


def tokenizer_object() -> Any:
    """The byte-level BPE tokenizer (a ``tokenizers.Tokenizer``), trained on :data:`CORPUS`: deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def save(folder: str | Path | None = None, *, seed: int = 0, layers: int = 2, width: int = 32) -> Path:
    """Build the model and tokenizer and ``save_pretrained`` both into ``folder`` (a new temporary folder
    when None, which the caller removes); returns the folder."""
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    path = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="modeltel-tinylm-"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer_object(), eos_token=EOS, pad_token=EOS)
    tokenizer.chat_template = CHAT_TEMPLATE
    eos = tokenizer.convert_tokens_to_ids(EOS)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=512, n_embd=width, n_layer=layers, n_head=2,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, do_sample=False, max_new_tokens=16
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def load(folder: str | Path) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer), loaded from ``folder`` with ``from_pretrained`` as a real one is."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    return model, AutoTokenizer.from_pretrained(folder)
