"""The model artefact: one directory per model version.

``weights.safetensors`` holds the generator (plain tensors: loading runs no pickled code) and
``model.json`` (:mod:`agad_stream.model.card`, readable without torch) everything a scorer needs
to use it. The PyTorch backend and the trainer load both with :func:`load_scorer`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from agad_stream.errors import AgadError
from agad_stream.model.card import CARD, InputSpec, ModelCard, ScoreSpec, Threshold, load_card
from agad_stream.model.generator import build_generator
from agad_stream.model.provenance import WEIGHTS
from agad_stream.model.score import AnomalyScorer

# The card's types stay importable from here for code that loads and saves whole models.
__all__ = [
    "CARD",
    "WEIGHTS",
    "InputSpec",
    "ModelCard",
    "ScoreSpec",
    "Threshold",
    "load_card",
    "load_scorer",
    "save_model",
]

MEMORY_KEY = "score.memory"
"""Where the weights file keeps the latent memory (codes of training normals) of a memory score."""
DEFECT_MEMORY_KEY = "score.defect_memory"
"""... and the codes of labelled anomalies, for ``knn_contrast``."""
PIXELS_KEY = "score.pixels"
"""... and the per-pixel residual mean and spread of training normals, for ``local_z``."""
SCORE_KEYS = (MEMORY_KEY, DEFECT_MEMORY_KEY, PIXELS_KEY)
"""What the weights file holds beside the generator's own weights."""


def save_model(
    directory: Path,
    card: ModelCard,
    generator_state: dict[str, torch.Tensor],
    memory: torch.Tensor | None = None,
    defect_memory: torch.Tensor | None = None,
    pixels: torch.Tensor | None = None,
) -> Path:
    """Write weights (and what the score looks up: latent memories, pixel reference) and card."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = dict(generator_state)
    if memory is not None:
        tensors[MEMORY_KEY] = memory
    if defect_memory is not None:
        tensors[DEFECT_MEMORY_KEY] = defect_memory
    if pixels is not None:
        tensors[PIXELS_KEY] = pixels
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(directory / WEIGHTS))
    (directory / CARD).write_text(card.model_dump_json(indent=2) + "\n")
    return directory


def load_scorer(directory: Path, device: str | torch.device = "cpu") -> tuple[AnomalyScorer, ModelCard]:
    """The generator plus score of a model directory, in eval mode, and its card."""
    card = load_card(directory)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise AgadError(f"{directory} has no {WEIGHTS}; the model directory is incomplete")
    try:
        state = load_file(str(weights), device=str(device))
    except Exception as exc:  # safetensors refuses anything that is not its format (a pickle, say)
        raise AgadError(
            f"{weights} is not a safetensors file ({type(exc).__name__}: {exc}); nothing in it was run. "
            "Retrain the model or copy the version's files again"
        ) from None
    memory = state.pop(MEMORY_KEY, None)
    defect_memory = state.pop(DEFECT_MEMORY_KEY, None)
    pixels = state.pop(PIXELS_KEY, None)
    generator = build_generator(card.generator, card.input.image_size, card.input.channels)
    try:
        generator.load_state_dict(state)
    except RuntimeError as exc:
        raise AgadError(f"{weights} does not match the architecture in {CARD}: {exc}") from None
    spec = card.score
    try:
        scorer = AnomalyScorer(
            generator,
            spec.method,
            spec.topk_fraction,
            spec.pool_size,
            memory=memory,
            memory_k=spec.memory_k,
            reference=spec.reference,
            defect_memory=defect_memory,
            pixels=pixels,
        )
    except ValueError as exc:
        raise AgadError(f"{directory}: {exc}; retrain or re-save the model") from None
    return scorer.to(device).eval(), card
