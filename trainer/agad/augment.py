"""Turns and stretches of normal images that make labelled anomalies.

A part turned by a quarter is not a good part as the camera sees it: fed as a labelled anomaly it
keeps G from learning to copy any input. One stretched or squeezed along one axis has the wrong
proportions, as many real defects of shape do. Both are drawn per image from the training loop's
seeded generator, so runs stay reproducible.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F

# Which turns make an anomaly: by a quarter either way, by a half (upside down), or both (for parts
# that a half turn changes, unlike most solar cells). ``auto`` (resolved before training by
# trainer/agad/symmetry.py) takes those that change the part as the good parts show it.
Turns = Literal["quarter", "half", "any"]
TurnSetting = Turns | Literal["auto"]
TURN_SETTINGS: tuple[str, ...] = (*get_args(Turns), "auto")


def turned(images: torch.Tensor, turns: Turns, generator: torch.Generator) -> torch.Tensor:
    """``images`` (N, C, H, W), square, each turned at random: by 90° or 270° (``quarter``), by 180°
    (``half``), or by 90°, 180° or 270° (``any``)."""
    n = len(images)
    if turns == "quarter":
        quarters = torch.where(torch.rand(n, generator=generator) < 0.5, 3, 1)  # 3 quarters = clockwise
    elif turns == "half":
        quarters = torch.full((n,), 2)
    else:
        quarters = torch.randint(1, 4, (n,), generator=generator)
    out = images.clone()
    for k in (1, 2, 3):
        chosen = quarters == k
        out[chosen] = images[chosen].rot90(k, (2, 3))
    return out


# How far a stretched anomaly departs from the part: by a factor drawn log-uniformly from this range,
# widened or narrowed along one axis; far enough from 1 not to pass for ordinary spread between parts.
STRETCH_RANGE = (1.3, 1.6)


def stretched(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``images`` (N, C, H, W), each stretched or squeezed (even odds) along its width or its height
    (even odds) by a factor from ``STRETCH_RANGE`` about the centre. Where the content shrinks the
    frame is filled with the median of its outermost pixels (the background, e.g. black around a
    garment), so that no smeared edge gives the anomaly away; where it grows it is cut."""
    n = len(images)
    low, high = (math.log(f) for f in STRETCH_RANGE)
    factor = torch.exp(low + (high - low) * torch.rand(n, generator=generator))
    factor = torch.where(torch.rand(n, generator=generator) < 0.5, factor, 1 / factor)
    along_width = torch.rand(n, generator=generator) < 0.5
    theta = torch.zeros(n, 2, 3)
    # The grid maps output to input coordinates, so content grows by ``factor`` where the grid shrinks.
    theta[:, 0, 0] = torch.where(along_width, 1 / factor, torch.ones(n))
    theta[:, 1, 1] = torch.where(along_width, torch.ones(n), 1 / factor)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    ring = torch.cat([images[..., 0, :], images[..., -1, :], images[..., 1:-1, 0], images[..., 1:-1, -1]], -1)
    fill = ring.median(dim=-1).values[..., None, None]
    # grid_sample pads with zeros: shift the background to zero first.
    moved = F.grid_sample(images - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return moved + fill
