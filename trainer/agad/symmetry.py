"""Which turns change a part, measured on good parts before training (``turns=auto``).

A turned copy of a good part is a useful labelled anomaly only if a turned part is not a good part:
a garment upside down is wrong, a solar cell upside down looks like any other cell, and a part that
reaches the camera in any orientation is good in every one. Training G to fail on what is in fact a
good part teaches it to fail on good parts. So each turn is applied to held-out normals, and a
raw-pixel 5-NN search among the training normals is asked to tell them from the held-out normals
as they are: a turn it tells apart with an AUROC of at least :data:`CHANGES_PART` makes anomalies.
No label is needed, only good parts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from trainer.agad.augment import Turns
from trainer.agad.scoring import knn_distance
from trainer.metrics import auroc

CHANGES_PART = 0.75
"""Halfway between a turn no pixel search can see (AUROC 0.5) and one it always sees (1.0); what the
data sets of docs/RESULTS.md measure is in each model's ``training.turn_choice``."""
MIN_NORMALS = 10
"""Fewest held-out normals the measurement needs; below it turns stay as the default has them."""
SIDE = 32
"""Images are shrunk to at most this size first: a turn shows at any size, and the search stays cheap."""
MAX_TRAIN, MAX_HELD_OUT = 4096, 512
_TURNS_FOR: dict[frozenset[str], Turns | None] = {
    frozenset(): None,
    frozenset({"quarter"}): "quarter",
    frozenset({"half"}): "half",
    frozenset({"quarter", "half"}): "any",
}


@dataclass(frozen=True)
class TurnChoice:
    """The turns that make anomalies (None: none does) and the AUROC that decided each."""

    turns: Turns | None
    auroc: dict[str, float]
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _shrunk(images: torch.Tensor, limit: int) -> torch.Tensor:
    images = images[:limit].float()
    if images.shape[-1] > SIDE:
        images = F.adaptive_avg_pool2d(images, SIDE)
    return images


def turn_auroc(train_normal: torch.Tensor, held_out: torch.Tensor, quarters: int) -> float:
    """AUROC of a pixel 5-NN among ``train_normal`` telling ``held_out`` turned by ``quarters`` from
    ``held_out`` as it is; a quarter turn is measured half clockwise, half anticlockwise."""
    bank = train_normal.flatten(1)
    if quarters == 2:
        moved = held_out.rot90(2, (2, 3))
    else:
        half = len(held_out) // 2
        moved = torch.cat([held_out[:half].rot90(1, (2, 3)), held_out[half:].rot90(3, (2, 3))])
    as_is = knn_distance(held_out.flatten(1), bank)
    turned = knn_distance(moved.flatten(1), bank)
    labels = np.r_[np.zeros(len(as_is)), np.ones(len(turned))]
    return auroc(labels, np.r_[as_is, turned])


def choose_turns(train_normal: torch.Tensor, held_out: torch.Tensor) -> TurnChoice:
    """The turns that change a part, from training normals and held-out normals (N, C, H, W), square."""
    if len(held_out) < MIN_NORMALS or len(train_normal) < MIN_NORMALS:
        return TurnChoice(
            "quarter",
            {},
            f"fewer than {MIN_NORMALS} training or held-out normals to measure turns on: quarter turns, "
            "as the default has them",
        )
    bank, held = _shrunk(train_normal, MAX_TRAIN), _shrunk(held_out, MAX_HELD_OUT)
    measured = {name: turn_auroc(bank, held, quarters) for name, quarters in (("quarter", 1), ("half", 2))}
    changes = frozenset(name for name, value in measured.items() if value >= CHANGES_PART)
    turns = _TURNS_FOR[changes]
    described = ", ".join(f"{name} turn {value:.3f}" for name, value in measured.items())
    verdict = f"turned anomalies by: {turns}" if turns else "no turn changes the part: no turned anomalies"
    return TurnChoice(
        turns,
        measured,
        f"pixel 5-NN AUROC of turned held-out normals: {described}; a turn changes the part from "
        f"{CHANGES_PART}, so {verdict}",
    )
