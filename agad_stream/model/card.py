"""``model.json``, the model card: everything a scorer needs to use a model version, without torch.

A scorer host running ONNX Runtime or TensorRT reads the card (input size, channels, threshold,
version) but never the PyTorch weights, so this module imports neither torch nor safetensors;
:mod:`agad_stream.model.artifact` adds loading and saving the weights.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agad_stream.errors import AgadError

CARD = "model.json"
FORMAT_VERSION = 1
DIGEST_FILES = ("model.json", "model.onnx", "weights.safetensors")
"""The files :func:`model_digest` covers: what any backend loads (engines are built per host)."""

Architecture = Literal["naive", "unet", "unetpp"]
ARCHITECTURES: tuple[Architecture, ...] = ("naive", "unet", "unetpp")
ScoreMethod = Literal["l2", "topk", "maxpool"]
SCORE_METHODS: tuple[ScoreMethod, ...] = ("l2", "topk", "maxpool")
"""Scores computed from the reconstruction residual alone."""
PixelMethod = Literal["local_z"]
PIXEL_METHODS: tuple[PixelMethod, ...] = ("local_z",)
"""Scores that compare each pixel's residual with its spread on training normals."""
MemoryMethod = Literal["knn_latent", "l2+knn_latent", "knn_contrast", "knn_or_local"]
MEMORY_METHODS: tuple[MemoryMethod, ...] = ("knn_latent", "l2+knn_latent", "knn_contrast", "knn_or_local")
"""Scores that also look up the image's code in the latent memory (codes of training normals)."""
AnyScore = ScoreMethod | PixelMethod | MemoryMethod
ALL_SCORES: tuple[AnyScore, ...] = (*SCORE_METHODS, *PIXEL_METHODS, *MEMORY_METHODS)


IMAGE_SIZES = (32, 64, 128, 256)
"""Square input sizes the generators take."""


class InputSpec(BaseModel):
    image_size: Literal[32, 64, 128, 256]
    channels: Literal[1, 3]
    colour: Literal["gray", "rgb"]
    normalisation: str = "x / 127.5 - 1 (uint8 pixels to [-1, 1])"


class ScoreSpec(BaseModel):
    method: AnyScore = "l2"
    topk_fraction: float = Field(0.01, gt=0, le=1)
    pool_size: int = Field(4, ge=1, le=256)
    memory_k: int = Field(5, ge=1, le=1000, description="neighbours averaged by the latent memory scores")
    reference: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="centre and spread of each part of a combined score on validation normals",
    )


class Threshold(BaseModel):
    """The alerting threshold (score >= value is anomalous) and the record of its calibration."""

    model_config = ConfigDict(extra="allow")

    value: float
    method: str = Field(description="how it was calibrated: f1_optimal, balanced or normal_quantile")
    target_fpr: float | None = Field(None, description="the false-positive rate a normal_quantile aims at")
    n_normal: int = Field(0, description="validation normals it was calibrated on")
    n_anomalous: int = Field(0, description="validation anomalies it was calibrated on")
    val_f1: float | None = Field(None, description="F1 on validation (when it holds anomalies)")
    val_fpr: float | None = Field(None, description="share of validation normals at or above it")
    val_fpr_interval: tuple[float, float] | None = Field(
        None, description="95 % Wilson interval of that false-positive rate, for the number of normals"
    )
    synthetic_recall: float | None = Field(
        None, description="share of validation normals with a drawn scratch or pasted patch it flags"
    )


class ModelCard(BaseModel):
    """Contents of model.json."""

    format: int = FORMAT_VERSION
    model_version: str
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    parent_version: str | None = None
    generator: Architecture
    variant: dict[str, Any] = Field(default_factory=dict)
    input: InputSpec
    score: ScoreSpec = Field(default_factory=ScoreSpec)
    threshold: Threshold
    score_statistics: dict[str, float] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)


def load_card(directory: Path) -> ModelCard:
    path = directory / CARD
    if not path.is_file():
        raise AgadError(
            f"{directory} is not a model directory: {CARD} is missing (train one with `agad train`)"
        )
    try:
        return ModelCard.model_validate(json.loads(path.read_text()))
    except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AgadError(f"{path} is not a valid model card: {exc}") from None


def model_digest(directory: Path) -> str:
    """SHA-256 identifying a model version's files, as the ``sha256`` of a ``models`` event.

    It is the digest of ``sha256sum``'s listing of the :data:`DIGEST_FILES` present, in that
    order, so a shell computes the same value::

        cd MODEL_DIR && sha256sum $(ls model.json model.onnx weights.safetensors 2>/dev/null) | sha256sum
    """
    listing = hashlib.sha256()
    for name in DIGEST_FILES:
        path = directory / name
        if path.is_file():
            file_hash = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    file_hash.update(block)
            listing.update(f"{file_hash.hexdigest()}  {name}\n".encode())
    return listing.hexdigest()
