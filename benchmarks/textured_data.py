"""Build the textured benchmark: elpv's good solar cells with small drawn defects and their masks.

    python benchmarks/textured_data.py --out runs/textured --size 128

Writes a folder in MVTec AD layout (``agad train --data folder:runs/textured``):

- ``train/good/``: ``--train`` good cells from elpv's training split (seeded draw);
- ``test/good/``: ``--good`` of elpv's good test cells;
- ``test/<defect>/`` and ``ground_truth/<defect>/<name>_mask.png``: the other good test cells, each
  with one defect drawn on it, its mask drawn from the same shape. Four kinds, in turn: ``crack``
  (a dark polyline of 3 to 5 segments), ``scratch`` (a bright straight stroke), ``spot`` (a dark
  ellipse: an inactive area) and ``patch`` (a square of another good cell, turned a quarter, pasted
  in: the texture there is wrong, not its brightness).

No image is copied into the repository: the cells come from the installed elpv package. Defect
sizes scale with ``--size``; at 128 px a crack is 2 px wide and 20 to 40 px long.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from trainer.data import load_dataset

KINDS = ("crack", "scratch", "spot", "patch")
DEV_MARKER = "DEV.txt"
"""Written into a ``--dev`` folder: its test cells are not elpv's test cells."""


def draw_defect(
    image: np.ndarray, donor: np.ndarray, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (H, W) uint8 with one defect of ``kind``, and its mask (H, W) uint8 0/255."""
    size = image.shape[0]
    out = image.astype(np.int16)
    mask = np.zeros_like(image)
    width = max(1, round(size / 64))
    if kind == "crack":
        points = [rng.uniform(0.15, 0.85, 2) * size]
        for _ in range(rng.integers(3, 6)):
            angle = rng.uniform(0, 2 * np.pi)
            step = rng.uniform(0.04, 0.08) * size
            points.append(np.clip(points[-1] + step * np.array([np.cos(angle), np.sin(angle)]), 0, size - 1))
        cv2.polylines(mask, [np.array(points, np.int32).reshape(-1, 1, 2)], False, 255, width)
        out[mask > 0] -= int(rng.integers(50, 90))
    elif kind == "scratch":
        start = rng.uniform(0.1, 0.9, 2) * size
        angle = rng.uniform(0, np.pi)
        end = start + rng.uniform(0.12, 0.25) * size * np.array([np.cos(angle), np.sin(angle)])
        cv2.line(mask, tuple(int(v) for v in start), tuple(int(v) for v in end), 255, width)
        out[mask > 0] += int(rng.integers(60, 100))
    elif kind == "spot":
        centre = tuple(int(v) for v in rng.uniform(0.15, 0.85, 2) * size)
        axes = tuple(int(v) for v in rng.uniform(0.03, 0.07, 2) * size)
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        out[mask > 0] -= int(rng.integers(40, 70))
    elif kind == "patch":
        side = int(rng.uniform(0.10, 0.16) * size)
        sy, sx, dy, dx = rng.integers(0, size - side, 4)
        out[dy : dy + side, dx : dx + side] = np.rot90(donor[sy : sy + side, sx : sx + side])
        mask[dy : dy + side, dx : dx + side] = 255
    else:
        raise ValueError(f"unknown defect kind {kind!r}; choose one of {', '.join(KINDS)}")
    return np.clip(out, 0, 255).astype(np.uint8), mask


def build(
    out: Path, size: int, n_train: int, n_good: int, seed: int, dev: bool = False, n_defect: int = 0
) -> dict[str, int]:
    """Write the folder (see the module docstring); returns how many images of each kind.

    ``dev``: the test cells also come from elpv's training split, disjoint from the training draw,
    so that a change can be developed without looking at elpv's test cells. ``n_defect`` caps the
    defective test images (0: every good test cell left over gets a defect).
    """
    elpv = load_dataset("elpv", size)
    rng = np.random.default_rng(seed)
    train = elpv.train.images[elpv.train.labels == 0][..., 0]
    test = elpv.test.images[elpv.test.labels == 0][..., 0]
    if dev:
        drawn = rng.permutation(len(train))
        train, test = train[np.sort(drawn[:n_train])], train[drawn[n_train:]]
    if n_train > len(train) or n_good >= len(test):
        raise SystemExit(f"elpv has {len(train)} good training and {len(test)} good test cells")
    if out.exists():
        shutil.rmtree(out)
    counts: dict[str, int] = {}

    def write(relative: str, image: np.ndarray) -> None:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
        key = relative.split("/")[1] if relative.startswith("test") else "train"
        counts[key] = counts.get(key, 0) + 1

    if dev:
        out.mkdir(parents=True)
        (out / DEV_MARKER).write_text("development set: every cell comes from elpv's training split\n")
    for i, index in enumerate(sorted(rng.permutation(len(train))[:n_train])):
        write(f"train/good/{i:04d}.png", train[index])
    order = rng.permutation(len(test))
    for i, index in enumerate(order[:n_good]):
        write(f"test/good/{i:04d}.png", test[index])
    for i, index in enumerate(order[n_good : n_good + (n_defect or len(order))]):
        kind = KINDS[i % len(KINDS)]
        donor = train[rng.integers(len(train))]
        image, mask = draw_defect(test[index], donor, kind, rng)
        write(f"test/{kind}/{i:04d}.png", image)
        path = out / "ground_truth" / kind / f"{i:04d}_mask.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), mask)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to (re)write")
    parser.add_argument("--size", type=int, default=128, help="side of the written images in px")
    parser.add_argument("--train", type=int, default=400, help="good training cells")
    parser.add_argument("--good", type=int, default=100, help="good test cells; the rest get defects")
    parser.add_argument("--defects", type=int, default=0, help="defective test cells (default: the rest)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dev",
        action="store_true",
        help="test cells from elpv's training split too (development)",
    )
    args = parser.parse_args()
    counts = build(args.out, args.size, args.train, args.good, args.seed, args.dev, args.defects)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
