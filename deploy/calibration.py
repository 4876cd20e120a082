"""INT8 calibration data: fixed-size batches of normal training images, preprocessed as in serving.

TensorRT's entropy calibrator picks each tensor's INT8 range from the activations it sees, so the
images must be what the scorer sees most: normal parts, through the shared preprocessing. The
calibration profile has one fixed batch shape, so every batch here has exactly ``batch_size``
images (the remainder that does not fill a batch is left out). Plain numpy: tested without a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from agad_stream.errors import AgadError
from agad_stream.preprocess import to_model_input


def pick_calibration_images(images: np.ndarray, labels: np.ndarray, limit: int) -> np.ndarray:
    """Up to ``limit`` normal (label 0) images, spread evenly over the split rather than its first ones."""
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 (N, H, W, C) images, got {images.dtype} {images.shape}")
    normal = np.flatnonzero(np.asarray(labels) == 0)
    if normal.size == 0:
        raise AgadError("the calibration data has no normal images (label 0); pass a data set with normals")
    if normal.size > limit:
        normal = normal[np.linspace(0, normal.size - 1, limit).round().astype(int)]
    return images[normal]


def calibration_batch_size(count: int, wanted: int) -> int:
    """The batch size to calibrate with: ``wanted``, or all images when there are fewer."""
    if count < 1 or wanted < 1:
        raise AgadError(f"calibration needs at least one image and a positive batch size ({count}, {wanted})")
    return min(count, wanted)


def calibration_batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """float32 NCHW batches of exactly ``batch_size`` images; a last partial batch is dropped."""
    for start in range(0, len(images) - batch_size + 1, batch_size):
        yield to_model_input(images[start : start + batch_size])
