"""Pixel AUROC and AUPRO on heat-maps whose answer is known, and masks a folder must have."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from agad_stream.errors import AgadError
from trainer.baselines import patch_nn
from trainer.data import load_dataset
from trainer.data.masks import defect_masks
from trainer.localisation import aupro, pixel_auroc


def _two_defects() -> np.ndarray:
    """Four 32 px masks: a large defect and a small one on the first two images, nothing on the rest."""
    masks = np.zeros((4, 32, 32), dtype=bool)
    masks[0, 4:20, 4:20] = True  # 256 pixels
    masks[1, 28:30, 28:30] = True  # 4 pixels
    return masks


def test_a_heatmap_on_the_defects_scores_one_and_noise_scores_chance() -> None:
    masks = _two_defects()
    perfect = masks.astype(np.float32)
    assert pixel_auroc(masks, perfect) == pytest.approx(1.0)
    assert aupro(masks, perfect) == pytest.approx(1.0, abs=1e-6)
    squares = np.zeros((8, 32, 32), dtype=bool)
    squares[:, 8:16, 8:16] = True  # eight regions of 64 pixels: their mean PRO varies little
    noise = np.random.default_rng(0).random(squares.shape).astype(np.float32)
    assert pixel_auroc(squares, noise) == pytest.approx(0.5, abs=0.03)
    assert aupro(squares, noise) == pytest.approx(0.15, abs=0.03)  # PRO ≈ FPR: area 0.3²/2, over 0.3


def test_aupro_weighs_each_region_alike_where_pixel_auroc_weighs_pixels() -> None:
    masks = _two_defects()
    heat = np.full(masks.shape, 0.5, np.float32)
    heat[0][masks[0]] = 1.0  # the large defect found ...
    heat[1][masks[1]] = 0.0  # ... the small one missed: below every normal pixel
    assert pixel_auroc(masks, heat) > 0.98  # 256 of 260 defect pixels ranked first
    assert aupro(masks, heat) == pytest.approx(0.5, abs=0.01)  # one region of two


def test_a_folder_with_ground_truth_needs_a_mask_for_every_defect(tmp_path: Path) -> None:
    for folder in ("train/good", "test/good", "test/crack"):
        (tmp_path / folder).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / folder / f"{i}.png"), np.full((16, 16), 100 + i, np.uint8))
    dataset = load_dataset(f"folder:{tmp_path}", 16)
    assert defect_masks(tmp_path, dataset.test, 16) is None  # no ground_truth/: no pixel figures
    (tmp_path / "ground_truth" / "crack").mkdir(parents=True)
    for i in range(2):
        mask = np.full((16, 16), 255, np.uint8)
        cv2.imwrite(str(tmp_path / "ground_truth" / "crack" / f"{i}_mask.png"), mask)
    missing = r"ground_truth/crack/2_mask.png: no readable mask for test/crack/2.png"
    with pytest.raises(AgadError, match=missing):
        defect_masks(tmp_path, dataset.test, 16)


def test_patch_nearest_neighbour_finds_a_small_defect_on_a_texture() -> None:
    rng = np.random.default_rng(0)
    texture = np.tile(np.kron(np.eye(2), np.ones((4, 4))) * 120 + 60, (6, 6))[:40, :40]
    normals = np.stack([np.roll(texture, 4 * rng.integers(2, size=2), (0, 1)) for _ in range(30)])
    noisy = np.clip(normals + rng.normal(0, 4, normals.shape), 0, 255).astype(np.uint8)[..., None]
    tests = noisy[:6].copy()
    tests[0, 20:26, 8:14] = 255  # a 6 px bright spot on the first test image
    scores, heat = patch_nn(noisy[6:], tests, patch=8)
    assert heat.shape == (6, 40, 40)
    assert scores[0] > 2 * scores[1:].max()  # the worst patch gives it away
    mask = np.zeros((6, 40, 40), dtype=bool)
    mask[0, 20:26, 8:14] = True
    assert pixel_auroc(mask, heat) > 0.95
    assert np.unravel_index(heat[0].argmax(), heat[0].shape)[0] in range(16, 30)
