"""Synthetic defects: evidence about the score when no real defect is labelled.

At gamma = 0 the only validation data are normal images. Scoring normals against copies of
themselves with a drawn scratch or a pasted patch asks whether defects are told apart without any
real label: the score choice uses it (trainer/agad/score_choice.py), and every epoch records it.
"""

from __future__ import annotations

import torch


def synthetic_defects(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A damaged copy of each image in (N, C, H, W), [-1, 1]: even rows get a scratch, odd rows a patch.

    Scratch: a straight stroke 1-3 px wide (at 32 px; scaled with the size), darker or brighter by
    0.6-1.2. Patch: a square of 15-30 % of the side copied from another image of the batch to a
    random place. Deterministic for a given ``seed``.
    """
    rng = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    out = images.clone()
    scale = h / 32
    rows = torch.arange(h, dtype=torch.float32).view(h, 1)
    cols = torch.arange(w, dtype=torch.float32).view(1, w)
    for i in range(n):
        u = torch.rand(8, generator=rng)
        if i % 2 == 0 or n < 2:
            y0, x0, y1, x1 = (u[:4] * torch.tensor([h, w, h, w])).tolist()
            half_width = (0.5 + u[4].item()) * scale
            mask = _distance_to_segment(rows, cols, y0, x0, y1, x1) <= half_width
            shift = (0.6 + 0.6 * u[5].item()) * (1 if u[6].item() < 0.5 else -1)
            out[i, :, mask] = (out[i, :, mask] + shift).clamp(-1, 1)
        else:
            side = max(2, int((0.15 + 0.15 * u[0].item()) * h))
            src = (i + 1 + int(u[1].item() * (n - 1))) % n
            if src == i:
                src = (i + 1) % n
            sy, sx = int(u[2].item() * (h - side)), int(u[3].item() * (w - side))
            dy, dx = int(u[4].item() * (h - side)), int(u[5].item() * (w - side))
            out[i, :, dy : dy + side, dx : dx + side] = images[src, :, sy : sy + side, sx : sx + side]
    return out


def _distance_to_segment(
    rows: torch.Tensor, cols: torch.Tensor, y0: float, x0: float, y1: float, x1: float
) -> torch.Tensor:
    """Distance of every pixel centre to the segment (y0, x0)-(y1, x1), as an (H, W) map."""
    dy, dx = y1 - y0, x1 - x0
    length2 = max(dy * dy + dx * dx, 1e-6)
    t = (((rows - y0) * dy + (cols - x0) * dx) / length2).clamp(0, 1)
    return torch.hypot(rows - (y0 + t * dy), cols - (x0 + t * dx))
