"""Anomaly scores and heat-maps from an image and its reconstruction.

The paper scores with the L2 norm of the reconstruction error. The per-pixel residual doubles as
the operator's heat-map. ``topk`` and ``maxpool`` focus the score on the worst region, which
matters when a defect covers a few percent of a large frame.

The memory scores also ask how far the generator's code of the image lies from the codes of
training normals (``knn_latent``): a code among normal ones means a normal-looking part even
where the decoder reconstructs an anomaly well. ``l2+knn_latent`` adds both, each standardised by
its mean and spread on validation normals. Once operators have confirmed defects,
``knn_contrast`` also remembers their codes and scores how much nearer an image lies to known
defects than to good parts: log(distance to normals) − log(distance to defects).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from agad_stream.model.card import MEMORY_METHODS, SCORE_METHODS, MemoryMethod, ScoreMethod, ScoreSpec


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


def latent_knn(codes: torch.Tensor, memory: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Mean Euclidean distance of each code (B, D) to its ``k`` nearest rows of ``memory`` (M, D).

    Written as a matrix product rather than ``torch.cdist`` so that it exports to ONNX.
    """
    squared = codes.pow(2).sum(dim=1, keepdim=True) - 2 * codes @ memory.T + memory.pow(2).sum(dim=1)
    return squared.clamp_min(0).sqrt().topk(k, dim=1, largest=False).values.mean(dim=1)


class AnomalyScorer(nn.Module):
    """Generator plus score in one module: what is exported to ONNX and what every backend runs.

    ``forward(x)`` takes a preprocessed batch in [-1, 1] and returns ``(scores, heatmaps)``.
    Memory scores need ``memory`` (codes of training normals, (M, D)) and a generator with an
    ``encoder`` and a ``decoder`` (the naive one); ``l2+knn_latent`` also needs ``reference``, and
    ``knn_contrast`` ``defect_memory`` (codes of labelled anomalies).
    """

    def __init__(
        self,
        generator: nn.Module,
        method: ScoreMethod | MemoryMethod = "l2",
        topk_fraction: float = 0.01,
        pool_size: int = 4,
        *,
        memory: torch.Tensor | None = None,
        memory_k: int = 5,
        reference: Mapping[str, tuple[float, float]] | None = None,
        defect_memory: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if method not in SCORE_METHODS + MEMORY_METHODS:
            choices = ", ".join(SCORE_METHODS + MEMORY_METHODS)
            raise ValueError(f"unknown score {method!r}; choose one of {choices}")
        self.generator = generator
        self.method = method
        self.topk_fraction = topk_fraction
        self.pool_size = pool_size
        self.memory_k = memory_k
        self.reference = dict(reference or {})
        self.memory: torch.Tensor | None
        if method in MEMORY_METHODS:
            if not all(hasattr(generator, part) for part in ("encoder", "decoder")):
                raise ValueError(
                    f"score {method} needs a generator with an encoder bottleneck (naive); "
                    f"{type(generator).__name__} has none"
                )
            if memory is None or memory.ndim != 2 or memory.shape[0] < memory_k:
                raise ValueError(f"score {method} needs a latent memory of at least {memory_k} codes")
            missing = {"l2", "knn_latent"} - set(self.reference)
            if method == "l2+knn_latent" and missing:
                raise ValueError(f"score {method} needs the validation reference of {sorted(missing)}")
            if method == "knn_contrast" and (defect_memory is None or len(defect_memory) == 0):
                raise ValueError(
                    f"score {method} needs codes of labelled anomalies: train with --gamma > 0 "
                    "or with defect images in train/<defect>/"
                )
        self.register_buffer("memory", memory if method in MEMORY_METHODS else None)
        self.defect_memory: torch.Tensor | None
        self.register_buffer("defect_memory", defect_memory if method == "knn_contrast" else None)

    def spec(self) -> ScoreSpec:
        """The score's part of the model card."""
        return ScoreSpec(
            method=self.method,
            topk_fraction=self.topk_fraction,
            pool_size=self.pool_size,
            memory_k=self.memory_k,
            reference=self.reference,
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The generator may run in half precision (torch backend on a GPU); scores never do: an L2
        # over 200k squared residuals at 256 px colour is more than float16 can hold.
        dtype = next(self.generator.parameters()).dtype
        if self.memory is None:
            reconstruction = self.generator(x.to(dtype)).float()
            method = cast(ScoreMethod, self.method)
            scores = anomaly_score(x, reconstruction, method, self.topk_fraction, self.pool_size)
            return scores, heatmap(x, reconstruction)
        code = cast(nn.Module, self.generator.encoder)(x.to(dtype))
        reconstruction = cast(nn.Module, self.generator.decoder)(code).float()
        knn = latent_knn(code.flatten(1).float(), self.memory, self.memory_k)
        if self.method == "knn_latent":
            return knn, heatmap(x, reconstruction)
        if self.defect_memory is not None:
            k = min(self.memory_k, self.defect_memory.shape[0])
            to_defects = latent_knn(code.flatten(1).float(), self.defect_memory, k)
            return knn.clamp_min(1e-6).log() - to_defects.clamp_min(1e-6).log(), heatmap(x, reconstruction)
        scores = self._standardised("l2", anomaly_score(x, reconstruction)) + self._standardised(
            "knn_latent", knn
        )
        return scores, heatmap(x, reconstruction)

    def _standardised(self, part: str, values: torch.Tensor) -> torch.Tensor:
        mean, std = self.reference[part]
        return (values - mean) / std
