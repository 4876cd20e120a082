"""``score=auto``: the deployable score a model ships with, chosen on validation's labelled anomalies.

No score wins on every data set (docs/RESULTS.md, "Which score"): with a few labelled defects the
latent contrast separates Fashion-MNIST best while a reconstruction score can win on elpv. A model
trained with labels can measure that on its own validation split, so ``auto`` does; with fewer
than :data:`MIN_ANOMALIES` labelled anomalies there is nothing trustworthy to measure, and
it keeps l2, the paper's score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from agad_stream.model.card import MEMORY_METHODS, SCORE_METHODS, MemoryMethod, ScoreMethod
from agad_stream.model.score import AnomalyScorer
from trainer.agad.scoring import build_scorer
from trainer.agad.variant import ScoreSetting
from trainer.data import Split
from trainer.evaluate import score_split
from trainer.metrics import auroc

MIN_ANOMALIES = 5
CANDIDATES: tuple[ScoreMethod | MemoryMethod, ...] = (*SCORE_METHODS, *MEMORY_METHODS)
"""In order of preference on a tie: the plainer score first."""


@dataclass(frozen=True)
class ScoreChoice:
    method: ScoreMethod | MemoryMethod
    reason: str
    val_auroc: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pick_score(val_auroc: Mapping[str, float | None], n_anomalous: int) -> ScoreChoice:
    """The candidate with the highest validation AUROC; l2 when validation has too few anomalies.

    ``val_auroc`` may hold other keys (the benchmarks' ablation scores); only deployable
    candidates that were measured compete.
    """
    if n_anomalous < MIN_ANOMALIES:
        reason = (
            f"validation holds {n_anomalous} labelled anomalies, fewer than {MIN_ANOMALIES} "
            "to compare scores on: l2, the paper's score"
        )
        return ScoreChoice("l2", reason, {})
    measured: dict[ScoreMethod | MemoryMethod, float] = {
        m: float(v) for m in CANDIDATES if (v := val_auroc.get(m)) is not None
    }
    best = max(measured, key=lambda m: measured[m])  # max keeps the first of equals
    reason = f"highest validation AUROC ({measured[best]:.3f}) over {n_anomalous} labelled anomalies"
    return ScoreChoice(best, reason, {str(m): v for m, v in measured.items()})


def choose_score(
    generator: nn.Module,
    val: Split,
    train_normal: torch.Tensor,
    val_normal: torch.Tensor,
    train_anomalous: torch.Tensor,
    *,
    with_memory: bool,
) -> ScoreChoice:
    """Measure every candidate score of a trained generator on ``val`` and pick one.

    ``with_memory``: whether the generator has a code to build the latent memory scores on (the
    naive generator); ``knn_contrast`` competes only when training had labelled anomalies.
    """
    return _measure_and_pick(generator, val, train_normal, val_normal, train_anomalous, with_memory)[0]


def shipped_scorer(
    generator: nn.Module,
    score: ScoreSetting,
    val: Split,
    train_normal: torch.Tensor,
    val_normal: torch.Tensor,
    train_anomalous: torch.Tensor,
    *,
    with_memory: bool,
) -> tuple[AnomalyScorer, ScoreChoice]:
    """The scorer a trained generator is saved with: the variant's score, or the one ``auto`` picks."""
    if score == "auto":
        choice, measured = _measure_and_pick(
            generator, val, train_normal, val_normal, train_anomalous, with_memory
        )
        if choice.method in measured:  # already built while measuring
            return measured[choice.method], choice
    else:
        choice = ScoreChoice(score, "set by the variant", {})
    scorer = build_scorer(generator, choice.method, train_normal, val_normal, train_anomalous=train_anomalous)
    return scorer, choice


def _measure_and_pick(
    generator: nn.Module,
    val: Split,
    train_normal: torch.Tensor,
    val_normal: torch.Tensor,
    train_anomalous: torch.Tensor,
    with_memory: bool,
) -> tuple[ScoreChoice, dict[str, AnomalyScorer]]:
    """The choice, and the candidate scorers built to measure it (none with too few anomalies)."""
    n_anomalous = int((val.labels == 1).sum())
    if n_anomalous < MIN_ANOMALIES:
        return pick_score({}, n_anomalous), {}
    scorers = {
        str(m): build_scorer(generator, m, train_normal, val_normal, train_anomalous=train_anomalous)
        for m in CANDIDATES
        if m in SCORE_METHODS or (with_memory and (m != "knn_contrast" or len(train_anomalous)))
    }
    measured = {m: auroc(val.labels, score_split(scorer, val)) for m, scorer in scorers.items()}
    return pick_score(measured, n_anomalous), scorers
