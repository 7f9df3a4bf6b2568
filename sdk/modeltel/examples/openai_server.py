"""An OpenAI-compatible streaming server on the tiny language model (:mod:`.tinylm`): what the generative
tests, the ``openai`` client instrumentor's tests and ``modeltel demo --generative`` run against.

Start it with environment variables alone, e.g.::

    MODELTEL_MODEL_NAME=tinylm modeltel run -- uvicorn modeltel.examples.openai_server:app --port 8000

``POST /v1/chat/completions`` (``messages``) and ``POST /v1/completions`` (``prompt``) take the OpenAI
request fields ``model``, ``max_tokens``, ``stream`` and ``stream_options.include_usage``, plus vLLM's
``ignore_eos`` (decode exactly ``max_tokens`` tokens: the model's weights are random, so where it would
stop is arbitrary). ``stream: true`` answers with server-sent events, one ``data:`` chunk per token, then a
chunk with the finish reason, then the usage chunk when asked for, then ``data: [DONE]``; ``stream: false``
answers with one JSON object. ``GET /v1/models`` lists the model.

The decoding loop is written out (greedy, with the key/value cache: a prefill forward pass over the prompt,
then one forward pass per token) rather than ``generate()``, so that the HTTP layer is what observes the
stream and the fault below acts between tokens.

With ``OPENAI_SERVER_FAULTS=1`` it also serves ``POST /faults`` ``{"decode_delay_s": 0.05,
"prefill_delay_s": 0.0}``: from then on every decoding step (every token after the first) sleeps that
long, and the prefill that long once: a decode slowdown raises time per output token and leaves time to
first token alone, a prefill slowdown the other way round. ``TINYLM_DIR`` names a folder made by
:func:`.tinylm.save` to load; without it the model is built into a fresh temporary folder at start.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from . import tinylm

MODEL_ID = "tinylm"
_MAX_TOKENS_CAP = 256  # the model has 512 positions; prompts are cut to the last 256 tokens


class StreamOptions(BaseModel):
    include_usage: bool = False


class Message(BaseModel):
    role: str
    content: str


class _Request(BaseModel):
    model: str = MODEL_ID
    max_tokens: int = Field(16, ge=1, le=_MAX_TOKENS_CAP)
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False


class ChatRequest(_Request):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(_Request):
    prompt: str


class Faults(BaseModel):
    decode_delay_s: float = Field(0.0, ge=0.0, le=10.0)
    prefill_delay_s: float = Field(0.0, ge=0.0, le=60.0)


class TinyLM:
    """The model, its tokenizer and a greedy decoding loop that yields (token text, finish reason or None)."""

    def __init__(self, folder: str | None) -> None:
        import torch

        self._torch = torch
        self.model, self.tokenizer = tinylm.load(folder or tinylm.save())
        self.eos = self.tokenizer.eos_token_id
        self.faults = Faults()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text).input_ids[-_MAX_TOKENS_CAP:] or [self.eos]

    def chat_prompt(self, messages: list[Message]) -> str:
        return self.tokenizer.apply_chat_template([m.model_dump() for m in messages], tokenize=False)

    def decode(self, ids: list[int], max_tokens: int, *, ignore_eos: bool) -> Iterator[tuple[str, str | None]]:
        """Greedy decoding: one (new text, finish reason on the last token else None) per token."""
        torch = self._torch
        out: list[int] = []
        text = ""
        past = None
        step = torch.tensor([ids])
        for i in range(max_tokens):
            delay = self.faults.decode_delay_s if i else self.faults.prefill_delay_s
            if delay:
                time.sleep(delay)
            # Inference mode around each step, never across a yield: it is the thread's state, and the
            # consumer runs between two steps (on another thread, even: Starlette iterates a sync
            # generator in its thread pool), so a mode held over a yield leaks into whatever runs there.
            with torch.inference_mode():
                result = self.model(step, past, use_cache=True)  # the cache's keyword changed in transformers 5
                past = result["cache"] if "cache" in result else result["past_key_values"]
                logits = result.logits[0, -1]
                if ignore_eos:
                    logits[self.eos] = float("-inf")
                token = int(logits.argmax())
            out.append(token)
            full = self.tokenizer.decode(out, skip_special_tokens=True)  # whole: bytes may span tokens
            piece, text = full[len(text) :], full
            if token == self.eos:
                yield piece, "stop"
                return
            yield piece, "length" if i == max_tokens - 1 else None
            step = torch.tensor([[token]])


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj)}\n\n"


class Completions:
    """One request's answer, as OpenAI's chat/text completion objects or their stream of chunks."""

    def __init__(self, lm: TinyLM, request: _Request, prompt: str, *, chat: bool) -> None:
        self.lm, self.request, self.chat = lm, request, chat
        self.ids = lm.encode(prompt)
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.request.model}

    def _choice(self, text: str | None, finish: str | None, *, first: bool = False) -> dict[str, Any]:
        if not self.chat:
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        delta = {} if text is None else {"content": text}
        if first:
            delta = {"role": "assistant", **delta}
        return {"index": 0, "delta": delta, "finish_reason": finish}

    def usage(self, completion_tokens: int) -> dict[str, int]:
        prompt = len(self.ids)
        total = prompt + completion_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": total}

    def _tokens(self) -> Iterator[tuple[str, str | None]]:
        return self.lm.decode(self.ids, self.request.max_tokens, ignore_eos=self.request.ignore_eos)

    def stream(self) -> Iterator[str]:
        """Server-sent events: a chunk per token, the finish reason, the usage if asked for, ``[DONE]``."""
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        n, finish = 0, "length"
        for piece, reason in self._tokens():
            yield _sse({**self._head(obj), "choices": [self._choice(piece, None, first=not n)]})
            n += 1
            finish = reason or finish
        yield _sse({**self._head(obj), "choices": [self._choice(None, finish)]})
        options = self.request.stream_options
        if options is not None and options.include_usage:
            yield _sse({**self._head(obj), "choices": [], "usage": self.usage(n)})
        yield "data: [DONE]\n\n"

    def whole(self) -> dict[str, Any]:
        pieces, finish = [], "length"
        for piece, reason in self._tokens():
            pieces.append(piece)
            finish = reason or finish
        text = "".join(pieces)
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        obj = "chat.completion" if self.chat else "text_completion"
        return {**self._head(obj), "choices": [choice], "usage": self.usage(len(pieces))}


def create_app(folder: str | None = None, *, faults: bool | None = None) -> FastAPI:
    """The server on the model in ``folder`` (see :func:`.tinylm.save`; None: build one); ``faults``: serve
    ``POST /faults`` (default: ``OPENAI_SERVER_FAULTS=1``)."""
    lm = TinyLM(folder)
    api = FastAPI(title="tinylm (OpenAI-compatible)")
    api.state.lm = lm

    def answer(request: _Request, prompt: str, *, chat: bool) -> Any:
        if request.model != MODEL_ID:
            detail = f"model {request.model!r} not found; this server has {MODEL_ID!r}"
            raise HTTPException(status_code=404, detail=detail)
        completions = Completions(lm, request, prompt, chat=chat)
        if request.stream:
            return StreamingResponse(completions.stream(), media_type="text/event-stream")
        return completions.whole()

    @api.post("/v1/chat/completions")
    def chat_completions(request: ChatRequest) -> Any:
        return answer(request, lm.chat_prompt(request.messages), chat=True)

    @api.post("/v1/completions")
    def completions(request: CompletionRequest) -> Any:
        return answer(request, request.prompt, chat=False)

    @api.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "modeltel"}]}

    @api.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if faults if faults is not None else os.environ.get("OPENAI_SERVER_FAULTS") == "1":

        @api.post("/faults")
        def set_faults(new: Faults) -> Faults:
            lm.faults = new
            return new

    return api


_app: FastAPI | None = None
_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    """``app``, built on first use (``uvicorn modeltel.examples.openai_server:app``): importing the module for
    :func:`create_app` does not build a model."""
    global _app
    if name != "app":
        raise AttributeError(name)
    with _lock:
        if _app is None:
            _app = create_app(os.environ.get("TINYLM_DIR"))
    return _app
