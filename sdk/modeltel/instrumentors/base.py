"""What every modeltel instrumentor shares: one lifecycle, one guard, and the three kinds of wrapped call.

Subclasses of :class:`ModeltelInstrumentor` only say what to wrap, in :meth:`~ModeltelInstrumentor._apply`,
usually as a table of ``{method name: wrapper factory}`` handed to :func:`patch_hierarchy`. The base does
the rest: patching now or when ``patched_module`` is imported, exact restore on ``uninstrument()``, and
``tracer_provider`` / ``meter_provider`` keyword arguments, as contrib instrumentors take them.

Rules the wrapped calls follow (the README's coverage table relies on them):

* A **prediction call** (KServe ``Model.__call__``, MLServer ``predict``, a BentoML API...) is a modeltel
  prediction named by the framework's model, optionally with a stage inside it.
* A **framework stage** (KServe ``preprocess``, LitServe ``decode_request``...) is a modeltel stage named
  by its canonical stage (``preprocess`` / ``inference`` / ``postprocess``, or the framework's own name
  when it has no canonical equivalent); its span carries ``modeltel.framework`` and
  ``modeltel.framework.stage``.
* A **library call** (scikit-learn, PyTorch, ONNX Runtime, transformers) is a stage (``inference`` by
  default) when no modeltel stage is active; inside an active stage it is a child span named
  ``<library>.<method>`` that records no histogram sample (no double counting).
* A **training call** (scikit-learn ``fit``...; a PyTorch module in training mode with gradients on) is
  not a prediction: it records nothing, and library calls made inside it pass through (a gradient
  boosting ``fit`` calls its own ``predict_proba``; that is not the application predicting).
* One re-entrancy rule for all three: a wrapped call made directly inside a wrapped call with the same
  key passes straight through. So an override calling ``super()`` is one stage, an API calling another
  API is one prediction, and library calls nested in a library call (a Pipeline calling its final
  estimator, a transformers pipeline running a torch module) are one. Library calls keep the key in a
  ``ContextVar`` (a :class:`Scope`); a framework stage and a one-manager prediction call need no scope of
  their own (a ContextVar set and reset per wrapped method, four per KServe request): the innermost
  modeltel frame already says whose it is, by its span-attribute dict (one per wrapped method).
* Wrappers keep the kind of the callable they wrap (:func:`modeltel.hotpath.wrap`); exceptions go through
  unchanged and are counted once.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

import modeltel
from modeltel import taxonomy as tx
from modeltel.hotpath import wrap
from modeltel.hotpath.prediction import Prediction
from modeltel.hotpath.stage import Stage
from modeltel.hotpath.wrapping import finish

from .patching import ORIGINAL_ATTR, Make, Patches, patch_hierarchy
from .scopes import (
    LIBRARY,
    LibraryScope,
    Scope,
    active_call,
    call_key,
    current_frame,
    reset_active,
    set_active,
    training_scope,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "LIBRARY",
    "ORIGINAL_ATTR",
    "LibraryScope",
    "Make",
    "ModeltelInstrumentor",
    "Patches",
    "Scope",
    "StageOf",
    "active_call",
    "batch_len",
    "current_frame",
    "finish",
    "patch_hierarchy",
    "prediction_frames",
    "reset_active",
    "set_active",
    "stage_attributes",
    "telemetry_source",
    "top_probabilities",
    "training_scope",
    "wrap",
]

_log = logging.getLogger("modeltel")
_PREDICTION = "prediction"
ModelOf = Callable[[tuple, dict], tuple[str | None, str | None]]  # (args, kwargs) -> (model name, version)
BatchOf = Callable[[tuple, dict], int | None]  # (args, kwargs) -> batch size, or None
Confidences = Callable[[Any, tuple, dict], Iterable[float] | None]  # (result, args, kwargs) -> per-row values

# The span-attribute dicts (by id) of each framework's prediction calls: see the re-entrancy rule. Held, not
# only their ids: a dropped dict's id could be reused by another frame's attributes (one per wrapped method
# and instrument cycle, so it grows only with instrumentation).
_prediction_frames: dict[tuple[str, str], dict[int, dict]] = {}


def prediction_frames(framework: str) -> dict[int, dict]:
    """The span-attribute dicts (by id) of ``framework``'s prediction calls, filled as they are made: a
    frame whose ``_attributes`` is among them is one of that framework's predictions."""
    return _prediction_frames.setdefault(call_key(framework, _PREDICTION), {})


def stage_attributes(framework: str, framework_stage: str, **extra: Any) -> dict[str, Any]:
    """The span attributes of one wrapped method, built once at patch time (never per call)."""
    return {tx.SPAN_ATTR_FRAMEWORK: framework, tx.SPAN_ATTR_FRAMEWORK_STAGE: framework_stage, **extra}


def batch_len(value: Any) -> int | None:
    """Rows in a batch-like value (array, tensor, list, DataFrame), or None."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        try:
            return int(shape[0]) if len(shape) else None
        except (TypeError, IndexError):
            return None
    if isinstance(value, list | tuple):
        return len(value)
    return None


def top_probabilities(probs: Any) -> list[float] | None:
    """Top-class probability per row of a 2-D probability array, or None if it is not one."""
    if getattr(probs, "ndim", None) == 2:
        try:
            return probs.max(axis=1).tolist()
        except Exception:
            return None
    return None


@functools.cache
def extra_requirements(extra: str) -> tuple[str, ...]:
    """What modeltel's pip extra ``extra`` requires (``modeltel[kserve]``: the framework's range...), read
    from the installed distribution: pyproject.toml is the one place supported versions are stated, and an
    instrumentor's ``instrumentation_dependencies`` is its extra's list. Empty when modeltel runs from a
    source tree that pip never installed (nothing to check against)."""
    from packaging.requirements import Requirement

    try:
        lines = importlib.metadata.requires("modeltel") or []
    except importlib.metadata.PackageNotFoundError:
        return ()
    found = []
    for line in lines:
        req = Requirement(line)
        marker = req.marker
        if marker is None or not marker.evaluate({"extra": extra}) or marker.evaluate({"extra": ""}):
            continue  # not this extra's (a base dependency, or another extra's)
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        found.append(f"{req.name}{extras} {req.specifier}".rstrip())
    return tuple(found)


def telemetry_source(kwargs: Mapping[str, Any]) -> Callable[[], modeltel.Telemetry]:
    """What an instrumentation records with, from its ``tracer_provider`` / ``meter_provider`` arguments."""
    tracer_provider, meter_provider = kwargs.get("tracer_provider"), kwargs.get("meter_provider")
    if tracer_provider is None and meter_provider is None:
        return modeltel.telemetry
    return functools.partial(modeltel.telemetry, tracer_provider=tracer_provider, meter_provider=meter_provider)


class StageOf(TypedDict, total=False):
    """How a framework stage finds its model and batch: ``model_of(args, kwargs)`` gives the (model name,
    version) the framework knows (None: the environment's); ``batch_of(args, kwargs)`` the batch size to
    record, when the framework batches."""

    model_of: ModelOf | None
    batch_of: BatchOf | None


class ModeltelInstrumentor(BaseInstrumentor):
    """One lifecycle for every modeltel instrumentor.

    Set ``patched_module`` to patch when that module is imported (at once if it already is), so that
    ``opentelemetry-instrument`` does not import torch, KServe or BentoML (seconds, in every worker,
    before it runs a line of its own: uvicorn kills a spawned worker that has not answered its health
    check 5 s after it started) for a service that never uses them; leave it None to patch in
    ``instrument()``. Say what to patch in :meth:`_apply`.
    """

    patched_module: str | None = None
    _patches: Patches | None = None
    _tracer_provider: trace.TracerProvider | None = None
    _telemetry: Callable[[], modeltel.Telemetry] = staticmethod(modeltel.telemetry)

    @staticmethod
    def extra_requirements(extra: str) -> Collection[str]:
        """An instrumentor's ``instrumentation_dependencies``: its pip extra's requirements (the framework
        first), as pyproject.toml states them."""
        return extra_requirements(extra)

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        """Patch the library, recording every change in ``patches``; ``kwargs`` are ``instrument()``'s."""
        raise NotImplementedError

    def _instrument(self, **kwargs: Any) -> None:
        self._tracer_provider = kwargs.get("tracer_provider")
        self._telemetry = telemetry_source(kwargs)
        patches = self._patches = Patches()
        if self.patched_module is None:
            self._apply(patches, **kwargs)
        else:
            self.when_imported(self.patched_module, patches, lambda module: self._apply(patches, **kwargs))

    def when_imported(self, module_name: str, patches: Patches, hook: Callable[[Any], None]) -> None:
        """Run ``hook(module)`` once ``module_name`` is imported (now, if it is already), unless this
        instrumentation is over by then. A failing hook is logged, never raised into the import."""
        import wrapt

        def on_import(module: Any) -> None:
            if self._patches is not patches:  # uninstrumented (or instrumented anew) before the import
                return
            try:
                hook(module)
            except Exception:
                _log.exception("modeltel: could not instrument %s; it runs unmonitored", module_name)

        wrapt.register_post_import_hook(on_import, module_name)

    def _uninstrument(self, **kwargs: Any) -> None:
        patches, self._patches = self._patches, None
        if patches is not None:
            patches.restore()

    # -- what the wrappers record with ----------------------------------------------------------------
    def telemetry(self) -> modeltel.Telemetry:
        """The Telemetry this instrumentor's calls record with (its providers', else the pipeline's)."""
        return self._telemetry()

    def tracer_provider(self) -> trace.TracerProvider:
        """The tracer provider for spans of this instrumentor's own (Triton's client spans)."""
        if self._tracer_provider is not None:
            return self._tracer_provider
        pipeline = modeltel.get_pipeline()
        return pipeline.tracer_provider if pipeline is not None else trace.get_tracer_provider()

    def _recorder(self, confidences: Confidences | None) -> Callable[[Any, Any, tuple, dict], None] | None:
        """An ``after`` for :func:`wrap` that records the result's confidences on the active model."""
        if confidences is None:
            return None

        def after(entered: Any, result: Any, args: tuple, kwargs: dict) -> None:
            t = self.telemetry()
            if not (t.enabled and t.settings.record_confidence):
                return
            try:
                for value in confidences(result, args, kwargs) or ():
                    t.record_confidence(value)
            except Exception as failure:  # a monitoring bug must not reach the model server
                t.monitoring_failed(failure)

        return after

    # -- the three kinds of wrapped call --------------------------------------------------------------
    def library_scope(
        self, library: str, method: str, attributes: Mapping[str, Any], *, stage: str = tx.STAGE_INFERENCE,
        model_name: str | None = None,
    ) -> LibraryScope | None:  # fmt: skip
        """The scope of one model-library call: ``stage``, or a non-recording child span of the active stage;
        None inside another library call (pass through)."""
        if active_call() is LIBRARY:
            return None
        t = self._telemetry()
        frame = current_frame()
        active = frame.stage if frame is not None else None
        if active is None:  # Telemetry.stage, positionally: this runs per call
            return LibraryScope(Stage(t, stage, model_name, None, None, attributes))
        return LibraryScope(Stage(t, active, None, None, f"{library}.{method}", attributes, record=False))

    def library_call(
        self,
        library: str,
        method: str,
        *,
        stage: str = tx.STAGE_INFERENCE,
        model_of: ModelOf | None = None,
        confidences: Confidences | None = None,
    ) -> Make:
        """A ``make`` for :meth:`Patches.wrap`: a model-library call (see the module docstring)."""
        attributes = stage_attributes(library, method)

        def make(func: Callable[..., Any], owner: Any) -> Callable[..., Any]:
            def enter(args: tuple, kwargs: dict) -> Scope | None:
                name = model_of(args, kwargs)[0] if model_of is not None else None
                return self.library_scope(library, method, attributes, stage=stage, model_name=name)

            return wrap(func, enter, self._recorder(confidences))

        return make

    def training_call(self) -> Make:
        """A ``make`` for :meth:`Patches.wrap`: a model-library training method (see the module docstring)."""

        def make(func: Callable[..., Any], owner: Any) -> Callable[..., Any]:
            return wrap(func, training_scope)

        return make

    def framework_stage(self, framework: str, method: str, stage: str, **options: Unpack[StageOf]) -> Make:
        """A ``make`` for :meth:`Patches.wrap`: a serving framework's own stage method as a modeltel stage
        (``options``: :class:`StageOf`)."""
        enter, _ = self.stage_enter(framework, method, stage, **options)
        return lambda func, owner: wrap(func, enter)

    def stage_enter(
        self,
        framework: str,
        method: str,
        stage: str,
        *,
        model_of: ModelOf | None = None,
        batch_of: BatchOf | None = None,
    ) -> tuple[Callable[[tuple, dict], Any], dict[str, Any]]:
        """:meth:`framework_stage`'s ``enter`` for :func:`wrap` (a stage, a Scope, or None to pass through),
        and the span attributes of its stages, for a wrapper that enters the common case itself (KServe's)."""
        attributes = stage_attributes(framework, method)
        key = call_key(framework, method)
        telemetry = self._telemetry
        ours = prediction_frames(framework)  # filled by prediction_call

        def enter(args: tuple, kwargs: dict) -> Any:
            frame = current_frame()
            if frame is not None and frame._attributes is attributes:
                return None  # an override calling super(): one stage
            name, version = model_of(args, kwargs) if model_of is not None and args else (None, None)
            if frame is None:
                st = Stage(telemetry(), stage, name, version, None, attributes)  # Telemetry.stage, positionally
            elif name == frame._model_name and version == frame._model_version and id(frame._attributes) in ours:
                # this request's prediction, of the same model: its telemetry and series (no look-ups)
                st = Stage(frame._t, stage, None, None, None, attributes)
            else:
                st = Stage(telemetry(), stage, name, version, None, attributes)
            return st if batch_of is None else Scope(key, (st,), batch_of(args, kwargs))

        return enter, attributes

    def prediction_call(
        self,
        framework: str,
        method: str,
        *,
        model_of: ModelOf | None = None,
        batch_of: BatchOf | None = None,
        stage: str | None = None,
        outermost_only: bool = False,
    ) -> Make:
        """A ``make`` for :meth:`Patches.wrap`: a framework's request entry point as the prediction, with
        ``stage`` inside it when the method is also where the model runs.

        Under an HTTP instrumentor's request prediction it takes over (that one gives way), so
        ``model_predictions_total`` carries the same model name as the stage histograms. Any prediction
        call of the same framework made inside it passes through. ``outermost_only``: inside any active
        modeltel prediction, open only ``stage`` (with no stage, pass through).
        """
        attributes = stage_attributes(framework, method)
        key = call_key(framework, _PREDICTION)
        telemetry = self._telemetry
        ours = prediction_frames(framework)  # every prediction call of this framework
        ours[id(attributes)] = attributes

        def make(func: Callable[..., Any], owner: Any) -> Callable[..., Any]:
            def enter(args: tuple, kwargs: dict) -> Any:
                frame = current_frame()
                if not args or (frame is not None and id(frame._attributes) in ours):
                    return None  # directly inside a prediction call of the same framework
                nested = outermost_only and modeltel.in_prediction()
                if nested and stage is None:
                    return None
                name, version = model_of(args, kwargs) if model_of is not None else (None, None)
                t = telemetry()
                if stage is None and batch_of is None:  # no Scope: the frame's attributes say whose it is
                    return Prediction(t, "predict", name, version, None, attributes)  # Telemetry.prediction
                managers: tuple[Any, ...] = () if nested else (t.prediction(name, version, attributes=attributes),)
                if stage is not None:
                    managers += (t.stage(stage, model_name=name, model_version=version, attributes=attributes),)
                if batch_of is None and len(managers) == 1:
                    return managers[0]
                return Scope(key, managers, batch_of(args, kwargs) if batch_of is not None else None)

            return wrap(func, enter)

        return make
