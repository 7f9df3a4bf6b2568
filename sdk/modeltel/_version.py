"""modeltel's version, in a leaf module: the package's ``__init__`` re-exports it, the hot path and the
export pipeline name it in their instrumentation scopes, and ``pyproject.toml`` reads it (setuptools'
dynamic ``version``), so it lives in one place and importing it never depends on the order of
``modeltel/__init__``'s assignments."""

__version__ = "0.1.0"
