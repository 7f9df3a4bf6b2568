"""What every modeltel instrumentor shares: exact patch/restore, subclass coverage, kind-preserving wrappers.

Rules the wrappers follow (the README's coverage table relies on them):

* A framework stage (KServe ``preprocess``, LitServe ``decode_request``...) is a modeltel stage named by
  its canonical stage (``preprocess`` / ``inference`` / ``postprocess``, or the framework's own name when
  it has no canonical equivalent); the span is named like the stage and carries
  ``modeltel.framework`` and ``modeltel.framework.stage``.
* A model library call (scikit-learn, PyTorch, ONNX Runtime, transformers) is the ``inference`` stage
  when no modeltel stage is active; inside an active stage it is a child span named
  ``<library>.<method>`` that records no histogram sample (no double counting). Library calls nested in
  a library call (a subclass's ``predict`` calling ``super().predict``, a Pipeline calling its final
  estimator) pass straight through.
* Every wrapper keeps the kind of callable it wraps (coroutine function, async generator, generator,
  plain), so frameworks that dispatch on ``inspect.iscoroutinefunction`` see what they expect.
* Exceptions go through unchanged; modeltel counts them once (see :mod:`modeltel.telemetry`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

import modeltel
from modeltel import taxonomy as tx

_MISSING = object()
ORIGINAL_ATTR = "__modeltel_original__"

# One flag for "a model library call is running in this context": nested library calls pass through.
_library_active: ContextVar[bool] = ContextVar("modeltel_library_active", default=False)
# The framework stage running in this context, so that a subclass override calling super() is one stage.
_framework_active: ContextVar[object] = ContextVar("modeltel_framework_active", default=None)


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


def record_confidences(values: Iterable[float]) -> None:
    """One confidence sample per prediction, on the active model; honours MODELTEL_RECORD_CONFIDENCE."""
    t = modeltel.telemetry()
    if not (t.enabled and t.settings.record_confidence):
        return
    for v in values:
        t.record_confidence(v)


def top_probabilities(probs: Any) -> list[float] | None:
    """Top-class probability per row of a 2-D probability array, or None if it is not one."""
    ndim = getattr(probs, "ndim", None)
    if ndim == 2:
        try:
            return probs.max(axis=1).tolist()
        except Exception:
            return None
    return None


# --------------------------------------------------------------------------------------------------
# Patching with exact restore
# --------------------------------------------------------------------------------------------------
class Patches:
    """Records every (owner, attribute, original ``__dict__`` entry) it replaces and puts them back exactly."""

    def __init__(self) -> None:
        self._items: list[tuple[Any, str, Any, Any]] = []  # owner, name, original or _MISSING, replacement
        self._hooked: list[tuple[type, Any, Any]] = []  # base, original __init_subclass__ entry, ours

    def __len__(self) -> int:
        return len(self._items)

    def replace(self, owner: Any, name: str, replacement: Any) -> None:
        original = owner.__dict__.get(name, _MISSING)
        setattr(owner, name, replacement)
        self._items.append((owner, name, original, replacement))

    def wrap(self, owner: Any, name: str, make: Callable[[Callable[..., Any], Any], Callable[..., Any]]) -> bool:
        """Wrap ``owner.__dict__[name]`` (a function or sklearn's ``available_if``) with ``make(fn, owner)``.

        Only an attribute the owner defines itself is wrapped: inherited ones are wrapped on the class that
        defines them. Returns False when there is nothing of the owner's own to wrap or it is wrapped already.
        """
        raw = owner.__dict__.get(name, _MISSING)
        if raw is _MISSING or getattr(raw, ORIGINAL_ATTR, None) is not None:
            return False
        if inspect.isfunction(raw):
            wrapper = make(raw, owner)
            setattr(wrapper, ORIGINAL_ATTR, raw)
        elif type(raw).__name__ == "_AvailableIfDescriptor" and inspect.isfunction(getattr(raw, "fn", None)):
            wrapped_fn = make(raw.fn, owner)
            wrapper = type(raw)(wrapped_fn, raw.check, raw.attribute_name)
            setattr(wrapper, ORIGINAL_ATTR, raw)
        else:  # staticmethod, classmethod, property, builtin: not a per-instance model call
            return False
        setattr(owner, name, wrapper)
        self._items.append((owner, name, raw, wrapper))
        return True

    def on_new_subclass(self, base: type, callback: Callable[[type], None]) -> None:
        """Call ``callback(cls)`` for every subclass of ``base`` created from now on (until restore)."""
        original = base.__dict__.get("__init_subclass__", _MISSING)

        def __init_subclass__(cls: type, **kwargs: Any) -> None:
            if original is _MISSING:
                super(base, cls).__init_subclass__(**kwargs)
            else:
                original.__get__(None, cls)(**kwargs)
            callback(cls)

        hook = classmethod(__init_subclass__)
        type.__setattr__(base, "__init_subclass__", hook)
        self._hooked.append((base, original, hook))

    def restore(self) -> None:
        for base, original, hook in reversed(self._hooked):
            if base.__dict__.get("__init_subclass__") is hook:
                if original is _MISSING:
                    type.__delattr__(base, "__init_subclass__")
                else:
                    type.__setattr__(base, "__init_subclass__", original)
        self._hooked.clear()
        for owner, name, original, replacement in reversed(self._items):
            if owner.__dict__.get(name, _MISSING) is not replacement:
                continue  # someone patched over us: leave their patch alone
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._items.clear()


def all_subclasses(base: type) -> list[type]:
    """``base`` and every subclass imported so far, each once."""
    seen: dict[type, None] = {}
    todo = [base]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen[cls] = None
        with contextlib.suppress(TypeError):
            todo.extend(type.__subclasses__(cls))
    return list(seen)


def patch_hierarchy(
    patches: Patches,
    base: type,
    makers: Mapping[str, Callable[[Callable[..., Any], Any], Callable[..., Any]]],
    *,
    through_mro: bool = False,
    owner_filter: Callable[[type], bool] | None = None,
) -> None:
    """Wrap each method named in ``makers`` (name -> make) on ``base`` and every subclass defining it, now and later.

    ``through_mro`` also wraps mixins in a subclass's MRO that are not themselves subclasses of ``base``
    (scikit-learn's ``LinearClassifierMixin.predict``, for instance).
    """

    def patch_class(cls: type) -> None:
        owners = cls.__mro__ if through_mro else (cls,)
        for owner in owners:
            if owner is object or (owner_filter is not None and not owner_filter(owner)):
                continue
            for name, make in makers.items():
                patches.wrap(owner, name, make)

    for cls in all_subclasses(base):
        patch_class(cls)
    patches.on_new_subclass(base, patch_class)


# --------------------------------------------------------------------------------------------------
# Kind-preserving wrappers
# --------------------------------------------------------------------------------------------------
def preserve_kind(
    func: Callable[..., Any],
    enter: Callable[[tuple, dict], Any],
    after: Callable[[Any, Any, tuple, dict], None] | None = None,
) -> Callable[..., Any]:
    wrapper = _preserve_kind(func, enter, after)
    # Each wrapper gets its own code object: frameworks tell overrides from base methods by
    # ``method.__code__ is Base.method.__code__`` (LitServe does), and all wrappers share one otherwise.
    wrapper.__code__ = wrapper.__code__.replace()
    return wrapper


def _preserve_kind(
    func: Callable[..., Any],
    enter: Callable[[tuple, dict], Any],
    after: Callable[[Any, Any, tuple, dict], None] | None = None,
) -> Callable[..., Any]:
    """Wrap ``func`` so each call runs inside the context manager ``enter(args, kwargs)`` (None: pass through).

    The wrapper has the same kind as ``func``; ``after(cm, result, args, kwargs)`` sees a plain result.
    """
    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
            cm = enter(args, kwargs)
            if cm is None:
                async for item in func(*args, **kwargs):
                    yield item
                return
            with cm:
                async for item in func(*args, **kwargs):
                    yield item

        return agen_wrapper
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            cm = enter(args, kwargs)
            if cm is None:
                return await func(*args, **kwargs)
            with cm as s:
                result = await func(*args, **kwargs)
                if after is not None:
                    after(s, result, args, kwargs)
                return result

        return async_wrapper
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            cm = enter(args, kwargs)
            if cm is None:
                return (yield from func(*args, **kwargs))
            with cm:
                return (yield from func(*args, **kwargs))

        return gen_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        cm = enter(args, kwargs)
        if cm is None:
            return func(*args, **kwargs)
        with cm as s:
            result = func(*args, **kwargs)
            if after is not None:
                after(s, result, args, kwargs)
            return result

    return wrapper


class Guarded:
    """A stage context manager that also holds a ContextVar for its duration (reentrancy guard)."""

    __slots__ = ("_stage", "_token", "_value", "_var")

    def __init__(self, stage: Any, var: ContextVar, value: Any) -> None:
        self._stage = stage
        self._var = var
        self._value = value

    def __enter__(self) -> Any:
        self._token = self._var.set(self._value)
        return self._stage.__enter__()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._stage.__exit__(exc_type, exc, tb)
        finally:
            try:  # noqa: SIM105 (hot path)
                self._var.reset(self._token)
            except ValueError:  # a generator finished in another context
                pass


def library_wrapper(
    library: str,
    method: str,
    after: Callable[[Any, Any, tuple, dict], None] | None = None,
) -> Callable[[Callable[..., Any], Any], Callable[..., Any]]:
    """A ``make`` for :meth:`Patches.wrap`: a model-library call as inference stage or nested child span."""
    attributes = stage_attributes(library, method)
    child_name = f"{library}.{method}"

    def make(func: Callable[..., Any], owner: Any) -> Callable[..., Any]:
        def enter(args: tuple, kwargs: dict) -> Any:
            if _library_active.get():
                return None
            return Guarded(library_stage(child_name, attributes), _library_active, True)

        return preserve_kind(func, enter, after)

    return make


def library_stage(child_name: str, attributes: Mapping[str, Any]) -> Any:
    """The stage a model-library call opens: inference, or a non-recording child of the active stage."""
    stage = modeltel.current_stage()
    if stage is None:
        return modeltel.stage(tx.STAGE_INFERENCE, attributes=attributes)
    return modeltel.stage(stage, span_name=child_name, attributes=attributes, record=False)


def framework_wrapper(
    framework: str,
    framework_stage: str,
    stage: str,
    *,
    model_of: Callable[[Any], tuple[str | None, str | None]] | None = None,
    batch_of: Callable[[tuple, dict], int | None] | None = None,
    after: Callable[[Any, Any, tuple, dict], None] | None = None,
) -> Callable[[Callable[..., Any], Any], Callable[..., Any]]:
    """A ``make`` for :meth:`Patches.wrap`: a serving framework's own stage method as a modeltel stage.

    ``model_of(self)`` gives (model name, version) known to the framework (None: the environment's);
    ``batch_of(args, kwargs)`` gives the batch size to record, when the framework batches.
    """
    attributes = stage_attributes(framework, framework_stage)
    key = (framework, framework_stage)

    def make(func: Callable[..., Any], owner: Any) -> Callable[..., Any]:
        def enter(args: tuple, kwargs: dict) -> Any:
            if _framework_active.get() is key:
                return None  # an override calling super(): one stage
            name = version = None
            if model_of is not None and args:
                name, version = model_of(args[0])
            st = modeltel.stage(stage, model_name=name, model_version=version, attributes=attributes)
            if batch_of is not None:
                n = batch_of(args, kwargs)
                if n is not None:
                    return _Batched(st, _framework_active, key, n)
            return Guarded(st, _framework_active, key)

        return preserve_kind(func, enter, after)

    return make


class _Batched(Guarded):
    __slots__ = ("_n",)

    def __init__(self, stage: Any, var: ContextVar, value: Any, n: int) -> None:
        super().__init__(stage, var, value)
        self._n = n

    def __enter__(self) -> Any:
        s = super().__enter__()
        s.set_attribute(tx.SPAN_ATTR_BATCH_SIZE, self._n)
        modeltel.record_batch_size(self._n)
        return s


# --------------------------------------------------------------------------------------------------
# Instrument a library when it is imported, not when the instrumentor loads
# --------------------------------------------------------------------------------------------------
class _LoaderProxy:
    """Delegates to the real loader; runs the hooks once the module has executed."""

    def __init__(self, loader: Any, fullname: str, finder: _PostImportFinder) -> None:
        self._loader = loader
        self._fullname = fullname
        self._finder = finder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__spec__.loader = self._loader  # leave the real loader on the module
        self._loader.exec_module(module)
        self._finder.fire(self._fullname)


class _PostImportFinder:
    def __init__(self) -> None:
        self.hooks: dict[str, list[Callable[[], None]]] = {}

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.hooks:
            return None
        import sys

        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _LoaderProxy(spec.loader, fullname, self)
        return spec

    def fire(self, fullname: str) -> None:
        for hook in self.hooks.pop(fullname, ()):
            hook()


_finder = _PostImportFinder()


def when_imported(module: str, hook: Callable[[], None]) -> Callable[[], None]:
    """Run ``hook`` now if ``module`` is imported, else right after its import; returns a cancel function.

    Library instrumentors use it so that ``opentelemetry-instrument`` does not import torch (seconds, in
    every worker process) for a service that never uses it.
    """
    import sys

    if module in sys.modules:
        hook()
        return lambda: None
    _finder.hooks.setdefault(module, []).append(hook)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)  # type: ignore[arg-type]

    def cancel() -> None:
        hooks = _finder.hooks.get(module)
        if hooks and hook in hooks:
            hooks.remove(hook)
            if not hooks:
                del _finder.hooks[module]

    return cancel


class PatchOnImportInstrumentor(BaseInstrumentor):
    """An instrumentor that patches a library when ``patched_module`` is imported (at once if it already is)
    and restores it exactly; subclasses say what to patch in :meth:`_apply`."""

    patched_module: str
    _patches: Patches | None = None
    _cancel: Callable[[], None] | None = None

    def _instrument(self, **kwargs: Any) -> None:
        self._cancel = when_imported(self.patched_module, self._patch)

    def _patch(self) -> None:
        self._patches = Patches()
        self._apply(self._patches)

    def _apply(self, patches: Patches) -> None:
        raise NotImplementedError

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
        if self._patches is not None:
            self._patches.restore()
            self._patches = None
