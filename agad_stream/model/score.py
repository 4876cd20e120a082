"""Anomaly scores and heat-maps from an image and its reconstruction.

The paper scores with the L2 norm of the reconstruction error. ``topk`` and ``maxpool`` focus the
score on the worst region, which matters when a defect covers a few percent of a large frame.
``local_z`` asks how unusual each pixel's residual is for that pixel: in spreads above its mean
on training normals, so that an edge every good part reconstructs badly does not count as a
defect, and a small mark on a busy texture does. The heat-map is the residual averaged over each
pixel's 3×3 neighbourhood: a defect covers neighbouring pixels, noise does not.

The memory scores also ask how far the generator's code of the image lies from the codes of
training normals (``knn_latent``): a code among normal ones means a normal-looking part even
where the decoder reconstructs an anomaly well. ``l2+knn_latent`` adds both, each standardised by
its mean and spread on validation normals. ``knn_or_local`` takes whichever of l2+knn_latent and
local_z lies further above its median on validation normals, in interquartile ranges: a part
with the wrong shape moves the code, a small mark on a good shape moves a few pixels, and a sum
would let the quiet one drown the loud one. Once operators have confirmed defects,
``knn_contrast`` also remembers their codes and scores how much nearer an image lies to known
defects than to good parts: log(distance to normals) − log(distance to defects).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from agad_stream.model.card import (
    ALL_SCORES,
    MEMORY_METHODS,
    PIXEL_METHODS,
    SCORE_METHODS,
    AnyScore,
    ScoreMethod,
    ScoreSpec,
)

HEATMAP_WINDOW = 3
"""Side of the square window the heat-map averages the residual over."""
NEEDS_PIXEL_REFERENCE: tuple[AnyScore, ...] = (*PIXEL_METHODS, "knn_or_local")
REFERENCE_PARTS: dict[AnyScore, tuple[str, ...]] = {
    "l2+knn_latent": ("l2", "knn_latent"),
    "knn_or_local": ("l2", "knn_latent", "l2+knn_latent", "local_z"),
}
"""The parts of a combined score whose centre and spread on validation normals it needs."""


def residual_map(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-pixel absolute residual averaged over channels: (B, C, H, W) -> (B, 1, H, W)."""
    return (x - reconstruction).abs().mean(dim=1, keepdim=True)


def heatmap(residual: torch.Tensor) -> torch.Tensor:
    """What the operator sees: the residual averaged over each pixel's neighbourhood, same size."""
    return F.avg_pool2d(
        residual, HEATMAP_WINDOW, stride=1, padding=HEATMAP_WINDOW // 2, count_include_pad=False
    )


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
    residual = residual_map(x, reconstruction)
    if method == "topk":
        flat = residual.flatten(1)
        k = max(1, round(topk_fraction * flat.shape[1]))
        return flat.topk(k, dim=1).values.mean(dim=1)
    if method == "maxpool":
        return F.avg_pool2d(residual, pool_size, stride=max(1, pool_size // 2)).flatten(1).amax(dim=1)
    raise ValueError(f"unknown score {method!r}; choose one of {', '.join(SCORE_METHODS)}")


def pixel_reference(residuals: torch.Tensor) -> torch.Tensor:
    """Mean and spread of each pixel's residual over normals (N, 1, H, W) -> (2, 1, H, W).

    The spread is floored at a tenth of its image mean: a pixel every normal reconstructs alike
    (a black background) would otherwise turn a trace of noise into a huge z.
    """
    mean, std = residuals.mean(dim=0), residuals.std(dim=0)
    return torch.stack([mean, std + 0.1 * std.mean()])


def local_z(residual: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The largest per-pixel residual, in spreads above that pixel's mean on training normals."""
    return ((residual - reference[0]) / reference[1]).flatten(1).amax(dim=1)


def latent_knn(codes: torch.Tensor, memory: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Mean Euclidean distance of each code (B, D) to its ``k`` nearest rows of ``memory`` (M, D).

    Written as a matrix product rather than ``torch.cdist`` so that it exports to ONNX.
    """
    squared = codes.pow(2).sum(dim=1, keepdim=True) - 2 * codes @ memory.T + memory.pow(2).sum(dim=1)
    return squared.clamp_min(0).sqrt().topk(k, dim=1, largest=False).values.mean(dim=1)


class AnomalyScorer(nn.Module):
    """Generator plus score in one module: what is exported to ONNX and what every backend runs.

    ``forward(x)`` takes a preprocessed batch in [-1, 1] and returns ``(scores, heatmaps)``.
    ``local_z`` needs ``pixels`` (:func:`pixel_reference` of training normals). Memory scores need
    ``memory`` (codes of training normals, (M, D)) and a generator with an ``encoder`` and a
    ``decoder`` (the naive one); combined scores also need ``reference`` (see
    :data:`REFERENCE_PARTS`), ``knn_or_local`` ``pixels``, and ``knn_contrast`` ``defect_memory``
    (codes of labelled anomalies).
    """

    def __init__(
        self,
        generator: nn.Module,
        method: AnyScore = "l2",
        topk_fraction: float = 0.01,
        pool_size: int = 4,
        *,
        memory: torch.Tensor | None = None,
        memory_k: int = 5,
        reference: Mapping[str, tuple[float, float]] | None = None,
        defect_memory: torch.Tensor | None = None,
        pixels: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if method not in ALL_SCORES:
            raise ValueError(f"unknown score {method!r}; choose one of {', '.join(ALL_SCORES)}")
        self.generator = generator
        self.method = method
        self.topk_fraction = topk_fraction
        self.pool_size = pool_size
        self.memory_k = memory_k
        self.reference = dict(reference or {})
        if method in MEMORY_METHODS:
            if not all(hasattr(generator, part) for part in ("encoder", "decoder")):
                raise ValueError(
                    f"score {method} needs a generator with an encoder bottleneck (naive); "
                    f"{type(generator).__name__} has none"
                )
            if memory is None or memory.ndim != 2 or memory.shape[0] < memory_k:
                raise ValueError(f"score {method} needs a latent memory of at least {memory_k} codes")
            if method == "knn_contrast" and (defect_memory is None or len(defect_memory) == 0):
                raise ValueError(
                    f"score {method} needs codes of labelled anomalies: train with --gamma > 0 "
                    "or with defect images in train/<defect>/"
                )
        missing = set(REFERENCE_PARTS.get(method, ())) - set(self.reference)
        if missing:
            raise ValueError(f"score {method} needs the validation reference of {sorted(missing)}")
        if method in NEEDS_PIXEL_REFERENCE and (
            pixels is None or pixels.ndim != 4 or pixels.shape[:2] != (2, 1)
        ):
            raise ValueError(
                f"score {method} needs the per-pixel reference of training normals, (2, 1, H, W)"
            )
        self.memory: torch.Tensor | None
        self.register_buffer("memory", memory if method in MEMORY_METHODS else None)
        self.defect_memory: torch.Tensor | None
        self.register_buffer("defect_memory", defect_memory if method == "knn_contrast" else None)
        self.pixels: torch.Tensor | None
        self.register_buffer("pixels", pixels if method in NEEDS_PIXEL_REFERENCE else None)

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
            residual = residual_map(x, reconstruction)
            if self.pixels is not None:
                return local_z(residual, self.pixels), heatmap(residual)
            method = cast(ScoreMethod, self.method)
            scores = anomaly_score(x, reconstruction, method, self.topk_fraction, self.pool_size)
            return scores, heatmap(residual)
        code = cast(nn.Module, self.generator.encoder)(x.to(dtype))
        reconstruction = cast(nn.Module, self.generator.decoder)(code).float()
        residual = residual_map(x, reconstruction)
        knn = latent_knn(code.flatten(1).float(), self.memory, self.memory_k)
        if self.method == "knn_latent":
            return knn, heatmap(residual)
        if self.defect_memory is not None:
            k = min(self.memory_k, self.defect_memory.shape[0])
            to_defects = latent_knn(code.flatten(1).float(), self.defect_memory, k)
            return knn.clamp_min(1e-6).log() - to_defects.clamp_min(1e-6).log(), heatmap(residual)
        summed = self._standardised("l2", anomaly_score(x, reconstruction)) + self._standardised(
            "knn_latent", knn
        )
        if self.pixels is None:
            return summed, heatmap(residual)
        local = self._standardised("local_z", local_z(residual, self.pixels))
        return torch.maximum(self._standardised("l2+knn_latent", summed), local), heatmap(residual)

    def _standardised(self, part: str, values: torch.Tensor) -> torch.Tensor:
        centre, spread = self.reference[part]
        return (values - centre) / spread
