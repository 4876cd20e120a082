"""BatchNorm handling for the second generator pass G(x̂).

The pseudo-anomaly pass feeds G its own outputs. With shared BatchNorm (the paper's default)
those outputs also move the running statistics that eval mode uses, and scores degrade epoch
after epoch (AGAD_METHOD.md, "Measured so far"). Two remedies, both switchable:

- ``separate``: each BatchNorm keeps a second set of statistics and affine parameters for the
  pseudo-anomaly pass (the paper's AdvProp ablation); inference uses the main set only.
- ``recompute``: after training, running statistics are re-estimated on normal images alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

BatchNormMode = Literal["shared", "separate", "recompute"]
BATCHNORM_MODES: tuple[BatchNormMode, ...] = ("shared", "separate", "recompute")
Route = Literal["main", "aux"]


class RoutedBatchNorm2d(nn.Module):
    """Two BatchNorm2d layers; ``route`` picks which one the next forward pass uses."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.main = nn.BatchNorm2d(channels)
        self.aux = nn.BatchNorm2d(channels)
        self.route: Route = "main"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) if self.route == "main" else self.aux(x)


@contextmanager
def routed(model: nn.Module, route: Route) -> Iterator[None]:
    """Run the block with every RoutedBatchNorm2d in ``model`` switched to ``route``."""
    layers = [m for m in model.modules() if isinstance(m, RoutedBatchNorm2d)]
    for layer in layers:
        layer.route = route
    try:
        yield
    finally:
        for layer in layers:
            layer.route = "main"


def main_route_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict of ``model`` as if built with plain BatchNorm2d: the scorer never sees the aux set."""
    state = {}
    for key, value in model.state_dict().items():
        if ".aux." in key:
            continue
        state[key.replace(".main.", ".")] = value
    return state


@torch.no_grad()
def recompute_statistics(model: nn.Module, batches: Iterator[torch.Tensor]) -> None:
    """Re-estimate BatchNorm running statistics as a cumulative average over ``batches``."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for batch in batches:
            model(batch)
    finally:
        for m, (momentum, training) in zip(norms, saved, strict=True):
            m.momentum = momentum
            m.train(training)
