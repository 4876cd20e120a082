"""``score=auto``: the deployable score a model ships with, checked on validation's labelled anomalies.

Every model starts from a standing choice: knn_contrast when training had labelled defects to
contrast with, else l2, the paper's score (docs/RESULTS.md, "Which score", says why). Another
candidate replaces it only when it beats it on the model's own validation split by more than
:data:`Z` standard errors. Why not simply the best validation AUROC: a factory's validation split
holds a handful of confirmed defects, and the best of six noisy AUROCs measured on eight defects
is mostly luck.

With fewer than :data:`~trainer.metrics.MIN_ANOMALIES` labelled anomalies in validation, a model
trained on normal images only is judged instead on validation normals against damaged copies of
them (trainer/agad/synthetic.py): no label is needed to ask which score notices a scratch. A model
trained with labelled defects keeps knn_contrast then, since drawn damage cannot say how near an
image lies to the defects it was shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from agad_stream.model.card import ALL_SCORES, MEMORY_METHODS, AnyScore
from agad_stream.model.score import AnomalyScorer
from trainer.agad.scoring import build_scorer
from trainer.agad.synthetic import synthetic_defects
from trainer.agad.variant import ScoreSetting
from trainer.data import Split
from trainer.evaluate import score_images, score_split
from trainer.metrics import MIN_ANOMALIES, auroc, auroc_standard_error

Z = 1.96
"""How many standard errors of the difference a candidate must lead by to replace the standing choice."""
CANDIDATES: tuple[AnyScore, ...] = ALL_SCORES
"""In order of preference when two challengers lead by as much: the plainer score first."""
# What a choice was measured on (ScoreChoice.evidence).
LABELLED = "labelled anomalies"
SYNTHETIC = "synthetically damaged copies of validation normals"


def applicable_scores(with_memory: bool, contrast: bool) -> tuple[AnyScore, ...]:
    """The candidates a generator can ship: memory scores need its code (``with_memory``), and
    knn_contrast labelled training anomalies to contrast with (``contrast``)."""
    return tuple(
        m
        for m in CANDIDATES
        if m not in MEMORY_METHODS or (with_memory and (m != "knn_contrast" or contrast))
    )


@dataclass(frozen=True)
class ScoreChoice:
    method: AnyScore
    reason: str
    val_auroc: dict[str, float]
    evidence: str | None = None  # None: nothing was measured, the variant set the score

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def standing_score(contrast_available: bool, turned: bool = False) -> AnyScore:
    """The score a model keeps unless validation clearly prefers another.

    ``turned``: the naive generator trained with turned (or stretched) normals as anomalies; its
    code then tells shapes apart, and knn_or_local (the code score, or the local residual where
    that is further from normal) led l2 on dev data (docs/RESULTS.md).
    """
    if contrast_available:
        return "knn_contrast"
    return "knn_or_local" if turned else "l2"


def pick_score(
    val_auroc: Mapping[str, float | None],
    n_anomalous: int,
    n_normal: int,
    *,
    standing: AnyScore,
    evidence: str = LABELLED,
) -> ScoreChoice:
    """The standing score, or the candidate that beats it on validation by more than Z standard errors.

    ``val_auroc`` may hold other keys (the benchmarks' ablation scores); only deployable
    candidates that were measured compete. The standard error of the difference is taken as if
    the two AUROCs were independent, which overstates it: the rule changes its mind reluctantly.
    ``evidence`` names what the ``n_anomalous`` anomalies are.
    """
    if n_anomalous < MIN_ANOMALIES:
        reason = (
            f"validation holds {n_anomalous} {evidence}, fewer than {MIN_ANOMALIES} "
            f"to compare scores on: {standing}, the standing choice"
        )
        return ScoreChoice(standing, reason, {})  # nothing measured: no evidence to name
    measured: dict[AnyScore, float] = {m: float(v) for m in CANDIDATES if (v := val_auroc.get(m)) is not None}
    if standing not in measured:
        raise ValueError(f"the standing score {standing!r} was not measured on validation")

    def lead(m: AnyScore) -> float:
        """How many standard errors of the difference candidate ``m`` leads the standing score by."""
        spread = math.hypot(
            auroc_standard_error(measured[m], n_anomalous, n_normal),
            auroc_standard_error(measured[standing], n_anomalous, n_normal),
        )
        return float((measured[m] - measured[standing]) / max(spread, 1e-12))

    challenger = max((m for m in measured if m != standing), key=lead, default=None)
    counts = f"over {n_anomalous} {evidence} and {n_normal} normals"
    values = {str(m): v for m, v in measured.items()}
    if challenger is not None and lead(challenger) > Z:
        reason = (
            f"{challenger} beats the standing {standing} on validation by {lead(challenger):.1f} standard "
            f"errors (AUROC {measured[challenger]:.3f} vs {measured[standing]:.3f}) {counts}"
        )
        return ScoreChoice(challenger, reason, values, evidence)
    best = f"; closest: {challenger} {measured[challenger]:.3f}" if challenger is not None else ""
    reason = (
        f"no candidate beats the standing {standing} (validation AUROC {measured[standing]:.3f}) by more "
        f"than {Z} standard errors {counts}{best}"
    )
    return ScoreChoice(standing, reason, values, evidence)


def choose_score(
    generator: nn.Module,
    val: Split,
    train_normal: torch.Tensor,
    val_normal: torch.Tensor,
    train_anomalous: torch.Tensor,
    *,
    with_memory: bool,
    turned: bool = False,
) -> ScoreChoice:
    """Measure every candidate score of a trained generator on ``val`` and pick one.

    ``with_memory``: whether the generator has a code to build the latent memory scores on (the
    naive generator); ``knn_contrast`` competes only when training had labelled anomalies. Without
    enough labelled anomalies in ``val`` and none in training, ``val_normal`` is compared with
    damaged copies of itself, unless the standing score is a code score. ``turned``: see
    :func:`standing_score`.
    """
    choice, _ = _measure_and_pick(
        generator, val, train_normal, val_normal, train_anomalous, with_memory, turned
    )
    return choice


def shipped_scorer(
    generator: nn.Module,
    score: ScoreSetting,
    val: Split,
    train_normal: torch.Tensor,
    val_normal: torch.Tensor,
    train_anomalous: torch.Tensor,
    *,
    with_memory: bool,
    turned: bool = False,
) -> tuple[AnomalyScorer, ScoreChoice]:
    """The scorer a trained generator is saved with: the variant's score, or the one ``auto`` picks."""
    if score == "auto":
        choice, measured = _measure_and_pick(
            generator, val, train_normal, val_normal, train_anomalous, with_memory, turned
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
    turned: bool,
) -> tuple[ScoreChoice, dict[str, AnomalyScorer]]:
    """The choice, and the candidate scorers built to measure it (none when nothing is measured)."""
    n_anomalous, n_normal = int((val.labels == 1).sum()), int((val.labels == 0).sum())
    contrast = with_memory and len(train_anomalous) > 0
    standing = standing_score(contrast_available=contrast, turned=turned and with_memory)
    labelled = n_anomalous >= MIN_ANOMALIES
    # Damage drawn in pixels moves the residual more than the code, so it cannot judge a standing
    # code score fairly (it ranks knn_latent last even where that leads on real defects).
    synthetic = (
        not labelled
        and not len(train_anomalous)
        and len(val_normal) >= MIN_ANOMALIES
        and standing not in MEMORY_METHODS
    )
    if not (labelled or synthetic):
        return pick_score({}, n_anomalous, n_normal, standing=standing), {}
    scorers = {
        str(m): build_scorer(generator, m, train_normal, val_normal, train_anomalous=train_anomalous)
        for m in applicable_scores(with_memory, contrast)
    }
    if labelled:
        measured = {m: auroc(val.labels, score_split(scorer, val)) for m, scorer in scorers.items()}
        return pick_score(measured, n_anomalous, n_normal, standing=standing), scorers
    damaged = synthetic_defects(val_normal)
    images = torch.cat([val_normal, damaged])
    labels = np.r_[np.zeros(len(val_normal), dtype=int), np.ones(len(damaged), dtype=int)]
    measured = {m: auroc(labels, score_images(scorer, images)) for m, scorer in scorers.items()}
    choice = pick_score(measured, len(damaged), len(val_normal), standing=standing, evidence=SYNTHETIC)
    return choice, scorers
