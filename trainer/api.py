"""Training as a library: ``train(config, dataset, out)`` writes a model directory and returns it.

The command line (``agad train``), the retraining loop and the benchmarks all come through here::

    from trainer.api import TrainConfig, train
    from trainer.data import load_dataset
    from trainer.agad.variant import preset

    trained = train(TrainConfig(preset("default"), epochs=10), load_dataset("fmnist:0", 32), Path("m"))
    trained.card.threshold.value

Steps: fit the networks (:func:`fit_agad`: the AGAD step in the generic fit loop for the steps
:mod:`trainer.budget` gives, the round chosen on validation), build the score the model ships
(``score=auto`` measures it on validation), calibrate the threshold on validation, check for stuck
output pixels, and write weights and ``model.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from agad_stream.errors import AgadError
from agad_stream.model.artifact import SCORE_KEYS, WEIGHTS, save_model
from agad_stream.model.card import InputSpec, ModelCard, Threshold
from agad_stream.model.provenance import remove_derived
from agad_stream.model.score import AnomalyScorer
from agad_stream.preprocess import to_model_input
from trainer.agad.batches import batches_per_epoch, epoch_batches
from trainer.agad.batchnorm import recompute_statistics
from trainer.agad.evaluation import epoch_evaluator, normal_batches, selection_criterion
from trainer.agad.score_choice import ScoreChoice, shipped_scorer
from trainer.agad.step import AgadStep
from trainer.agad.symmetry import TurnChoice, choose_turns
from trainer.agad.synthetic import synthetic_defects
from trainer.agad.variant import Variant
from trainer.budget import Budget, training_budget
from trainer.data import DataSet, Split
from trainer.evaluate import evaluation_report, score_images, score_split, stuck_pixels
from trainer.fit import FitResult, fit
from trainer.metrics import ThresholdRule, calibrate_threshold

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run decides besides the data."""

    variant: Variant
    epochs: int | None = None  # a fixed budget in passes over the data; None (and no steps): adaptive
    steps: int | None = None  # a fixed budget in optimiser steps (trainer/budget.py)
    seed: int = 0
    threshold_rule: ThresholdRule = "f1"
    target_fpr: float = 0.01  # the threshold's false-positive rate when validation has no anomalies
    model_version: str | None = None  # default: a timestamp and the architecture
    parent_version: str | None = None
    init: Path | None = None  # start from this model directory's generator (fine-tuning)
    device: str = "auto"  # cpu, cuda, cuda:N, or auto (CUDA when available)
    report_test_per_epoch: bool = False  # record test AUROC each epoch (reporting only, never selection)


@dataclass
class AgadFit:
    """The fitted networks: G of the chosen epoch (eval mode), D of that epoch, how it went, and the
    variant as it trained on this data (``Variant.for_training_set``)."""

    variant: Variant
    generator: nn.Module
    discriminator: nn.Module | None
    fit: FitResult
    turn_choice: TurnChoice | None
    budget: Budget


@dataclass
class Trained:
    """A written model directory, with what made it."""

    directory: Path
    card: ModelCard
    scorer: AnomalyScorer
    networks: AgadFit
    score_choice: ScoreChoice
    stuck: list[tuple[int, int]] = field(default_factory=list)


def tensors(split: Split) -> torch.Tensor:
    return torch.from_numpy(to_model_input(split.images))


def fit_agad(
    dataset: DataSet,
    config: TrainConfig,
    *,
    checkpoint: Path | None = None,
    progress: bool = True,
    test: Split | None = None,
) -> AgadFit:
    """Train G (and D) on ``dataset.train``, choose the epoch on ``dataset.val``; ``test`` is reported
    per epoch when given, never used to choose."""
    device = torch.device(resolve_device(config.device))
    torch.manual_seed(config.seed)
    sampler = torch.Generator().manual_seed(config.seed)
    train_images, train_labels = tensors(dataset.train), torch.from_numpy(dataset.train.labels)
    variant, why = config.variant.for_training_set(int((train_labels == 0).sum()))
    if why:
        log.info("%s", why)
    val_images, val_labels = tensors(dataset.val), dataset.val.labels
    step = AgadStep(variant, dataset.image_size, dataset.channels, device)
    if config.init is not None:
        step.model.load_state_dict(generator_weights(config.init))
    turn_choice = None
    turns = None if variant.turns == "auto" else variant.turns
    if variant.turned_anomalies and variant.turns == "auto":
        turn_choice = choose_turns(
            train_images[train_labels == 0], val_images[torch.from_numpy(val_labels == 0)]
        )
        turns = turn_choice.turns
        log.info("turns=auto: %s", turn_choice.reason)
    evaluate = epoch_evaluator(
        variant,
        (train_images, train_labels),
        (val_images, val_labels),
        config.seed,
        lambda: step.discriminator,
        None if test is None else (tensors(test), test.labels),
    )
    steps_per_epoch = batches_per_epoch(train_labels, variant, turns)
    budget = training_budget(steps_per_epoch, epochs=config.epochs, steps=config.steps)
    log.info("training budget: %s", budget.reason)
    result = fit(
        step,
        lambda generator: epoch_batches(train_images, train_labels, variant, turns, generator),
        evaluate,
        selection_criterion(val_labels),
        budget=budget,
        sampler=sampler,
        ema=variant.ema,
        checkpoint=checkpoint,
        progress=progress,
        steps_per_epoch=steps_per_epoch,
    )
    if step.discriminator is not None and "discriminator" in result.companions:
        step.discriminator.load_state_dict(result.companions["discriminator"])
    if variant.recompute_batchnorm:
        recompute_statistics(
            result.model, normal_batches(train_images, train_labels, variant.batch_size, device)
        )
    result.model.eval()
    return AgadFit(variant, result.model, step.discriminator, result, turn_choice, budget)


def train(
    config: TrainConfig, dataset: DataSet, out: Path, *, progress: bool = True, resume: bool = False
) -> Trained:
    """Train on ``dataset`` and write the model directory ``out``; ``resume`` continues from its
    checkpoint (``out/checkpoint.pt``), which is removed once the model is written."""
    variant = config.variant
    if variant.score == "knn_contrast" and not dataset.train.n_anomalous:
        raise AgadError(
            f"score knn_contrast compares with labelled defects, and {dataset.spec} gives none for "
            "training: add labelled defects (--gamma, or images in train/<defect>/), or choose another score"
        )
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / CHECKPOINT
    if resume and not checkpoint.exists():
        raise AgadError(f"cannot resume: {checkpoint} does not exist; start without --resume")
    if not resume:
        checkpoint.unlink(missing_ok=True)
    networks = fit_agad(
        dataset,
        config,
        checkpoint=checkpoint,
        progress=progress,
        test=dataset.test if config.report_test_per_epoch else None,
    )
    scorer, choice = ship(networks.generator, dataset, networks.variant)
    stuck = stuck_pixels(scorer, dataset.val)
    if stuck:
        row, column = stuck[0]
        log.warning(
            "the generator is stuck at %d output pixels (e.g. row %d, column %d): it misses them on nearly "
            "every validation normal, so every heat-map shows them and topk or maxpool scores are "
            "unreliable; retrain with another seed (model.json: training.stuck_pixels)",
            len(stuck),
            row,
            column,
        )
    card = model_card(config, dataset, scorer, networks, choice, stuck)
    for stale in remove_derived(out):
        log.info("removed %s: it was made from the model this training replaces", stale)
    save_model(out, card, networks.generator.state_dict(), scorer.memory, scorer.defect_memory, scorer.pixels)
    checkpoint.unlink(missing_ok=True)
    return Trained(out, card, scorer, networks, choice, stuck)


def ship(generator: nn.Module, dataset: DataSet, variant: Variant) -> tuple[AnomalyScorer, ScoreChoice]:
    """The scorer a trained generator ships with (on the CPU), and why that score."""
    train_images, train_labels = tensors(dataset.train), torch.from_numpy(dataset.train.labels)
    val_images = tensors(dataset.val)
    return shipped_scorer(
        generator.cpu(),
        variant.score,
        dataset.val,
        train_images[train_labels == 0],
        val_images[torch.from_numpy(dataset.val.labels == 0)],
        train_images[train_labels == 1],
        with_memory=variant.arch == "naive",
        turned=variant.makes_anomalies,
    )


def model_card(
    config: TrainConfig,
    dataset: DataSet,
    scorer: AnomalyScorer,
    networks: AgadFit,
    choice: ScoreChoice,
    stuck: list[tuple[int, int]],
) -> ModelCard:
    """model.json of a trained model: threshold calibrated on validation, metrics of every split."""
    variant, result = networks.variant, networks.fit
    val_scores = score_split(scorer, dataset.val)
    threshold = with_synthetic_recall(
        calibrate_threshold(
            dataset.val.labels, val_scores, target_fpr=config.target_fpr, rule=config.threshold_rule
        ),
        scorer,
        dataset,
        config.seed,
    )
    test_scores = score_split(scorer, dataset.test)
    normal_val = val_scores[dataset.val.labels == 0]
    training: dict[str, Any] = {
        "budget": networks.budget.as_dict(),
        "steps": result.steps,
        "epochs": result.history[-1]["epoch"],
        "stopped": result.stopped,
        "best_step": result.best_step,
        "best_epoch": result.best_epoch,
        "seed": config.seed,
        "selection": selection_criterion(dataset.val.labels).key,
        "seconds": round(result.seconds, 1),
        "images_per_second": round(result.images_per_second, 1),
        "score_choice": choice.as_dict(),
        "stuck_pixels": [list(pixel) for pixel in stuck],
        "turn_choice": networks.turn_choice.as_dict() if networks.turn_choice else None,
        "init": str(config.init) if config.init else None,
        "history": result.history,
    }
    return ModelCard(
        model_version=config.model_version or f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{variant.arch}",
        parent_version=config.parent_version,
        generator=variant.arch,
        variant=variant.to_dict(),
        input=InputSpec(
            image_size=dataset.image_size,
            channels=dataset.channels,
            colour="gray" if dataset.channels == 1 else "rgb",
        ),
        score=scorer.spec(),
        threshold=threshold,
        score_statistics={
            "val_normal_mean": float(normal_val.mean()),
            "val_normal_std": float(normal_val.std()),
            "val_normal_p99": float(np.quantile(normal_val, 0.99)),
        },
        data=dataset.summary(),
        metrics={
            "val": evaluation_report(dataset.val, val_scores, threshold.value),
            "test": evaluation_report(dataset.test, test_scores, threshold.value, dataset.hard_groups),
        },
        training=training,
    )


def with_synthetic_recall(
    threshold: Threshold, scorer: AnomalyScorer, dataset: DataSet, seed: int
) -> Threshold:
    """``threshold`` with the share of damaged validation normals (a drawn scratch, a pasted patch)
    it flags: what it catches of defects nobody labelled, as far as drawn ones can tell."""
    normal = tensors(dataset.val)[torch.from_numpy(dataset.val.labels == 0)]
    if not len(normal):
        return threshold
    damaged = score_images(scorer, synthetic_defects(normal, seed))
    return threshold.model_copy(update={"synthetic_recall": float((damaged >= threshold.value).mean())})


def generator_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """The generator's weights of a model directory, without the score's memories."""
    path = model_dir / WEIGHTS
    if not path.is_file():
        raise AgadError(f"cannot start from {model_dir}: it has no {WEIGHTS}")
    state = load_file(str(path))
    return {k: v for k, v in state.items() if k not in SCORE_KEYS}


def resolve_device(device: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
