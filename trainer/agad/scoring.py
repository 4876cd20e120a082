"""Score many images at once with every score the ablations compare.

Generator scores (``l2``, ``topk``, ``maxpool``) are what the product can deploy; ``disc`` (the
discriminator calling the input fake) and ``latent`` (distance of the discriminator features of
x and x̂) need the discriminator too and are measured as ablations.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agad_stream.model.card import MEMORY_METHODS, MemoryMethod, ScoreMethod
from agad_stream.model.score import SCORE_METHODS, AnomalyScorer, anomaly_score, latent_knn


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
    method: ScoreMethod | MemoryMethod,
    train_normal: torch.Tensor,
    val_normal: torch.Tensor,
    k: int = 5,
    train_anomalous: torch.Tensor | None = None,
) -> AnomalyScorer:
    """The deployable scorer of a trained generator; memory scores get their memory and reference.

    The memory holds the codes of all training normals (``knn_contrast``: and of the labelled
    anomalies); the reference is the mean and spread of each part of the score on validation
    normals, so that the parts weigh alike when summed.
    """
    if method not in MEMORY_METHODS:
        return AnomalyScorer(generator, method)
    memory = encoder_codes(generator, train_normal)
    val_l2 = score_batches(generator, val_normal)["l2"]
    val_knn = knn_distance(encoder_codes(generator, val_normal), memory, k)
    reference = {
        "l2": (float(val_l2.mean()), float(val_l2.std() + 1e-12)),
        "knn_latent": (float(val_knn.mean()), float(val_knn.std() + 1e-12)),
    }
    defects = None
    if method == "knn_contrast" and train_anomalous is not None and len(train_anomalous):
        defects = encoder_codes(generator, train_anomalous)
    device = next(generator.parameters()).device
    scorer = AnomalyScorer(
        generator,
        method,
        memory=memory.to(device),
        memory_k=k,
        reference=reference,
        defect_memory=None if defects is None else defects.to(device),
    )
    return scorer.eval()
