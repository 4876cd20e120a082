"""Score many images at once with every score the ablations compare.

Generator scores (``l2``, ``topk``, ``maxpool``) are what the product can deploy; ``disc`` (the
discriminator calling the input fake) and ``latent`` (distance of the discriminator features of
x and x̂) need the discriminator too and are measured as ablations.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agad_stream.model.card import SCORE_METHODS, AnyScore
from agad_stream.model.score import (
    NEEDS_PIXEL_REFERENCE,
    AnomalyScorer,
    anomaly_score,
    latent_knn,
    local_z,
    pixel_reference,
    residual_map,
)


@torch.inference_mode()
def score_batches(
    generator: nn.Module, images: torch.Tensor, discriminator: nn.Module | None = None, batch_size: int = 512
) -> dict[str, np.ndarray]:
    """Every score for ``images`` (N, C, H, W) in [-1, 1]; models are put in eval mode."""
    generator.eval()
    if discriminator is not None:
        discriminator.eval()
    device = next(generator.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        x_hat = generator(x)
        for method in SCORE_METHODS:
            parts.setdefault(method, []).append(anomaly_score(x, x_hat, method))
        if discriminator is not None:
            real_logit, z_real = discriminator(x)
            _, z_fake = discriminator(x_hat)
            parts.setdefault("disc", []).append(-real_logit)
            parts.setdefault("latent", []).append((z_real - z_fake).norm(dim=1))
    return {name: torch.cat(values).float().cpu().numpy() for name, values in parts.items()}


@torch.inference_mode()
def residual_maps(generator: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The per-pixel residual of each image, (N, 1, H, W), on the CPU."""
    generator.eval()
    device = next(generator.parameters()).device
    maps = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        maps.append(residual_map(x, generator(x)).float().cpu())
    return torch.cat(maps)


@torch.inference_mode()
def encoder_codes(generator: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The generator's bottleneck code of each image, (N, D); needs a generator with an ``encoder``."""
    generator.eval()
    encoder = generator.get_submodule("encoder")
    device = next(generator.parameters()).device
    codes = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        codes.append(encoder(x).flatten(1))
    return torch.cat(codes).float().cpu()


def knn_distance(queries: torch.Tensor, bank: torch.Tensor, k: int = 5, chunk: int = 1024) -> np.ndarray:
    """Mean Euclidean distance of each query to its ``k`` nearest rows of ``bank``, in chunks."""
    parts = [latent_knn(queries[s : s + chunk], bank, k) for s in range(0, queries.shape[0], chunk)]
    return torch.cat(parts).numpy()


def build_scorer(
    generator: nn.Module,
    method: AnyScore,
    train_normal: torch.Tensor,
    val_normal: torch.Tensor,
    k: int = 5,
    train_anomalous: torch.Tensor | None = None,
) -> AnomalyScorer:
    """The deployable scorer of a trained generator, with what its score looks up.

    Training normals give the per-pixel reference of ``local_z`` and the latent memory (with
    ``knn_contrast``: also the codes of the labelled anomalies); validation normals give the
    centre and spread of each part of a combined score, so that the parts weigh alike.
    """
    if method in SCORE_METHODS:
        return AnomalyScorer(generator, method)
    device = next(generator.parameters()).device
    pixels = None
    if method in NEEDS_PIXEL_REFERENCE:
        pixels = pixel_reference(residual_maps(generator, train_normal))
        if method == "local_z":
            return AnomalyScorer(generator, method, pixels=pixels.to(device)).eval()
    memory = encoder_codes(generator, train_normal)
    val_l2 = score_batches(generator, val_normal)["l2"]
    val_knn = knn_distance(encoder_codes(generator, val_normal), memory, k)
    reference = {"l2": _mean_and_spread(val_l2), "knn_latent": _mean_and_spread(val_knn)}
    if pixels is not None:  # knn_or_local
        summed = (val_l2 - reference["l2"][0]) / reference["l2"][1]
        summed += (val_knn - reference["knn_latent"][0]) / reference["knn_latent"][1]
        local = local_z(residual_maps(generator, val_normal), pixels).numpy()
        reference |= {"l2+knn_latent": _median_and_quartiles(summed), "local_z": _median_and_quartiles(local)}
    defects = None
    if method == "knn_contrast" and train_anomalous is not None and len(train_anomalous):
        defects = encoder_codes(generator, train_anomalous)
    scorer = AnomalyScorer(
        generator,
        method,
        memory=memory.to(device),
        memory_k=k,
        reference=reference,
        defect_memory=None if defects is None else defects.to(device),
        pixels=None if pixels is None else pixels.to(device),
    )
    return scorer.eval()


def _mean_and_spread(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std() + 1e-12)


def _median_and_quartiles(values: np.ndarray) -> tuple[float, float]:
    """Median and interquartile range: a few odd validation normals barely move either."""
    low, median, high = np.quantile(values, [0.25, 0.5, 0.75])
    return float(median), float(high - low + 1e-12)
