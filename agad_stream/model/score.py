"""Anomaly scores and heat-maps from an image and its reconstruction.

The paper scores with the L2 norm of the reconstruction error. The per-pixel residual doubles as
the operator's heat-map. ``topk`` and ``maxpool`` focus the score on the worst region, which
matters when a defect covers a few percent of a large frame.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from agad_stream.model.card import SCORE_METHODS, ScoreMethod


def heatmap(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-pixel absolute residual averaged over channels: (B, C, H, W) -> (B, 1, H, W)."""
    return (x - reconstruction).abs().mean(dim=1, keepdim=True)


def anomaly_score(
    x: torch.Tensor,
    reconstruction: torch.Tensor,
    method: ScoreMethod = "l2",
    topk_fraction: float = 0.01,
    pool_size: int = 4,
) -> torch.Tensor:
    """One score per image; higher means more anomalous."""
    if method == "l2":
        return (x - reconstruction).flatten(1).pow(2).sum(dim=1).sqrt()
    residual = heatmap(x, reconstruction)
    if method == "topk":
        flat = residual.flatten(1)
        k = max(1, round(topk_fraction * flat.shape[1]))
        return flat.topk(k, dim=1).values.mean(dim=1)
    if method == "maxpool":
        return F.avg_pool2d(residual, pool_size, stride=max(1, pool_size // 2)).flatten(1).amax(dim=1)
    raise ValueError(f"unknown score {method!r}; choose one of {', '.join(SCORE_METHODS)}")


class AnomalyScorer(nn.Module):
    """Generator plus score in one module: what is exported to ONNX and what every backend runs.

    ``forward(x)`` takes a preprocessed batch in [-1, 1] and returns ``(scores, heatmaps)``.
    """

    def __init__(
        self,
        generator: nn.Module,
        method: ScoreMethod = "l2",
        topk_fraction: float = 0.01,
        pool_size: int = 4,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.method: ScoreMethod = method
        self.topk_fraction = topk_fraction
        self.pool_size = pool_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reconstruction = self.generator(x)
        scores = anomaly_score(x, reconstruction, self.method, self.topk_fraction, self.pool_size)
        return scores, heatmap(x, reconstruction)
