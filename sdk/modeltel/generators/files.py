"""Writing generated files and finding stale ones: one mechanism for every generator's ``{path: text}``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["stale", "write_files"]


def write_files(directory: str | Path, files: dict[str, str]) -> list[Path]:
    """Write ``files`` (relative path -> text) under ``directory``, touching only those that changed."""
    written = []
    for rel, text in files.items():
        path = Path(directory) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def stale(directory: str | Path, files: dict[str, str]) -> list[str]:
    """The paths of ``files`` whose copy under ``directory`` differs or is missing."""
    return [rel for rel, text in files.items() if not (p := Path(directory) / rel).exists() or p.read_text() != text]
