"""How long a training run lasts: its optimiser steps, how often it is judged, and when it stops early.

Epochs are the wrong unit for a plant's data. Ten passes over 800 images in batches of 256 are
40 optimiser steps, far too few to learn anything, where ten passes over 60,000 are plenty. So
the default budget counts steps: :data:`DEFAULT_EPOCHS` passes over the data or
:data:`FLOOR_STEPS` steps, whichever is more. The run is judged on validation every round (whole
epochs, at least :data:`ROUND_STEPS` steps), and it stops once :data:`PATIENCE` rounds in a row
have not improved the selection criterion. ``--epochs`` or ``--steps`` set a fixed budget
instead, without an early stop.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from agad_stream.errors import AgadError

DEFAULT_EPOCHS = 15
FLOOR_STEPS = 1000
ROUND_STEPS = 100
PATIENCE = 4


@dataclass(frozen=True)
class Budget:
    """At most ``steps`` optimiser steps or ``epochs`` passes (None: no such cap), judged every
    ``round_epochs`` epochs, stopped after ``patience`` rounds without improvement (None: never)."""

    steps: int | None
    epochs: int | None
    round_epochs: int
    patience: int | None
    reason: str

    def __post_init__(self) -> None:
        if self.steps is None and self.epochs is None:
            raise ValueError("a budget needs a cap in steps or in epochs")

    def total_steps(self, steps_per_epoch: int) -> int:
        """The most steps this budget runs, for a progress bar."""
        caps = [c for c in (self.steps, None if self.epochs is None else self.epochs * steps_per_epoch) if c]
        return min(caps)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_budget(steps_per_epoch: int, *, epochs: int | None = None, steps: int | None = None) -> Budget:
    """The budget for a data set of ``steps_per_epoch`` batches: fixed by ``epochs`` or ``steps``, or
    the adaptive default (see the module docstring)."""
    if epochs is not None and steps is not None:
        raise AgadError("--epochs and --steps both set the training budget: give one of them")
    if epochs is not None:
        return Budget(None, epochs, 1, None, f"{epochs} epochs, as asked")
    round_epochs = max(1, math.ceil(ROUND_STEPS / steps_per_epoch))
    if steps is not None:
        return Budget(steps, None, round_epochs, None, f"{steps} steps, as asked")
    planned = max(FLOOR_STEPS, DEFAULT_EPOCHS * steps_per_epoch)
    why = (
        f"{DEFAULT_EPOCHS} epochs of {steps_per_epoch} steps"
        if planned > FLOOR_STEPS
        else f"the floor of {FLOOR_STEPS} steps ({DEFAULT_EPOCHS} epochs: {DEFAULT_EPOCHS * steps_per_epoch})"
    )
    return Budget(
        planned,
        None,
        round_epochs,
        PATIENCE,
        f"default: {why}, stopped after {PATIENCE} rounds without a better validation criterion",
    )
