"""Transformations of training batches: label-preserving flips, and turns that make anomalies.

Few labelled defects go a long way only if the model sees them in more than one pose: a solar
cell flipped left-right or upside down is still the same cell with the same crack. A part turned
by a quarter, on the other hand, is not a good part as the camera sees it: fed as a labelled
anomaly it keeps G from learning to copy any input. Both are drawn per image from the training
loop's seeded generator, so runs stay reproducible.
"""

from __future__ import annotations

from typing import Literal

import torch

Augment = Literal["none", "hflip", "flips"]
# Which turns make an anomaly: by a quarter either way, or also upside down (for parts that a half
# turn changes, unlike most solar cells).
Turns = Literal["quarter", "any"]


def random_flips(images: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """``images`` (N, C, H, W) with each image flipped left-right (``hflip``), or also upside down
    (``flips``), with probability one half per axis; ``none`` returns them unchanged."""
    if augment == "none":
        return images
    axes = [3] if augment == "hflip" else [3, 2]
    out = images.clone()
    for axis in axes:
        chosen = torch.rand(len(images), generator=generator) < 0.5
        out[chosen] = out[chosen].flip(axis)
    return out


def turned(images: torch.Tensor, turns: Turns, generator: torch.Generator) -> torch.Tensor:
    """``images`` (N, C, H, W), square, each turned at random: by 90° or 270° (``quarter``), or by
    90°, 180° or 270° (``any``)."""
    n = len(images)
    if turns == "quarter":
        quarters = torch.where(torch.rand(n, generator=generator) < 0.5, 3, 1)  # 3 quarters = clockwise
    else:
        quarters = torch.randint(1, 4, (n,), generator=generator)
    out = images.clone()
    for k in (1, 2, 3):
        chosen = quarters == k
        out[chosen] = images[chosen].rot90(k, (2, 3))
    return out
