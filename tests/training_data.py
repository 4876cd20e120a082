"""Small data sets for training tests: tensors in [-1, 1] stored as the uint8 Splits training reads."""

from __future__ import annotations

import numpy as np
import torch

from trainer.data import DataSet, Split


def split_of(images: torch.Tensor, labels: np.ndarray | torch.Tensor) -> Split:
    """(N, C, H, W) in [-1, 1] and labels as a Split of uint8 (N, H, W, C) pixels."""
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    labels = np.asarray(labels, dtype=np.int64)
    groups = np.where(labels == 1, "defect", "good")
    return Split(pixels, labels, groups, [str(i) for i in range(len(labels))])


def dataset_of(train: Split, val: Split, test: Split | None = None) -> DataSet:
    size, channels = train.images.shape[1], train.images.shape[3]
    test = test if test is not None else Split.empty(size, channels)
    gamma = train.n_anomalous / len(train)
    return DataSet("tensors", size, channels, gamma, 0, train, val, test)
