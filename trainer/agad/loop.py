"""The AGAD training loop (paper Algorithm 1) for both regimes.

Semi-supervised: normal images only. Supervised: normal images plus a few labelled anomalies,
oversampled so that every batch holds ``variant.anomalies_per_batch`` of them.

Model selection never looks at test labels: after each epoch the validation split is scored and
the best epoch kept: by validation AUROC when validation holds enough labelled anomalies
(``trainer.metrics.MIN_ANOMALIES``), else by the mean validation score of normal images (how well
normality is reconstructed) or, with ``variant.selection == "synthetic"``, by the AUROC of
validation normals against copies of them with a drawn scratch or pasted patch
(trainer/agad/synthetic.py); both are recorded every epoch.
When a test split is passed, its AUROC per epoch is recorded too, labelled as such, only to
compare like with like with GANomaly-family code that reports the best epoch on the test set.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from agad_stream.model.discriminator import Discriminator
from agad_stream.model.generator import build_generator
from trainer.agad.augment import Turns, random_flips, stretched, turned
from trainer.agad.batchnorm import RoutedBatchNorm2d, main_route_state_dict, recompute_statistics, routed
from trainer.agad.loss import discriminator_loss, generator_loss, generator_terms
from trainer.agad.scoring import score_batches
from trainer.agad.symmetry import TurnChoice, choose_turns
from trainer.agad.synthetic import damage_some, synthetic_defects
from trainer.agad.variant import Variant
from trainer.metrics import MIN_ANOMALIES, auroc

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    """Preprocessed tensors, (N, C, H, W) in [-1, 1], and labels (0 normal, 1 anomalous)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: np.ndarray
    test_images: torch.Tensor | None = None
    test_labels: np.ndarray | None = None


@dataclass
class TrainResult:
    generator: nn.Module  # plain BatchNorm, eval mode, best epoch
    discriminator: nn.Module | None
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # training steps only, evaluation excluded
    images_per_second: float = 0.0
    turn_choice: TurnChoice | None = None  # what ``turns=auto`` measured and chose

    def generator_state(self) -> dict[str, torch.Tensor]:
        return main_route_state_dict(self.generator)


def _batches(
    data: TrainData, variant: Variant, turns: Turns | None, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One epoch over the normal images as (inputs, targets, labels); labelled anomalies are drawn with
    replacement into each batch, and ``variant.turned_anomalies`` of its normals are added again,
    turned by ``turns`` (None: not at all) and labelled anomalous, and ``variant.stretched_anomalies``
    stretched or squeezed. Inputs differ from targets only where ``variant.repair`` damaged them."""
    labels = data.train_labels
    normal = torch.nonzero(labels == 0).squeeze(1)
    anomalous = torch.nonzero(labels == 1).squeeze(1)
    normals_per_batch, per_batch = _batch_shares(data, variant, turns)
    order = normal[torch.randperm(len(normal), generator=generator)]
    for start in range(0, len(order), normals_per_batch):
        index = order[start : start + normals_per_batch]
        if len(index) < 2:
            continue  # BatchNorm needs two samples
        if per_batch:
            drawn = anomalous[torch.randint(len(anomalous), (per_batch,), generator=generator)]
            index = torch.cat([index, drawn])
        targets = random_flips(data.train_images[index], variant.augment, generator)
        inputs = damage_some(targets, labels[index] == 0, variant.repair, generator)
        batch_labels = labels[index]
        if variant.turned_anomalies and turns is not None:
            rotated = turned(data.train_images[index[: variant.turned_anomalies]], turns, generator)
            inputs, targets = torch.cat([inputs, rotated]), torch.cat([targets, rotated])
            batch_labels = torch.cat([batch_labels, torch.ones(len(rotated), dtype=labels.dtype)])
        if variant.stretched_anomalies:
            reshaped = stretched(data.train_images[index[-variant.stretched_anomalies :]], generator)
            inputs, targets = torch.cat([inputs, reshaped]), torch.cat([targets, reshaped])
            batch_labels = torch.cat([batch_labels, torch.ones(len(reshaped), dtype=labels.dtype)])
        yield inputs, targets, batch_labels


def _batch_shares(data: TrainData, variant: Variant, turns: Turns | None) -> tuple[int, int]:
    """How many normal images and how many labelled anomalies (when there are any) a batch holds; the
    rest of the batch is turned or stretched normals."""
    labelled = (
        min(variant.anomalies_per_batch, variant.batch_size - 1)
        if bool((data.train_labels == 1).any())
        else 0
    )
    made = (variant.turned_anomalies if turns is not None else 0) + variant.stretched_anomalies
    return max(1, variant.batch_size - labelled - made), labelled


def _build(variant: Variant, image_size: int, channels: int) -> tuple[nn.Module, Discriminator | None]:
    norm = RoutedBatchNorm2d if variant.batchnorm == "separate" else nn.BatchNorm2d
    generator = build_generator(variant.arch, image_size, channels, norm=norm, latent_dim=variant.latent_dim)
    discriminator = Discriminator(image_size, channels) if variant.adversarial else None
    return generator, discriminator


def _normal_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device, limit: int = 4096
) -> Iterator[torch.Tensor]:
    normal = images[labels == 0][:limit]
    for start in range(0, len(normal), batch_size):
        yield normal[start : start + batch_size].to(device).contiguous(memory_format=torch.channels_last)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def train_agad(
    data: TrainData,
    variant: Variant,
    *,
    image_size: int,
    epochs: int,
    seed: int = 0,
    checkpoint: Path | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train, select the best epoch on validation, and return the models of that epoch.

    Data stays in host memory; each batch moves to ``device``. The returned models live on ``device``.
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    sampler = torch.Generator().manual_seed(seed)
    channels = data.train_images.shape[1]
    generator, discriminator = _build(variant, image_size, channels)
    generator = generator.to(device).to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(generator.parameters(), lr=variant.lr, betas=(variant.beta1, 0.999))
    opt_d = None
    if discriminator is not None:
        discriminator = discriminator.to(device).to(memory_format=torch.channels_last)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=variant.lr, betas=(variant.beta1, 0.999))
    # With variant.ema > 0 epochs are evaluated, selected and returned as an exponential moving
    # average of G's weights: GAN training moves G from step to step, the average does not.
    average = copy.deepcopy(generator) if variant.ema > 0 else None
    average_steps = 0  # updates folded into the average; its first one replaces the initial weights
    history: list[dict[str, Any]] = []
    start_epoch = 0
    best: dict[str, Any] | None = None
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True, map_location="cpu")
        generator.load_state_dict(state["generator"])
        opt_g.load_state_dict(state["opt_g"])
        if discriminator is not None and opt_d is not None:
            discriminator.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["opt_d"])
        if average is not None:
            average.load_state_dict(state["average"])
            average_steps = int(state["average_steps"])
        sampler.set_state(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        history = json.loads(state["history"])
        best = {
            "epoch": state["best_epoch"],
            "generator": state["best_generator"],
            "discriminator": state.get("best_discriminator"),
        }
        start_epoch = len(history)
        log.info("resumed from %s at epoch %d", checkpoint, start_epoch)

    val_normal = data.val_images[torch.from_numpy(data.val_labels == 0)]
    turn_choice = None
    turns: Turns | None = None if variant.turns == "auto" else variant.turns
    if variant.turned_anomalies and variant.turns == "auto":
        turn_choice = choose_turns(data.train_images[data.train_labels == 0], val_normal)
        turns = turn_choice.turns
        log.info("turns=auto: %s", turn_choice.reason)
    damaged = synthetic_defects(val_normal, seed) if len(val_normal) else None
    criterion = selection_criterion(variant, data.val_labels)
    seen = 0
    training_seconds = 0.0
    for epoch in range(start_epoch, epochs):
        generator.train()
        if discriminator is not None:
            discriminator.train()
        sums: dict[str, float] = {}
        steps = 0
        epoch_started = time.perf_counter()
        batches = _batches(data, variant, turns, sampler)
        bar = tqdm(
            batches,
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not progress,
            leave=False,
            total=-(-int((data.train_labels == 0).sum()) // _batch_shares(data, variant, turns)[0]),
        )
        for inputs, x, y in bar:
            inputs = inputs.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            losses = _step(inputs, x, y, generator, discriminator, opt_g, opt_d, variant)
            if average is not None:
                average_steps += 1
                _update_average(average, generator, _debiased(variant.ema, average_steps))
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
            steps += 1
            seen += x.shape[0]
            bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()})
        training_seconds += time.perf_counter() - epoch_started
        record: dict[str, Any] = {"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in sums.items()}}
        evaluated = average if average is not None else generator
        record.update(_evaluate_epoch(data, variant, evaluated, discriminator, damaged))
        history.append(record)
        if best is None or _better(record, history[best["epoch"] - 1], criterion):
            best = {
                "epoch": epoch + 1,
                "generator": copy.deepcopy(evaluated.state_dict()),
                "discriminator": copy.deepcopy(discriminator.state_dict()) if discriminator else None,
            }
        log.info(
            "epoch %d: %s",
            epoch + 1,
            {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()},
        )
        if progress:
            tqdm.write(_summary(record))
        if checkpoint is not None:
            _save_checkpoint(
                checkpoint,
                generator,
                (average, average_steps),
                discriminator,
                opt_g,
                opt_d,
                sampler,
                history,
                best,
            )
    assert best is not None, "epochs must be at least 1"
    generator.load_state_dict(best["generator"])
    if discriminator is not None and best["discriminator"] is not None:
        discriminator.load_state_dict(best["discriminator"])
    if variant.batchnorm == "recompute":
        recompute_statistics(
            generator,
            _normal_batches(data.train_images, data.train_labels, variant.batch_size, _device_of(generator)),
        )
    generator.eval()
    return TrainResult(
        generator,
        discriminator,
        best["epoch"],
        history,
        training_seconds,
        seen / max(training_seconds, 1e-9),
        turn_choice,
    )


def _debiased(decay: float, step: int) -> float:
    """The decay for update ``step`` (from 1) that weighs only trained weights, never the initial ones.

    With a plain decay the initial weights keep a share decay**steps of the average, most of it
    after the few steps a small data set gives (0.98**30 = 0.55); this is Adam's bias correction.
    """
    return decay * (1 - decay ** (step - 1)) / (1 - decay**step)


@torch.no_grad()
def _update_average(average: nn.Module, generator: nn.Module, decay: float) -> None:
    """average ← decay·average + (1 − decay)·generator for weights; BatchNorm buffers are copied."""
    for mean, current in zip(average.parameters(), generator.parameters(), strict=True):
        mean.lerp_(current, 1.0 - decay)
    for kept, live in zip(average.buffers(), generator.buffers(), strict=True):
        kept.copy_(live)


def _step(
    inputs: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    generator: nn.Module,
    discriminator: nn.Module | None,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer | None,
    variant: Variant,
) -> dict[str, float]:
    x_hat = generator(inputs)  # the reconstruction target is always x, the clean image
    x_hat2 = None
    if variant.w_adcon > 0:
        source = x_hat.detach() if variant.detach_pseudo else x_hat
        with routed(generator, "aux"):
            x_hat2 = generator(source)
    fake_logit = z_real = z_fake = None
    if discriminator is not None:
        fake_logit, z_fake = discriminator(x_hat)
        with torch.no_grad():
            _, z_real = discriminator(x)
    terms = generator_terms(x, x_hat, x_hat2, fake_logit, z_real, z_fake, variant)
    g_loss = generator_loss(terms, y, variant)
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    losses = {
        "g": g_loss.item(),
        "con": terms.contextual.mean().item(),
        "adcon": terms.contextual_adversarial.mean().item(),
    }
    if discriminator is not None and opt_d is not None:
        real_logit, _ = discriminator(x)
        fake_logit, _ = discriminator(x_hat.detach())
        d_loss = discriminator_loss(real_logit, fake_logit, y)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        losses["d"] = d_loss.item()
        if losses["d"] < variant.d_reinit_below:
            for module in discriminator.modules():
                if isinstance(module, nn.Conv2d | nn.Linear | nn.BatchNorm2d):
                    module.reset_parameters()
            log.info("discriminator loss collapsed; re-initialised D")
    return losses


def _evaluate_epoch(
    data: TrainData,
    variant: Variant,
    generator: nn.Module,
    discriminator: nn.Module | None,
    damaged: torch.Tensor | None,
) -> dict[str, Any]:
    """Validation numbers for model selection, plus test AUROC when test data was given (reporting only)."""
    if variant.batchnorm == "recompute":
        state = copy.deepcopy(generator.state_dict())
        recompute_statistics(
            generator,
            _normal_batches(data.train_images, data.train_labels, variant.batch_size, _device_of(generator)),
        )
    record: dict[str, Any] = {}
    val = score_batches(generator, data.val_images, discriminator)
    normal = data.val_labels == 0
    record["val_normal_score"] = float(val[variant.selection_score][normal].mean())
    if damaged is not None:
        damaged_scores = score_batches(generator, damaged)[variant.selection_score]
        record["val_synthetic_auroc"] = auroc(
            np.r_[np.zeros(int(normal.sum())), np.ones(len(damaged))],
            np.r_[val[variant.selection_score][normal], damaged_scores],
        )
    if (data.val_labels == 1).any():
        record["val_auroc"] = auroc(data.val_labels, val[variant.selection_score])
    if data.test_images is not None and data.test_labels is not None:
        test = score_batches(generator, data.test_images, discriminator)
        record["test_auroc"] = {name: auroc(data.test_labels, scores) for name, scores in test.items()}
    if variant.batchnorm == "recompute":
        generator.load_state_dict(state)
    return record


def selection_criterion(variant: Variant, val_labels: np.ndarray) -> str:
    """The history key that chooses the epoch: enough labelled validation anomalies win over any proxy."""
    if int((val_labels == 1).sum()) >= MIN_ANOMALIES:
        return "val_auroc"
    return "val_synthetic_auroc" if variant.selection == "synthetic" else "val_normal_score"


def _better(candidate: dict[str, Any], incumbent: dict[str, Any], criterion: str) -> bool:
    if criterion == "val_normal_score":  # lower is better
        return bool(candidate[criterion] < incumbent[criterion])
    return bool(candidate[criterion] > incumbent[criterion])


def _summary(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']}"]
    for key in ("g", "d", "con", "adcon", "val_normal_score", "val_synthetic_auroc", "val_auroc"):
        if key in record:
            parts.append(f"{key} {record[key]:.4g}")
    if "test_auroc" in record:
        parts.append(
            "test_auroc(report only) " + " ".join(f"{k}={v:.3f}" for k, v in record["test_auroc"].items())
        )
    return " | ".join(parts)


def _save_checkpoint(
    path: Path,
    generator: nn.Module,
    average: tuple[nn.Module | None, int],
    discriminator: nn.Module | None,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer | None,
    sampler: torch.Generator,
    history: list[dict[str, Any]],
    best: dict[str, Any],
) -> None:
    state: dict[str, Any] = {
        "generator": generator.state_dict(),
        "opt_g": opt_g.state_dict(),
        "sampler": sampler.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": json.dumps(history),
        "best_epoch": best["epoch"],
        "best_generator": best["generator"],
    }
    if average[0] is not None:
        state.update(average=average[0].state_dict(), average_steps=average[1])
    if discriminator is not None and opt_d is not None:
        state.update(
            discriminator=discriminator.state_dict(),
            opt_d=opt_d.state_dict(),
            best_discriminator=best["discriminator"],
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)
