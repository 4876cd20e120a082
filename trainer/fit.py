"""A generic fit loop: rounds of steps, a weight average, evaluation per round, model selection, resume.

It knows nothing of AGAD. A :class:`Step` owns the networks and their optimisers and trains on one
batch; :func:`fit` runs rounds of whole epochs until its :class:`~trainer.budget.Budget` is spent
or its patience runs out, keeps an exponential moving average of ``step.model`` when asked (it is
then what gets evaluated, selected and returned: the average moves less from step to step than the
live weights), evaluates after every round, keeps the best round by a :class:`Criterion`, and
checkpoints everything a resumed run needs to continue exactly where it stopped.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from trainer.budget import Budget

log = logging.getLogger(__name__)


class Step(Protocol):
    """One training step over a batch; owns the networks and their optimisers."""

    model: nn.Module
    """What is averaged, evaluated, selected and returned (the generator)."""

    def train(self) -> None:
        """Put every network in training mode."""

    def __call__(self, batch: Any) -> dict[str, float]:
        """Train on ``batch``; returns its losses by name."""

    def state_dict(self) -> dict[str, Any]:
        """Networks and optimisers, for a checkpoint."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def companions(self) -> dict[str, Any]:
        """States to keep with the selected epoch besides the model's (a discriminator, say)."""


@dataclass(frozen=True)
class Criterion:
    """The key of an epoch's record that chooses the epoch, and which way is better."""

    key: str
    lower_is_better: bool = False

    def better(self, candidate: dict[str, Any], incumbent: dict[str, Any]) -> bool:
        if self.lower_is_better:
            return bool(candidate[self.key] < incumbent[self.key])
        return bool(candidate[self.key] > incumbent[self.key])


@dataclass
class FitResult:
    model: nn.Module  # the selected epoch's weights (the average, with ema), eval mode
    best_epoch: int  # epochs run when the selected round was judged
    companions: dict[str, Any]  # Step.companions() of the selected epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # training steps only, evaluation excluded
    images_per_second: float = 0.0
    best_step: int = 0  # optimiser steps run when the selected round was judged
    steps: int = 0  # optimiser steps run in all
    stopped: str = ""  # why training ended: the budget spent, or patience out


def fit(
    step: Step,
    batches: Callable[[torch.Generator], Iterable[Any]],
    evaluate: Callable[[nn.Module], dict[str, Any]],
    criterion: Criterion,
    *,
    budget: Budget,
    sampler: torch.Generator,
    ema: float = 0.0,
    checkpoint: Path | None = None,
    progress: bool = True,
    steps_per_epoch: int = 1,
    batch_images: Callable[[Any], int] = lambda batch: int(batch[0].shape[0]),
) -> FitResult:
    """Train in rounds of ``budget.round_epochs`` epochs of ``batches(sampler)`` until the budget is
    spent or its patience runs out, and return the best round by ``criterion``.

    ``evaluate(model)`` gives a round's record (validation numbers, at least ``criterion.key``).
    With ``checkpoint`` the state is saved after every round and, when the file exists, resumed.
    """
    average = copy.deepcopy(step.model) if ema > 0 else None
    average_steps = 0  # updates folded into the average; its first one replaces the initial weights
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True, map_location="cpu")
        step.load_state_dict(state["step"])
        if average is not None:
            average.load_state_dict(state["average"])
            average_steps = int(state["average_steps"])
        sampler.set_state(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        history = json.loads(state["history"])
        best = state["best"]
        log.info("resumed from %s at round %d", checkpoint, len(history))
    steps = history[-1]["step"] if history else 0
    epochs = history[-1]["epoch"] if history else 0
    seen = 0
    training_seconds = 0.0
    stopped = f"spent the budget: {budget.reason}"
    bar = tqdm(
        total=budget.total_steps(steps_per_epoch),
        initial=steps,
        desc=f"training ({budget.reason.partition(',')[0]})",
        unit="step",
        disable=not progress,
        leave=False,
    )
    while not _spent(budget, steps, epochs) and not (history and _patience_over(budget, history, best)):
        step.train()
        sums: dict[str, float] = {}
        count = 0
        started = time.perf_counter()
        for _ in range(budget.round_epochs):
            before = steps
            for batch in batches(sampler):
                losses = step(batch)
                if average is not None:
                    average_steps += 1
                    _update_average(average, step.model, _debiased(ema, average_steps))
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + value
                count += 1
                steps += 1
                seen += batch_images(batch)
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()})
                if budget.steps is not None and steps >= budget.steps:
                    break
            if steps == before:
                raise ValueError("an epoch gave no batch: there are too few training images")
            epochs += 1
            if _spent(budget, steps, epochs):
                break
        training_seconds += time.perf_counter() - started
        evaluated = average if average is not None else step.model
        record: dict[str, Any] = {
            "round": len(history) + 1,
            "step": steps,
            "epoch": epochs,
            **{k: v / max(count, 1) for k, v in sums.items()},
        }
        record.update(evaluate(evaluated))
        history.append(record)
        if best is None or criterion.better(record, history[best["round"] - 1]):
            best = {
                "round": record["round"],
                "model": copy.deepcopy(evaluated.state_dict()),
                "companions": copy.deepcopy(step.companions()),
            }
        log.info(
            "round %d: %s",
            record["round"],
            {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()},
        )
        if progress:
            tqdm.write(_summary(record, criterion))
        if checkpoint is not None:
            state = {
                "step": step.state_dict(),
                "sampler": sampler.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": json.dumps(history),
                "best": best,
            }
            if average is not None:
                state.update(average=average.state_dict(), average_steps=average_steps)
            _save(checkpoint, state)
    bar.close()
    assert best is not None
    if _patience_over(budget, history, best) and not _spent(budget, steps, epochs):
        stopped = (
            f"stopped early at step {steps}: {budget.patience} rounds without a better {criterion.key} "
            f"than round {best['round']}'s"
        )
    step.model.load_state_dict(best["model"])
    step.model.eval()
    chosen = history[best["round"] - 1]
    return FitResult(
        step.model,
        chosen["epoch"],
        best["companions"],
        history,
        training_seconds,
        seen / max(training_seconds, 1e-9),
        best_step=chosen["step"],
        steps=steps,
        stopped=stopped,
    )


def _spent(budget: Budget, steps: int, epochs: int) -> bool:
    return (budget.steps is not None and steps >= budget.steps) or (
        budget.epochs is not None and epochs >= budget.epochs
    )


def _patience_over(budget: Budget, history: list[dict[str, Any]], best: dict[str, Any] | None) -> bool:
    """Whether the last ``budget.patience`` rounds all came after the best one without beating it."""
    return (
        budget.patience is not None and best is not None and len(history) - best["round"] >= budget.patience
    )


def _debiased(decay: float, step: int) -> float:
    """The decay for update ``step`` (from 1) that weighs only trained weights, never the initial ones.

    With a plain decay the initial weights keep a share decay**steps of the average, most of it
    after the few steps a small data set gives (0.98**30 = 0.55); this is Adam's bias correction.
    """
    return decay * (1 - decay ** (step - 1)) / (1 - decay**step)


@torch.no_grad()
def _update_average(average: nn.Module, model: nn.Module, decay: float) -> None:
    """average ← decay·average + (1 − decay)·model for weights; BatchNorm buffers are copied."""
    for mean, current in zip(average.parameters(), model.parameters(), strict=True):
        mean.lerp_(current, 1.0 - decay)
    for kept, live in zip(average.buffers(), model.buffers(), strict=True):
        kept.copy_(live)


def _summary(record: dict[str, Any], criterion: Criterion) -> str:
    parts = [f"round {record['round']} (step {record['step']}, epoch {record['epoch']})"]
    parts += [f"{key} {value:.4g}" for key, value in record.items() if isinstance(value, float)]
    parts.append(f"(selects on {criterion.key})")
    return " | ".join(parts)


def _save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)
