"""Defect masks of a folder data set in MVTec AD layout, for scoring where the heat-map points.

::

    PATH/ground_truth/<defect>/<name>_mask.png    defect pixels (non-zero) of PATH/test/<defect>/<name>.*

Masks are resized to the model's image size like the images (nearest neighbour, so they stay
binary). Normal test images have empty masks. A folder without ``ground_truth/`` has no masks; a
folder with it must have one for every anomalous test image, or its pixel figures would be
computed on part of the defects without saying so.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from agad_stream.errors import AgadError
from trainer.data.dataset import DataSet, Split

GROUND_TRUTH = "ground_truth"
MASK_SUFFIX = "_mask.png"


def mask_path(root: Path, image_id: str) -> Path:
    """``test/<defect>/<name>.<ext>`` -> ``ROOT/ground_truth/<defect>/<name>_mask.png``."""
    image = PurePosixPath(image_id)
    return root / GROUND_TRUTH / image.parent.name / (image.stem + MASK_SUFFIX)


def defect_masks(root: Path, split: Split, image_size: int) -> np.ndarray | None:
    """Boolean (N, image_size, image_size) masks of ``split`` (the test split of the folder at
    ``root``), or None when the folder has no ``ground_truth/``."""
    if not (root / GROUND_TRUTH).is_dir():
        return None
    masks = np.zeros((len(split), image_size, image_size), dtype=bool)
    for index in np.flatnonzero(split.labels == 1):
        path = mask_path(root, split.ids[index])
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
        if mask is None:
            raise AgadError(
                f"{path}: no readable mask for {split.ids[index]}; every anomalous test image needs "
                f"one under {root / GROUND_TRUTH}/<defect>/ (non-zero pixels = defect), or remove "
                f"{root / GROUND_TRUTH} to evaluate without pixel figures"
            )
        resized = cv2.resize(mask, (image_size, image_size), interpolation=cv2.INTER_NEAREST)
        masks[index] = resized > 0
    return masks


def masks_of_test_split(dataset: DataSet) -> np.ndarray | None:
    """The test split's defect masks, for a folder data set that has them; None for any other."""
    if dataset.source.get("kind") != "folder" or not dataset.test.n_anomalous:
        return None
    return defect_masks(Path(dataset.source["root"]), dataset.test, dataset.image_size)
