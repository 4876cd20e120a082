"""Image folders in MVTec AD layout (spec ``folder:PATH``).

::

    PATH/train/good/*        normal training images (required)
    PATH/train/<defect>/*    labelled anomalies for the supervised regime (optional)
    PATH/test/good/*         normal test images
    PATH/test/<defect>/*     anomalous test images, grouped by <defect>

Any file OpenCV reads (by extension, see IMAGE_SUFFIXES) directly in those folders; other files
and sub-folders are ignored here (MVTec's ``ground_truth/`` masks are read by
``trainer.data.masks``, for ``agad evaluate``). Grayscale or colour: unless
``channels`` is given, the first training image decides (1 if it is single-channel, else 3) and
every image is converted to that. Images go through ``agad_stream.preprocess.prepare_image``, so
training sees exactly what a scorer sees for the same file.

Splits: a seeded ``val_fraction`` of train/good is held out as val. Labelled anomalies in
train/<defect>/ are all used unless ``gamma`` says otherwise: they are the pool that train and val
draw from (see ``sampling``), γ = 0 ignores them (semi-supervised), and γ > 0 is a cap: when the
folder has fewer labelled anomalies than γ asks for, all of them are used, shared between train
and val in proportion,
and ``DataSet.gamma_effective`` / ``summary()["gamma_effective"]`` says what γ really was.
test/ is optional (the test split is then empty); images are not cached.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from agad_stream.errors import AgadError
from agad_stream.preprocess import BadImageError, decode_image, prepare_image
from trainer.data.dataset import DataSet, Split
from trainer.data.sampling import (
    ANOMALY_STREAM,
    NORMAL_STREAM,
    anomalies_for,
    check_gamma,
    draw_labelled,
    rng_for,
    split_off,
)

# fmt: off
IMAGE_SUFFIXES = frozenset({".bmp", ".dib", ".jpeg", ".jpg", ".jpe", ".jp2", ".png", ".webp", ".pbm", ".pgm",
                            ".ppm", ".pxm", ".pnm", ".sr", ".ras", ".tiff", ".tif"})
# fmt: on
NORMAL_GROUP = "good"


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _defect_folders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name != NORMAL_GROUP and _images_in(p))


def _read(path: Path, image_size: int, channels: int) -> np.ndarray:
    try:
        return prepare_image(path.read_bytes(), None, image_size=image_size, channels=channels)
    except BadImageError as e:
        raise AgadError(f"{path}: {e}") from None


def _load(root: Path, files: list[tuple[Path, str]], image_size: int, channels: int) -> Split:
    """The Split of ``files`` (path, group); group "good" is normal, any other anomalous."""
    if not files:
        return Split.empty(image_size, channels)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        images = list(pool.map(lambda f: _read(f[0], image_size, channels), files))
    groups = [group for _, group in files]
    return Split(
        np.stack(images),
        np.array([0 if g == NORMAL_GROUP else 1 for g in groups], dtype=np.int64),
        np.array(groups, dtype=str),
        [path.relative_to(root).as_posix() for path, _ in files],
    )


def _native_channels(path: Path) -> int:
    try:
        return 1 if decode_image(path.read_bytes()).shape[2] == 1 else 3
    except BadImageError as e:
        raise AgadError(f"{path}: {e}") from None


def load(
    spec: str,
    path: str,
    image_size: int,
    *,
    gamma: float | None,
    seed: int,
    channels: int | None,
    val_fraction: float,
) -> DataSet:
    """The DataSet of an MVTec-style folder; ``gamma`` None uses every labelled anomaly it holds."""
    root = Path(path).expanduser()
    good = root / "train" / NORMAL_GROUP
    normals = _images_in(good) if good.is_dir() else []
    if not normals:
        raise AgadError(
            f"no training images in {good}: a folder: data set needs PATH/train/good/*.png (or .jpg, …)"
        )
    channels = channels or _native_channels(normals[0])

    keep, held = split_off(len(normals), val_fraction, rng_for(seed, NORMAL_STREAM))
    labelled = [(p, d.name) for d in _defect_folders(root / "train") for p in _images_in(d)]
    if gamma is None:
        gamma = len(labelled) / (len(labelled) + len(normals)) if labelled else 0.0
    check_gamma(gamma)
    if gamma > 0 and not labelled:
        raise AgadError(
            f"gamma={gamma} needs labelled anomalies in {root / 'train'}/<defect>/; there are none"
        )
    take_train, take_val = draw_labelled(
        len(labelled) if gamma > 0 else 0,
        anomalies_for(len(keep), gamma),
        anomalies_for(len(held), gamma),
        rng_for(seed, ANOMALY_STREAM),
        what=str(root),
        cap=True,
    )
    test_good = root / "test" / NORMAL_GROUP
    test_files = [(p, NORMAL_GROUP) for p in _images_in(test_good)] if test_good.is_dir() else []
    test_files += [(p, d.name) for d in _defect_folders(root / "test") for p in _images_in(d)]
    return DataSet(
        spec=spec,
        image_size=image_size,
        channels=channels,
        gamma=gamma,
        seed=seed,
        train=_load(
            root,
            [(normals[i], NORMAL_GROUP) for i in keep] + [labelled[i] for i in np.sort(take_train)],
            image_size,
            channels,
        ),
        val=_load(
            root,
            [(normals[i], NORMAL_GROUP) for i in held] + [labelled[i] for i in np.sort(take_val)],
            image_size,
            channels,
        ),
        test=_load(root, test_files, image_size, channels),
        source={"kind": "folder", "root": str(root.resolve())},
    )
