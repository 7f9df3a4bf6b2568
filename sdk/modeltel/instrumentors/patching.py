"""Patching with exact restore: what every instrumentor replaces goes back exactly as it was.

Better than contrib's ``unwrap``: :meth:`Patches.restore` puts back the original ``__dict__`` entry
(or removes the attribute the owner never had), leaves alone a patch another library put over ours,
and also removes the ``__init_subclass__`` hook that wraps classes defined after ``instrument()``.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any

_MISSING = object()
ORIGINAL_ATTR = "__modeltel_original__"
Make = Callable[[Callable[..., Any], Any], Callable[..., Any]]  # (function, owner) -> wrapper


class Patches:
    """Records every (owner, attribute, original ``__dict__`` entry) it replaces and puts them back exactly."""

    def __init__(self) -> None:
        self._items: list[tuple[Any, str, Any, Any]] = []  # owner, name, original or _MISSING, replacement
        self._hooked: list[tuple[type, Any, Any]] = []  # base, original __init_subclass__ entry, ours
        self._undo: list[Callable[[], None]] = []  # anything else instrument() did, undone first
        self.lock = threading.Lock()  # for patches made lazily, from request threads

    def __len__(self) -> int:
        return len(self._items)

    def defer(self, undo: Callable[[], None]) -> None:
        """Call ``undo()`` on :meth:`restore` (removing hook handles, turning a contrib instrumentor off)."""
        self._undo.append(undo)

    def replace(self, owner: Any, name: str, replacement: Any) -> None:
        """Set ``owner.name`` (a class's own attribute, or an instance's, ``__slots__`` included)."""
        original = _own(owner, name)
        setattr(owner, name, replacement)
        self._items.append((owner, name, original, replacement))

    def wrap(self, owner: Any, name: str, make: Make) -> bool:
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
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        for base, original, hook in reversed(self._hooked):
            if base.__dict__.get("__init_subclass__") is hook:
                if original is _MISSING:
                    type.__delattr__(base, "__init_subclass__")
                else:
                    type.__setattr__(base, "__init_subclass__", original)
        self._hooked.clear()
        for owner, name, original, replacement in reversed(self._items):
            if _own(owner, name) is not replacement:
                continue  # someone patched over us: leave their patch alone
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._items.clear()


def _own(owner: Any, name: str) -> Any:
    """``owner``'s own value of ``name`` (never an inherited one), or ``_MISSING``."""
    if hasattr(owner, "__dict__"):
        return owner.__dict__.get(name, _MISSING)
    return getattr(owner, name, _MISSING)  # an instance with __slots__


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
    makers: Mapping[str, Make],
    *,
    through_mro: bool = False,
) -> None:
    """Wrap each method named in ``makers`` (name -> make) on ``base`` and every subclass defining it, now and later.

    ``through_mro`` also wraps mixins in a subclass's MRO that are not themselves subclasses of ``base``
    (scikit-learn's ``LinearClassifierMixin.predict``, for instance).
    """

    def patch_class(cls: type) -> None:
        owners = cls.__mro__ if through_mro else (cls,)
        for owner in owners:
            if owner is object:
                continue
            for name, make in makers.items():
                patches.wrap(owner, name, make)

    for cls in all_subclasses(base):
        patch_class(cls)
    patches.on_new_subclass(base, patch_class)
