"""One epoch of AGAD training batches: normals, labelled anomalies, and the anomalies made from normals.

Semi-supervised (no labelled anomaly): each batch is normal images, plus
``variant.turned_anomalies`` of them turned (by ``turns``) and ``variant.stretched_anomalies``
stretched, both labelled anomalous. Supervised: every batch also holds
``variant.anomalies_per_batch`` labelled anomalies drawn with replacement, so a handful of
confirmed defects weighs in every step. Every draw comes from the seeded ``generator``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from trainer.agad.augment import Turns, stretched, turned
from trainer.agad.variant import Variant

Batch = tuple[torch.Tensor, torch.Tensor]
"""(images (B, C, H, W) in [-1, 1], labels (B,): 0 normal, 1 anomalous)."""


def batch_shares(labels: torch.Tensor, variant: Variant, turns: Turns | None) -> tuple[int, int]:
    """How many normal images and how many labelled anomalies (when there are any) a batch holds; the
    rest of the batch is turned or stretched normals."""
    labelled = min(variant.anomalies_per_batch, variant.batch_size - 1) if bool((labels == 1).any()) else 0
    made = (variant.turned_anomalies if turns is not None else 0) + variant.stretched_anomalies
    return max(1, variant.batch_size - labelled - made), labelled


def batches_per_epoch(labels: torch.Tensor, variant: Variant, turns: Turns | None) -> int:
    return -(-int((labels == 0).sum()) // batch_shares(labels, variant, turns)[0])


def epoch_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    variant: Variant,
    turns: Turns | None,
    generator: torch.Generator,
) -> Iterator[Batch]:
    """One pass over the normal ``images`` in a random order, as batches (see the module docstring)."""
    normal = torch.nonzero(labels == 0).squeeze(1)
    anomalous = torch.nonzero(labels == 1).squeeze(1)
    normals_per_batch, per_batch = batch_shares(labels, variant, turns)
    order = normal[torch.randperm(len(normal), generator=generator)]
    for start in range(0, len(order), normals_per_batch):
        good = order[start : start + normals_per_batch]
        if len(good) < 2:
            continue  # BatchNorm needs two samples
        index = good
        if per_batch:
            drawn = anomalous[torch.randint(len(anomalous), (per_batch,), generator=generator)]
            index = torch.cat([good, drawn])
        x, y = images[index], labels[index]
        made = []
        if variant.turned_anomalies and turns is not None:
            made.append(turned(images[good[: variant.turned_anomalies]], turns, generator))
        if variant.stretched_anomalies:  # the last normals: others than the turned ones
            made.append(stretched(images[good[-variant.stretched_anomalies :]], generator))
        if made:
            x = torch.cat([x, *made])
            y = torch.cat([y, torch.ones(sum(len(m) for m in made), dtype=labels.dtype)])
        yield x, y
