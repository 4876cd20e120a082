"""The training budget: steps, not epochs, by default; rounds of whole epochs; the early stop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from agad_stream.errors import AgadError
from trainer.budget import FLOOR_STEPS, PATIENCE, ROUND_STEPS, Budget, training_budget
from trainer.fit import Criterion, fit


def test_a_small_data_set_gets_the_floor_and_a_large_one_its_epochs() -> None:
    small = training_budget(2)
    assert (small.steps, small.epochs, small.patience) == (FLOOR_STEPS, None, PATIENCE)
    assert small.round_epochs * 2 >= ROUND_STEPS and "floor" in small.reason
    large = training_budget(400)
    assert large.steps == 15 * 400 and large.round_epochs == 1 and "15 epochs" in large.reason


def test_epochs_or_steps_fix_the_budget_without_an_early_stop() -> None:
    assert training_budget(7, epochs=3) == Budget(None, 3, 1, None, "3 epochs, as asked")
    steps = training_budget(7, steps=250)
    assert (steps.steps, steps.epochs, steps.patience, steps.round_epochs) == (250, None, None, 15)
    with pytest.raises(AgadError, match="give one of them"):
        training_budget(7, epochs=3, steps=250)


class _Step:
    """Counts its calls; the model is a single weight."""

    def __init__(self) -> None:
        self.model = nn.Linear(1, 1)
        self.calls = 0

    def train(self) -> None:
        self.model.train()

    def __call__(self, batch: Any) -> dict[str, float]:
        self.calls += 1
        with torch.no_grad():
            self.model.weight.add_(1.0)
        return {"loss": float(self.calls)}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.calls = state["calls"]

    def companions(self) -> dict[str, Any]:
        return {}


def _epoch(generator: torch.Generator) -> Iterator[tuple[torch.Tensor]]:
    for _ in range(3):
        yield (torch.zeros(4, 1),)


def _run(budget: Budget, quality: list[float]) -> tuple[_Step, Any]:
    """Fit the counting step; round r's criterion value is quality[r - 1] (higher is better)."""
    step = _Step()
    judged = iter(quality)

    def evaluate(model: nn.Module) -> dict[str, Any]:
        return {"quality": next(judged), "weight": float(model.weight.detach())}

    result = fit(
        step,
        _epoch,
        evaluate,
        Criterion("quality"),
        budget=budget,
        sampler=torch.Generator().manual_seed(0),
        progress=False,
        steps_per_epoch=3,
    )
    return step, result


def test_training_stops_after_patience_rounds_without_improvement_and_keeps_the_best() -> None:
    budget = Budget(steps=1000, epochs=None, round_epochs=2, patience=3, reason="test")
    step, result = _run(budget, [0.1, 0.5, 0.4, 0.3, 0.45, 0.9])
    assert [r["step"] for r in result.history] == [6, 12, 18, 24, 30]
    assert step.calls == 30 and result.steps == 30
    assert result.best_step == 12 and result.best_epoch == 4
    assert float(result.model.weight.detach()) == pytest.approx(result.history[1]["weight"])
    assert "stopped early at step 30: 3 rounds" in result.stopped


def test_a_step_budget_ends_inside_an_epoch_and_an_epoch_budget_at_its_end() -> None:
    step, result = _run(Budget(steps=10, epochs=None, round_epochs=2, patience=None, reason="s"), [1.0] * 2)
    assert step.calls == 10 and [r["step"] for r in result.history] == [6, 10]
    assert result.stopped == "spent the budget: s"
    step, result = _run(Budget(steps=None, epochs=3, round_epochs=1, patience=None, reason="e"), [1.0] * 3)
    assert step.calls == 9 and [r["epoch"] for r in result.history] == [1, 2, 3]
