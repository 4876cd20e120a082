"""The in-memory form of every data set: three labelled splits of uint8 images.

Images are already decoded, converted and resized by ``agad_stream.preprocess`` (the path the
scorers take), so a training loop only has to call ``to_model_input`` on its batches.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Split:
    """Images with their labels (0 normal, 1 anomalous), report groups and stable ids."""

    images: np.ndarray  # uint8 (N, H, W, C), already resized to image_size, C = 1 or 3
    labels: np.ndarray  # int64 (N,), 0 normal, 1 anomalous
    groups: np.ndarray  # str (N,): "good", a defect name, "prob_0.333", a Fashion-MNIST class name
    ids: list[str]  # file path relative to the data root, or "fmnist/train/123"

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[3] not in (1, 3):
            raise ValueError(
                f"images must be uint8 (N, H, W, 1|3), got {self.images.dtype} {self.images.shape}"
            )
        if not (self.images.shape[0] == self.labels.shape[0] == self.groups.shape[0] == n):
            raise ValueError("images, labels, groups and ids differ in length")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_normal(self) -> int:
        return int(np.sum(self.labels == 0))

    @property
    def n_anomalous(self) -> int:
        return int(np.sum(self.labels == 1))

    def take(self, index: np.ndarray | Sequence[int]) -> Split:
        """The images at ``index`` (integer positions or a boolean mask), in that order."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return Split(self.images[idx], self.labels[idx], self.groups[idx], [self.ids[i] for i in idx])

    def select_groups(self, groups: Iterable[str]) -> Split:
        """Only the images whose group is one of ``groups``."""
        return self.take(np.isin(self.groups, list(groups)))

    @staticmethod
    def concat(splits: Sequence[Split]) -> Split:
        """The splits one after another (all must share image size and channels)."""
        return Split(
            np.concatenate([s.images for s in splits]),
            np.concatenate([s.labels for s in splits]),
            np.concatenate([s.groups for s in splits]),
            [i for s in splits for i in s.ids],
        )

    @staticmethod
    def empty(image_size: int, channels: int) -> Split:
        """A split without images, e.g. the test split of a folder without test/."""
        return Split(
            np.zeros((0, image_size, image_size, channels), np.uint8),
            np.zeros(0, np.int64),
            np.zeros(0, dtype="<U1"),
            [],
        )

    def summary(self) -> dict[str, Any]:
        """Counts per label and group, and a digest of the ids that pins down exactly which images."""
        return {
            "total": len(self),
            "normal": self.n_normal,
            "anomalous": self.n_anomalous,
            "groups": dict(sorted(Counter(str(g) for g in self.groups).items())),
            "ids_sha256": hashlib.sha256("\n".join(self.ids).encode()).hexdigest(),
        }


@dataclass(frozen=True)
class DataSet:
    """A data set named by a spec string: train, validation and test splits, and how they were made.

    ``val`` is for model selection and threshold calibration, never test data. ``hard_groups`` are
    test groups reported apart and left out of the headline metrics (elpv's uncertain 0.333 and
    0.667 cells); ``source`` says where the images came from (directory, split file and its hash).
    """

    spec: str
    image_size: int
    channels: int
    gamma: float
    seed: int
    train: Split  # normals (+ labelled anomalies when gamma > 0, label 1)
    val: Split  # held-out normals (+ held-out labelled anomalies when gamma > 0)
    test: Split
    hard_groups: tuple[str, ...] = ()
    source: Mapping[str, Any] = field(default_factory=dict)

    @property
    def gamma_effective(self) -> float:
        """a / (n + a) actually in train; below ``gamma`` only when a folder had too few anomalies."""
        return self.train.n_anomalous / len(self.train) if len(self.train) else 0.0

    def headline_test(self) -> Split:
        """The test images the headline metrics use: all of them except ``hard_groups``."""
        return self.test.take(~np.isin(self.test.groups, list(self.hard_groups)))

    def test_subsets(self) -> dict[str, Split]:
        """``headline`` plus, per anomalous group, the test normals with that group: for per-defect AUROC."""
        normals = self.test.take(self.test.labels == 0)
        subsets = {"headline": self.headline_test()}
        for group in sorted({str(g) for g in self.test.groups[self.test.labels == 1]}):
            subsets[group] = Split.concat([normals, self.test.select_groups([group])])
        return subsets

    def with_normals(self, n: int, seed: int = 0) -> DataSet:
        """The same data set with only ``n`` of its good training and validation images, drawn with
        ``seed`` and shared between the two as before: what a plant with ``n`` good images has.
        Labelled anomalies and the test split stay as they are."""
        pool = Split.concat([self.train.take(self.train.labels == 0), self.val.take(self.val.labels == 0)])
        if not 2 <= n <= len(pool):
            raise ValueError(f"{self.spec} holds {len(pool)} good training and validation images, not {n}")
        held = max(1, round(n * self.val.n_normal / len(pool)))
        chosen = np.random.default_rng([seed, 2]).permutation(len(pool))[:n]
        train = Split.concat([pool.take(np.sort(chosen[held:])), self.train.take(self.train.labels == 1)])
        val = Split.concat([pool.take(np.sort(chosen[:held])), self.val.take(self.val.labels == 1)])
        source = {**self.source, "normals": n, "normals_seed": seed}
        return replace(self, train=train, val=val, source=source)

    def summary(self) -> dict[str, Any]:
        """What ``model.json`` records about the data: spec, seed, gamma, counts per split and group."""
        return {
            "spec": self.spec,
            "image_size": self.image_size,
            "channels": self.channels,
            "gamma": self.gamma,
            "gamma_effective": round(self.gamma_effective, 6),
            "seed": self.seed,
            "hard_groups": list(self.hard_groups),
            "splits": {name: getattr(self, name).summary() for name in ("train", "val", "test")},
            "source": dict(self.source),
        }
