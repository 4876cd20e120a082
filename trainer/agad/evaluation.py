"""What each epoch is judged by, on validation only; test AUROC per epoch is recorded for reporting.

The epoch is chosen by validation AUROC when validation holds enough labelled anomalies
(:data:`~trainer.metrics.MIN_ANOMALIES`: on fewer, an AUROC is mostly chance), else by the mean
score of validation normals (how well normality is reconstructed). Every epoch also records the
AUROC of validation normals against synthetically damaged copies of them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer.agad.batchnorm import recompute_statistics
from trainer.agad.scoring import score_batches
from trainer.agad.synthetic import synthetic_defects
from trainer.agad.variant import Variant
from trainer.fit import Criterion
from trainer.metrics import MIN_ANOMALIES, auroc


def selection_criterion(val_labels: np.ndarray) -> Criterion:
    """Enough labelled validation anomalies win over the proxy."""
    if int((val_labels == 1).sum()) >= MIN_ANOMALIES:
        return Criterion("val_auroc")
    return Criterion("val_normal_score", lower_is_better=True)


def normal_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device, limit: int = 4096
) -> Iterator[torch.Tensor]:
    normal = images[labels == 0][:limit]
    for start in range(0, len(normal), batch_size):
        yield normal[start : start + batch_size].to(device).contiguous(memory_format=torch.channels_last)


def epoch_evaluator(
    variant: Variant,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, np.ndarray],
    seed: int,
    discriminator: Callable[[], nn.Module | None],
    test: tuple[torch.Tensor, np.ndarray] | None = None,
) -> Callable[[nn.Module], dict[str, Any]]:
    """``evaluate(generator) -> record`` for :func:`trainer.fit.fit`; ``test`` is for reporting only."""
    val_images, val_labels = val
    normal = val_labels == 0
    val_normal = val_images[torch.from_numpy(normal)]
    damaged = synthetic_defects(val_normal, seed) if len(val_normal) else None
    score = variant.selection_score

    def evaluate(generator: nn.Module) -> dict[str, Any]:
        state = None
        if variant.recompute_batchnorm:
            state = copy.deepcopy(generator.state_dict())
            device = next(generator.parameters()).device
            recompute_statistics(generator, normal_batches(*train, variant.batch_size, device))
        record: dict[str, Any] = {}
        val_scores = score_batches(generator, val_images, discriminator())
        record["val_normal_score"] = float(val_scores[score][normal].mean())
        if damaged is not None:
            damaged_scores = score_batches(generator, damaged)[score]
            record["val_synthetic_auroc"] = auroc(
                np.r_[np.zeros(int(normal.sum())), np.ones(len(damaged))],
                np.r_[val_scores[score][normal], damaged_scores],
            )
        if (val_labels == 1).any():
            record["val_auroc"] = auroc(val_labels, val_scores[score])
        if test is not None:
            test_scores = score_batches(generator, test[0], discriminator())
            record["test_auroc"] = {name: auroc(test[1], scores) for name, scores in test_scores.items()}
        if state is not None:
            generator.load_state_dict(state)
        return record

    return evaluate
