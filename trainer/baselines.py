"""Baselines run in the same harness and on the same splits as AGAD.

- ``knn``: mean Euclidean distance of the raw pixels to the k nearest normal training images.
- ``pca``: reconstruction error of the raw pixels from the top principal components of normals.
- ``patch_nn``: every patch of a test image against a memory of normal training patches (raw
  pixels, no learning); the heat-map is each pixel's distance to the nearest normal patch, the
  image score its worst patch. It localises, so it is the floor on textured data with small defects.
- ``classifier``: a plain supervised CNN (the AGAD discriminator's architecture) trained with
  binary cross-entropy on the same normal and labelled-anomalous images (gamma > 0 only).
The plain autoencoder and Skip-GANomaly are AGAD variants (``trainer.agad.variant``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.nn import functional as F

from agad_stream.preprocess import to_model_input
from trainer.agad.discriminator import Discriminator
from trainer.metrics import auroc


def _flat(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(to_model_input(images)).flatten(1)


def knn_scores(train_normals: np.ndarray, images: np.ndarray, k: int = 5, chunk: int = 1024) -> np.ndarray:
    """Mean distance to the ``k`` nearest normal training images."""
    reference = _flat(train_normals)
    queries = _flat(images)
    parts = [
        torch.cdist(queries[i : i + chunk], reference).topk(k, largest=False).values.mean(dim=1)
        for i in range(0, len(queries), chunk)
    ]
    return torch.cat(parts).numpy()


def patch_nn(
    train_normals: np.ndarray,
    images: np.ndarray,
    *,
    patch: int | None = None,
    memory: int = 16384,
    seed: int = 0,
    chunk: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Image scores (N,) and heat-maps (N, H, W) of a raw-pixel patch nearest-neighbour search.

    Patches are ``patch`` px square (default an eighth of the side, at least 4) at a stride of
    half that; the memory holds at most ``memory`` training patches drawn with ``seed``. A pixel's
    heat is the mean distance of the patches that cover it to their nearest normal patch.
    """
    size = images.shape[1]
    side = patch or max(4, size // 8)
    stride = max(1, side // 2)
    bank = _patches(torch.from_numpy(to_model_input(train_normals)), side, stride)
    bank = bank.flatten(0, 1)
    if len(bank) > memory:
        bank = bank[torch.randperm(len(bank), generator=torch.Generator().manual_seed(seed))[:memory]]
    scores, heatmaps = [], []
    for start in range(0, len(images), chunk):
        x = torch.from_numpy(to_model_input(images[start : start + chunk]))
        queries = _patches(x, side, stride)  # (n, L, D)
        nearest = torch.cdist(queries.flatten(0, 1), bank).min(dim=1).values.view(len(x), -1)
        scores.append(nearest.max(dim=1).values)
        spread = nearest.unsqueeze(1).expand(-1, side * side, -1)
        padded = (size + _padding(size, side, stride),) * 2
        covered = F.fold(torch.ones_like(spread), padded, side, stride=stride)
        heat = F.fold(spread, padded, side, stride=stride) / covered.clamp(min=1)
        heatmaps.append(heat[:, 0, :size, :size])
    return torch.cat(scores).numpy(), torch.cat(heatmaps).numpy()


def _patches(x: torch.Tensor, side: int, stride: int) -> torch.Tensor:
    """(N, C, H, W) → (N, L, C·side²): every patch at ``stride``, the last row and column included."""
    pad = _padding(x.shape[-1], side, stride)
    if pad:
        x = F.pad(x, (0, pad, 0, pad), mode="replicate")
    return F.unfold(x, side, stride=stride).transpose(1, 2)


def _padding(size: int, side: int, stride: int) -> int:
    """Pixels to add so that patches at ``stride`` end exactly on the last row and column."""
    return (-(size - side)) % stride


def pca_scores(train_normals: np.ndarray, images: np.ndarray, components: int = 20) -> np.ndarray:
    """Squared reconstruction error from the top principal components of the normal images."""
    reference = _flat(train_normals).double()
    mean = reference.mean(dim=0)
    _, _, basis = torch.linalg.svd(reference - mean, full_matrices=False)
    top = basis[:components]
    centred = _flat(images).double() - mean
    residual = centred - (centred @ top.T) @ top
    return residual.pow(2).sum(dim=1).numpy()


def train_classifier(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    *,
    image_size: int,
    epochs: int = 10,
    batch_size: int = 256,
    anomalies_per_batch: int = 32,
    lr: float = 2e-4,
    seed: int = 0,
) -> Discriminator:
    """A supervised CNN on normal vs labelled-anomalous images; the epoch is chosen by validation AUROC."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(to_model_input(train_images))
    y = torch.from_numpy(train_labels).float()
    normal = torch.nonzero(y == 0).squeeze(1)
    anomalous = torch.nonzero(y == 1).squeeze(1)
    if len(anomalous) == 0:
        raise ValueError("the supervised classifier needs labelled anomalies (gamma > 0)")
    model = Discriminator(image_size, x.shape[1])
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    best_auroc, best_state = -1.0, copy.deepcopy(model.state_dict())
    per_batch = batch_size - anomalies_per_batch
    for _ in range(epochs):
        model.train()
        order = normal[torch.randperm(len(normal), generator=generator)]
        for start in range(0, len(order), per_batch):
            index = torch.cat(
                [
                    order[start : start + per_batch],
                    anomalous[torch.randint(len(anomalous), (anomalies_per_batch,), generator=generator)],
                ]
            )
            logit, _ = model(x[index])
            # The discriminator's logit says "real"; here real means normal.
            loss = F.binary_cross_entropy_with_logits(logit, 1 - y[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        score = auroc(val_labels, classifier_scores(model, val_images))
        if score > best_auroc:
            best_auroc, best_state = score, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model.eval()


@torch.inference_mode()
def classifier_scores(model: Discriminator, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Anomaly score = minus the 'normal' logit."""
    model.eval()
    parts = [
        -model(torch.from_numpy(to_model_input(images[i : i + batch_size])))[0]
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(parts).numpy()
