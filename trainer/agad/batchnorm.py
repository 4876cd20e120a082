"""Re-estimating BatchNorm statistics on normal images (the adversarial variant, after training).

The pseudo-anomaly pass feeds G its own outputs, and with BatchNorm shared between the passes (the
paper's choice) those outputs also move the running statistics that eval mode uses. Re-estimating
them on normal images alone undoes that.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


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
