"""Operators' decisions as training data: a fixed holdout, and the splits a fine-tune trains on.

Each labelled frame goes to the holdout or not by a hash of its frame_id, so the holdout never
moves from one retrain to the next and never trains; the rest is split again by another hash into
frames that train and frames that validate (choose the epoch, calibrate the threshold). Operators'
normals are the most useful normals there are (the false alarms of the model in service); their
confirmed anomalies are the supervised regime's labelled defects.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from agad_stream.preprocess import BadImageError, prepare_image
from agad_stream.review.labels import LabelRecord
from trainer.data import DataSet, Split

log = logging.getLogger(__name__)

HOLDOUT_SHARE = 0.25
VAL_SHARE = 0.2
"""Share of the labelled frames outside the holdout that validate instead of training."""


def share_of(frame_id: str, salt: str) -> float:
    """Where ``frame_id`` falls in [0, 1), the same on every host and in every run."""
    digest = hashlib.sha256(f"{salt}:{frame_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class LabelledSplits:
    train: Split
    val: Split
    holdout: Split

    def counts(self) -> dict[str, int]:
        return {
            f"{name}_{kind}": getattr(split, f"n_{kind}")
            for name, split in (("train", self.train), ("val", self.val), ("holdout", self.holdout))
            for kind in ("normal", "anomalous")
        }


def label_splits(
    labels: Iterable[LabelRecord], image_size: int, channels: int, holdout_share: float = HOLDOUT_SHARE
) -> LabelledSplits:
    """The decided frames, prepared as the model sees them, split into train / val / holdout."""
    parts: dict[str, list[tuple[np.ndarray, LabelRecord]]] = {"train": [], "val": [], "holdout": []}
    for label in sorted(labels, key=lambda record: record.frame_id):
        try:
            image = prepare_image(label.image, label.content_type, image_size=image_size, channels=channels)
        except BadImageError as exc:
            log.warning("label of %s left out: its image does not decode (%s)", label.frame_id, exc)
            continue
        if share_of(label.frame_id, "holdout") < holdout_share:
            parts["holdout"].append((image, label))
        else:
            parts["val" if share_of(label.frame_id, "val") < VAL_SHARE else "train"].append((image, label))
    made = {name: _split(entries, image_size, channels) for name, entries in parts.items()}
    return LabelledSplits(made["train"], made["val"], made["holdout"])


def with_labels(base: DataSet, labelled: LabelledSplits) -> DataSet:
    """``base`` (the current version's own data) with the labelled frames added to train and val."""
    return DataSet(
        spec=base.spec,  # what a later retrain loads again; the labels come from the label store
        image_size=base.image_size,
        channels=base.channels,
        gamma=base.gamma,
        seed=base.seed,
        train=Split.concat([base.train, labelled.train]),
        val=Split.concat([base.val, labelled.val]),
        test=base.test,
        hard_groups=base.hard_groups,
        source={**base.source, "labels": labelled.counts()},
    )


def evaluation_split(base: DataSet, labelled: LabelledSplits) -> Split:
    """What candidate and current version are compared on: the base validation split and the holdout."""
    return Split.concat([base.val, labelled.holdout])


def _split(entries: list[tuple[np.ndarray, LabelRecord]], image_size: int, channels: int) -> Split:
    if not entries:
        return Split.empty(image_size, channels)
    labels = np.array([1 if record.label == "anomaly" else 0 for _, record in entries], dtype=np.int64)
    groups = np.array(
        ["good" if record.label == "normal" else record.defect or "anomaly" for _, record in entries],
        dtype=str,
    )
    return Split(
        np.stack([image for image, _ in entries]), labels, groups, [f"label:{r.frame_id}" for _, r in entries]
    )
