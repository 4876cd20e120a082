"""Which weights and card a derived file (``model.onnx``, a TensorRT engine) was made from.

A model directory's card and weights can be rewritten (``agad train --out`` into an existing
directory) while files derived from them stay behind. Served together, the scorer would run the
old weights under the new card's threshold and version. So every derived file records what it was
made from, and every backend compares that with the directory before it loads anything:

- ``model.onnx`` carries metadata ``agad.model_version`` and ``agad.source_sha256``, the digest of
  :func:`source_digest` (the weights file and the parts of the card that the graph bakes in);
- an engine's ``.engine.json`` carries the ``model_version`` and the ``onnx_sha256`` of the graph it
  was built from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from agad_stream.errors import AgadError
from agad_stream.model.card import ModelCard

WEIGHTS = "weights.safetensors"
VERSION_KEY = "agad.model_version"
SOURCE_KEY = "agad.source_sha256"
PRECISION_KEY = "agad.precision"
DERIVED_PATTERNS = ("model.onnx", "model.int8.onnx", "*.engine", "*.engine.json")
"""Files made from a model directory's weights and card, which a retrain leaves stale."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_digest(directory: Path, card: ModelCard) -> str | None:
    """SHA-256 of the weights and of the card's generator, input and score (what the graph holds);
    None when the directory has no weights (a scorer host given only the graph)."""
    weights = directory / WEIGHTS
    if not weights.is_file():
        return None
    baked = card.model_dump(mode="json", include={"generator", "input", "score"})
    digest = hashlib.sha256(file_sha256(weights).encode())
    digest.update(json.dumps(baked, sort_keys=True).encode())
    return digest.hexdigest()


def check_onnx_stamp(path: Path, stamp: dict[str, str], card: ModelCard) -> None:
    """AgadError with the export command when the graph at ``path`` was made from another version or
    other weights than its directory holds now."""
    flag = " --precision int8" if stamp.get(PRECISION_KEY) == "int8" else ""
    fix = f"re-export it with `agad export --model {path.parent}{flag}`"
    exported = stamp.get(VERSION_KEY)
    if exported != card.model_version:
        raise AgadError(
            f"{path} was exported from model version {exported!r}, but {path.parent}/model.json is "
            f"version {card.model_version!r}: it is stale; {fix}"
        )
    expected = source_digest(path.parent, card)
    if expected is not None and stamp.get(SOURCE_KEY) != expected:
        raise AgadError(
            f"{path} was exported from other weights or another score than {path.parent} holds now "
            f"({SOURCE_KEY} {stamp.get(SOURCE_KEY)!r}, expected {expected}): it is stale; {fix}"
        )


def engine_staleness(
    engine: Path, model_version: str, onnx_sha256: str, card: ModelCard, model_dir: Path
) -> str | None:
    """Why the engine at ``engine`` no longer fits ``model_dir`` (None when it does)."""
    if model_version != card.model_version:
        return f"built from model version {model_version!r}, but model.json is version {card.model_version!r}"
    graph = model_dir / "model.onnx"
    if graph.is_file() and file_sha256(graph) != onnx_sha256:
        return f"built from another model.onnx than {graph} (onnx_sha256 {onnx_sha256[:12]}...)"
    return None


def remove_derived(directory: Path) -> list[Path]:
    """Delete the files derived from ``directory``'s weights and card; returns what was removed."""
    removed = []
    for pattern in DERIVED_PATTERNS:
        for path in sorted(directory.glob(pattern)):
            path.unlink()
            removed.append(path)
    return removed
