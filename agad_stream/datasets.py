"""Images of a named data set (``fmnist:<class>``, ``elpv``, ...) from whichever package provides them.

``agad_stream`` imports no training code. The trainer registers its loader under the entry-point
group ``agad.datasets`` (name ``images``), and the runtime finds it there when it is installed: a
scorer host without the trainer simply has no named data sets (``folder:PATH`` needs none).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Literal

import numpy as np

from agad_stream.errors import AgadError

GROUP = "agad.datasets"
SplitName = Literal["train", "val", "test"]


def dataset_images(
    spec: str,
    image_size: int,
    *,
    split: SplitName = "test",
    normal_only: bool = False,
    seed: int = 0,
    channels: int | None = None,
) -> np.ndarray:
    """uint8 (N, S, S, C) images of ``split`` of the data set ``spec``, as training prepared them."""
    found = [entry for entry in entry_points(group=GROUP) if entry.name == "images"]
    if not found:
        raise AgadError(
            f"data spec {spec!r} needs the trainer package, which is not installed here; install "
            "agad-stream with its training code, or use folder:PATH with a folder of images"
        )
    images: np.ndarray = found[0].load()(
        spec, image_size, split=split, normal_only=normal_only, seed=seed, channels=channels
    )
    return images
