"""``load_dataset``: a DataSet from a spec string (``folder:PATH``, ``elpv``, ``fmnist:<class>``)."""

from __future__ import annotations

import numpy as np

from agad_stream.errors import AgadError
from agad_stream.preprocess import MIN_SIDE
from trainer.data import elpv, fmnist, folder
from trainer.data.dataset import DataSet, Split

MAX_IMAGE_SIZE = 1024
SPECS = "folder:PATH, elpv or fmnist:<class>"


def load_dataset(
    spec: str,
    image_size: int,
    *,
    gamma: float | None = 0.0,
    seed: int = 0,
    channels: int | None = None,
    val_fraction: float = 0.1,
) -> DataSet:
    """Load the data set named by ``spec``, every image resized to ``image_size`` square.

    ``gamma`` is the labelled-anomaly fraction a / (n + a) of train (0: normals only; None: a
    folder's every labelled anomaly, and 0 for the data sets with a fixed protocol).
    ``channels`` None keeps the data set's own (1 for elpv and Fashion-MNIST, the first training
    image's for a folder). ``seed`` fixes every random choice; ``val_fraction`` is the share of
    training normals held out for validation (elpv ignores it: its split is a committed file).
    """
    if not MIN_SIDE <= image_size <= MAX_IMAGE_SIZE:
        raise AgadError(f"image size must be between {MIN_SIDE} and {MAX_IMAGE_SIZE} px, got {image_size}")
    if channels not in (None, 1, 3):
        raise AgadError(f"channels must be 1 or 3, got {channels}")
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "folder" and arg:
        return folder.load(
            spec, arg, image_size, gamma=gamma, seed=seed, channels=channels, val_fraction=val_fraction
        )
    if kind == "elpv" and not arg:
        return elpv.load(spec, image_size, gamma=gamma or 0.0, seed=seed, channels=channels)
    if kind == "fmnist" and arg:
        return fmnist.load(
            spec, arg, image_size, gamma=gamma or 0.0, seed=seed, channels=channels, val_fraction=val_fraction
        )
    raise AgadError(f"unknown data set spec {spec!r}: use {SPECS}")


def dataset_images(
    spec: str,
    image_size: int,
    *,
    split: str = "test",
    normal_only: bool = False,
    seed: int = 0,
    channels: int | None = None,
) -> np.ndarray:
    """The images of one split of ``spec`` (only its normals with ``normal_only``): what the runtime's
    ``agad_stream.datasets`` asks for through the ``agad.datasets`` entry point."""
    if split not in ("train", "val", "test"):
        raise AgadError(f"split {split!r}: choose train, val or test")
    chosen: Split = getattr(load_dataset(spec, image_size, seed=seed, channels=channels), split)
    return chosen.images[chosen.labels == 0] if normal_only else chosen.images
