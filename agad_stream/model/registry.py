"""A model registry on disk: one directory per version and a pointer file naming the current one.

::

    REGISTRY/
      current          the name of the current version's directory, one line
      fm0-v1/          model directories (model.json, weights.safetensors, model.onnx, ...)
      fm0-v2/
      history.jsonl    one line per promotion: version, previous version, when, why

Promoting a version rewrites ``current`` atomically (write a temporary file, then rename), so a
scorer that polls the pointer reads either the old name or the new one, never half a name.
Directories whose name starts with a dot are versions being written (``.incoming-*``), never
served or listed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from agad_stream.errors import AgadError

POINTER = "current"


def is_registry(path: Path) -> bool:
    return (path / POINTER).is_file()


def current_version(registry: Path) -> Path:
    """The model directory ``registry/current`` points to; AgadError saying what is wrong."""
    pointer = registry / POINTER
    try:
        name = pointer.read_text().strip()
    except OSError as exc:
        raise AgadError(f"cannot read the registry pointer {pointer}: {exc}") from None
    if not name or "/" in name or name in (".", ".."):
        raise AgadError(f"{pointer} must hold the name of a version directory in {registry}, not {name!r}")
    directory = registry / name
    if not directory.is_dir():
        raise AgadError(f"{pointer} names {name!r}, but {directory} does not exist")
    return directory


def set_current(registry: Path, version: str) -> None:
    """Point ``registry/current`` at the version directory ``version``, atomically."""
    if not (registry / version).is_dir() or "/" in version:
        raise AgadError(f"{registry / version} is not a version directory of the registry {registry}")
    fd, temporary = tempfile.mkstemp(dir=registry, prefix=".current.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(version + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, registry / POINTER)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def versions(registry: Path) -> list[Path]:
    """The version directories of ``registry`` (those holding a model card), oldest first by name."""
    if not registry.is_dir():
        return []
    return sorted(
        p
        for p in registry.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "model.json").is_file()
    )
