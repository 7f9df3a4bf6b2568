"""Hugging Face transformers: ``Pipeline`` preprocess / _forward / postprocess (every task's overrides),
and generation: ``generate()`` and ``pipeline("text-generation")``.

With no modeltel stage active, the three become the preprocess / inference / postprocess stages (the
model name is the pipeline model's ``name_or_path`` when it has one); inside an active stage (a KServe
predict, say) they are child spans ``transformers.<method>`` with no histogram sample. PyTorch module
calls inside ``_forward`` pass through (no second span). A classification pipeline's ``score`` is the
prediction's confidence.

A text-generation pipeline's call on one input is a generation, its ``_forward`` is not a stage of its
own: the ``generate()`` inside it is (``prefill`` and ``decode`` with a streamer, else ``inference``).
``generate()`` is patched when ``transformers.generation.utils`` is imported, so a model used without
any pipeline is covered too. What generation measures, and why it is honest:

* ``generate()`` is a generation (a prediction plus the GenAI metrics, :mod:`modeltel.hotpath.generation`)
  named by the model's ``name_or_path`` (``gen_ai.request.model``), or feeds the generation already active
  (an application's ``modeltel.generation()``, or the text-generation pipeline's). Inside a plain
  prediction it takes over that prediction's count, so a request is counted once.
* Tokens and usage come from the returned sequences: input tokens are the attention mask's ones (else the
  prompt's ids), output tokens per row run to the first end-of-sequence token; the finish reason per row is
  ``stop`` (it reached one, or a stopping criterion ended it early) or ``length`` (``max_new_tokens``).
* **With a streamer** (``TextStreamer``, ``TextIteratorStreamer``, any ``BaseStreamer``), generate hands it
  the prompt first, then each new token as the model produces it: a stand-in streamer passes every call on
  and marks the first new token (TTFT) and counts the rest (TPOT), and splits the call into a ``prefill``
  stage (call to first token: the prompt's forward pass and the first sample) and a ``decode`` stage.
* **Without a streamer**, the tokens only exist when ``generate`` returns: TTFT cannot be observed, so it
  is not recorded (nor TPOT, nor a prefill/decode split); the duration, tokens and finish reasons are, and
  the call is an ``inference`` stage when no stage is active.
* PyTorch module calls inside pass through (one stage, not a span per decoding step).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from contextvars import ContextVar
from typing import Any

import modeltel
from modeltel import taxonomy as tx

from .base import LIBRARY, ModeltelInstrumentor, Patches, Scope, patch_hierarchy, stage_attributes, wrap

_STAGES = {"preprocess": tx.STAGE_PREPROCESS, "_forward": tx.STAGE_INFERENCE, "postprocess": tx.STAGE_POSTPROCESS}


def _model_of(args: tuple, kwargs: dict) -> tuple[str | None, str | None]:
    model = getattr(args[0], "model", None) if args else None
    return (getattr(model, "name_or_path", None) or None), None


def _scores(result: Any, args: tuple, kwargs: dict) -> list[float] | None:
    if isinstance(result, Mapping):
        score = result.get("score")
        return [float(score)] if isinstance(score, float | int) else None
    if isinstance(result, list) and result and all(isinstance(r, Mapping) and "score" in r for r in result):
        return [max(float(r["score"]) for r in result)]  # top-k labels of one input: its top score
    return None


class TransformersInstrumentor(ModeltelInstrumentor):
    patched_module = "transformers.pipelines.base"

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("transformers")

    def _instrument(self, **kwargs: Any) -> None:
        super()._instrument(**kwargs)
        patches = self._patches
        generate = generate_maker(self.telemetry)
        self.when_imported(
            "transformers.generation.utils",
            patches,
            lambda module: patch_hierarchy(patches, module.GenerationMixin, {"generate": generate}),
        )

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        from transformers.pipelines.base import Pipeline
        from transformers.pipelines.text_generation import TextGenerationPipeline

        makers = {
            method: self.library_call(
                "transformers",
                method,
                stage=stage,
                model_of=_model_of,
                confidences=_scores if method == "postprocess" else None,
            )
            for method, stage in _STAGES.items()
        }
        forward = makers["_forward"]

        def forward_or_generate(func: Any, owner: Any) -> Any:
            if issubclass(owner, TextGenerationPipeline):  # the generate() inside is the stage
                return wrap(func, _pass_through)
            return forward(func, owner)

        makers["_forward"] = forward_or_generate
        patch_hierarchy(patches, Pipeline, makers)
        own = TextGenerationPipeline.run_single  # Pipeline's today; its own, should a release define one
        run_single = pipeline_maker(self.telemetry)(own, TextGenerationPipeline)
        patches.replace(TextGenerationPipeline, "run_single", run_single)


def _pass_through(args: tuple, kwargs: dict) -> None:
    return None


# -- generation ------------------------------------------------------------------------------------------
_in_generate: ContextVar[bool] = ContextVar("modeltel_in_generate", default=False)
ATTRIBUTES = stage_attributes("transformers", "generate")
PIPELINE_ATTRIBUTES = stage_attributes("transformers", "text-generation")


def name_of(model: Any) -> str | None:
    return getattr(model, "name_or_path", None) or None


def generation_for(telemetry: modeltel.Telemetry, model: Any, operation: str, attributes: Mapping[str, Any]) -> Any:
    """A new generation for ``model``: under its own name, or the enclosing prediction's model inside one."""
    name = name_of(model)
    model_name = None if modeltel.in_prediction() else name
    return telemetry.generation(model_name, request_model=name, operation=operation, attributes=attributes)


class GenerateCall:
    """The scope of one ``generate()`` call: its generation (or the active one) and its stage(s)."""

    __slots__ = ("_first_seen", "_scope", "_stage", "_streaming", "_telemetry", "_token", "generation")

    def __init__(self, telemetry: modeltel.Telemetry, model: Any, kwargs: dict) -> None:
        self._telemetry = telemetry
        outer = modeltel.current_generation()
        operation = tx.GEN_AI_OPERATION_TEXT_COMPLETION
        self.generation = outer if outer is not None else generation_for(telemetry, model, operation, ATTRIBUTES)
        self._scope = Scope(LIBRARY, () if outer is not None else (self.generation,))
        self._stage: Any = None
        self._first_seen = False
        streamer = kwargs.get("streamer")
        self._streaming = streamer is not None and telemetry.enabled
        if self._streaming:
            # generate() is called with this very dict as its keywords (hotpath.wrap: func(*args, **kwargs))
            kwargs["streamer"] = _streamer_class()(streamer, self)

    def __enter__(self) -> GenerateCall:
        self._token = _in_generate.set(True)
        self._scope.__enter__()
        if self._streaming:
            self._open_stage(tx.STAGE_PREFILL)
        elif modeltel.current_stage() is None:
            self._open_stage(tx.STAGE_INFERENCE)  # unsplit: without a streamer the first token is not seen
        return self

    def _open_stage(self, name: str) -> None:
        self._stage = self._telemetry.stage(name, attributes=ATTRIBUTES)
        self._stage.__enter__()

    def tokens(self, value: Any) -> None:
        """A step's new tokens (a ``put`` after the prompt's): count them; the first ends prefill."""
        try:
            shape = getattr(value, "shape", ())
            self.generation.token(int(shape[-1]) if len(shape) > 1 else 1)  # new tokens per sequence
            if not self._first_seen:
                self._first_seen = True
                self._stage.__exit__(None, None, None)
                self._open_stage(tx.STAGE_DECODE)
        except Exception as failure:  # a monitoring bug must not reach the model server
            self._telemetry.monitoring_failed(failure)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._stage is not None:
                self._stage.__exit__(exc_type, exc, tb)
            self._scope.__exit__(exc_type, exc, tb)
        finally:
            try:  # noqa: SIM105 (hot path)
                _in_generate.reset(self._token)
            except ValueError:
                pass


@functools.cache
def _streamer_class() -> type:
    """The stand-in streamer, a ``BaseStreamer`` (built on first use: importing transformers is slow)."""
    from transformers.generation.streamers import BaseStreamer

    class CountingStreamer(BaseStreamer):
        """Passes every call on to the caller's streamer, after counting the tokens on the generation.

        generate() puts the prompt first (never an output token), then each step's new tokens."""

        def __init__(self, inner: Any, call: GenerateCall) -> None:
            self._inner = inner
            self._call = call
            self._prompt_seen = False

        def put(self, value: Any) -> None:
            if self._prompt_seen:
                self._call.tokens(value)
            else:
                self._prompt_seen = True
            self._inner.put(value)

        def end(self) -> None:
            self._inner.end()

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    return CountingStreamer


def record_usage(call: GenerateCall | None, result: Any, args: tuple, kwargs: dict) -> None:
    """An ``after`` for :func:`wrap`: usage, finish reasons and batch size from the returned sequences."""
    if call is None:
        return
    try:
        found = usage_of(args[0], result, args, kwargs)
    except Exception as failure:  # a monitoring bug must not reach the model server
        call._telemetry.monitoring_failed(failure)
        return
    if found is None:
        return
    input_tokens, outputs, reasons = found
    g = call.generation
    # input: unless already known (the application may have counted the prompt itself); output: added up, so
    # several generate() calls inside one generation report them all
    g.usage(
        input_tokens=input_tokens if g.input_tokens is None else None,
        output_tokens=(g.reported_output_tokens or 0) + sum(outputs),
    )
    g.finish(*reasons)
    g.set_batch_size(len(outputs))


def usage_of(model: Any, result: Any, args: tuple, kwargs: dict) -> tuple[int | None, list[int], list[str]] | None:
    """(input tokens, output tokens per sequence, finish reason per sequence) of a generate() result."""
    sequences = getattr(result, "sequences", result)
    shape = getattr(sequences, "shape", None)
    if shape is None or len(shape) != 2:
        return None
    prompt = kwargs.get("input_ids", kwargs.get("inputs", args[1] if len(args) > 1 else None))
    mask = kwargs.get("attention_mask")
    if mask is not None:
        input_tokens: int | None = int(mask.sum())
    else:
        input_tokens = int(prompt.numel()) if hasattr(prompt, "numel") else None
    config = kwargs.get("generation_config") or getattr(model, "generation_config", None)
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        new = sequences[:, 1:]  # after the decoder's start token
    else:
        new = sequences[:, prompt.shape[-1] :] if hasattr(prompt, "shape") else sequences  # inputs_embeds: new only
    eos = kwargs.get("eos_token_id", getattr(config, "eos_token_id", None))
    eos = set(eos if isinstance(eos, list | tuple) else () if eos is None else (eos,))
    max_new = kwargs.get("max_new_tokens", getattr(config, "max_new_tokens", None))
    outputs, reasons = [], []
    for row in new.tolist():
        end = next((i for i, token in enumerate(row) if token in eos), None)
        outputs.append(len(row) if end is None else end + 1)
        reasons.append("length" if end is None and max_new is not None and len(row) >= max_new else "stop")
    return input_tokens, outputs, reasons


def generate_maker(telemetry: Any) -> Any:
    """A ``make`` for :meth:`Patches.wrap`: ``generate`` as a :class:`GenerateCall` (``telemetry()``: what it
    records with); a generate() inside a generate() (an override calling ``super()``) passes through."""

    def make(func: Any, owner: Any) -> Any:
        def enter(args: tuple, kwargs: dict) -> GenerateCall | None:
            if not args or _in_generate.get():
                return None
            t = telemetry()
            try:
                return GenerateCall(t, args[0], kwargs)
            except Exception as failure:  # a monitoring bug must not reach the model server: run it bare
                t.monitoring_failed(failure)
                return None

        return wrap(func, enter, record_usage)

    return make


def is_chat(inputs: Any) -> bool:
    """Whether a text-generation pipeline's input is a conversation (``gen_ai.operation.name`` "chat")."""
    if hasattr(inputs, "messages"):  # transformers' Chat
        return True
    return (
        isinstance(inputs, list | tuple)
        and bool(inputs)
        and all(isinstance(m, Mapping) and "role" in m for m in inputs)
    )


def pipeline_maker(telemetry: Any) -> Any:
    """A ``make`` for a text-generation pipeline's ``run_single``: one input, preprocess to postprocess, is
    one generation (TTFT from the call), which the ``generate()`` inside feeds."""

    def make(func: Any, owner: Any) -> Any:
        def enter(args: tuple, kwargs: dict) -> Scope | None:
            if len(args) < 2 or modeltel.current_generation() is not None:
                return None
            op = tx.GEN_AI_OPERATION_CHAT if is_chat(args[1]) else tx.GEN_AI_OPERATION_TEXT_COMPLETION
            g = generation_for(telemetry(), getattr(args[0], "model", None), op, PIPELINE_ATTRIBUTES)
            return Scope(_PIPELINE_KEY, (g,))

        return wrap(func, enter)

    return make


_PIPELINE_KEY = ("transformers", "text-generation")
