"""The model artefact: one directory per model version.

``weights.safetensors`` holds the generator (plain tensors: loading runs no pickled code) and
``model.json`` everything a scorer needs to use it: architecture, input size, channels,
normalisation, score, threshold and how it was calibrated, plus the record of how the model was
made (data split, metrics, parent version). Scorers load it with :func:`load_scorer`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors.torch import load_file, save_file

from agad_stream.errors import AgadError
from agad_stream.model.generator import Architecture, build_generator
from agad_stream.model.score import AnomalyScorer, ScoreMethod

WEIGHTS = "weights.safetensors"
CARD = "model.json"
FORMAT_VERSION = 1


class InputSpec(BaseModel):
    image_size: int
    channels: Literal[1, 3]
    colour: Literal["gray", "rgb"]
    normalisation: str = "x / 127.5 - 1 (uint8 pixels to [-1, 1])"


class ScoreSpec(BaseModel):
    method: ScoreMethod = "l2"
    topk_fraction: float = 0.01
    pool_size: int = 4


class Threshold(BaseModel):
    """The alerting threshold (score >= value is anomalous) and the record of its calibration."""

    model_config = ConfigDict(extra="allow")

    value: float
    method: str = Field(description="how it was calibrated, e.g. 'f1-optimal on validation'")
    target_fpr: float | None = None


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


def save_model(directory: Path, card: ModelCard, generator_state: dict[str, torch.Tensor]) -> Path:
    """Write weights and card into ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in generator_state.items()}, str(directory / WEIGHTS)
    )
    (directory / CARD).write_text(card.model_dump_json(indent=2) + "\n")
    return directory


def load_card(directory: Path) -> ModelCard:
    path = directory / CARD
    if not path.is_file():
        raise AgadError(
            f"{directory} is not a model directory: {CARD} is missing (train one with `agad train`)"
        )
    try:
        return ModelCard.model_validate(json.loads(path.read_text()))
    except (ValidationError, json.JSONDecodeError) as exc:
        raise AgadError(f"{path} is not a valid model card: {exc}") from None


def load_scorer(directory: Path, device: str | torch.device = "cpu") -> tuple[AnomalyScorer, ModelCard]:
    """The generator plus score of a model directory, in eval mode, and its card."""
    card = load_card(directory)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise AgadError(f"{directory} has no {WEIGHTS}; the model directory is incomplete")
    generator = build_generator(card.generator, card.input.image_size, card.input.channels)
    try:
        generator.load_state_dict(load_file(str(weights), device=str(device)))
    except RuntimeError as exc:
        raise AgadError(f"{weights} does not match the architecture in {CARD}: {exc}") from None
    scorer = AnomalyScorer(generator, card.score.method, card.score.topk_fraction, card.score.pool_size)
    return scorer.to(device).eval(), card
