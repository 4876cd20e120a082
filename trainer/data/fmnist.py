"""Fashion-MNIST, one-class protocol of the AGAD paper (spec ``fmnist:<class>``).

<class> is an index 0–9 or a name from CLASSES (``fmnist:8`` = ``fmnist:bag``). Train on that
class's official training images (minus a seeded ``val_fraction`` held out as val), test on the
whole official test split: that class normal, the nine others anomalous, grouped by class name
(1,000 normal + 9,000 anomalous). With γ > 0 the labelled anomalies are drawn uniformly from
the other classes' *training* images (the paper's protocol), never from test.

The files are Debian's ``dataset-fashion-mnist`` (idx format, gzip) in
/usr/share/datasets/fashion-mnist, or ``$AGAD_FMNIST_DIR``. 28 px images are resized to
image_size (the paper uses 32) by the shared preprocessing; loading takes ~0.5 s, so no cache.
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import numpy as np

from agad_stream.errors import AgadError
from agad_stream.preprocess import resize_batch
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

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "tshirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
DEFAULT_CHANNELS = 1


def data_dir() -> Path:
    return Path(os.environ.get("AGAD_FMNIST_DIR") or DEFAULT_DIR)


def parse_class(name: str) -> int:
    """Class index from ``"8"`` or a name such as ``"bag"``, ``"Ankle boot"``, ``"t-shirt/top"``."""
    key = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    if key.isdigit() and int(key) < len(CLASSES):
        return int(key)
    aliases = {c: i for i, c in enumerate(CLASSES)} | {"t_shirt_top": 0, "tshirt": 0, "boot": 9}
    if key in aliases:
        return aliases[key]
    raise AgadError(f"unknown Fashion-MNIST class {name!r}: use 0-9 or one of {', '.join(CLASSES)}")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An idx file (big-endian header: magic, then one uint32 per dimension) as uint8."""
    if not path.is_file():
        raise AgadError(
            f"Fashion-MNIST not found in {path.parent}: apt-get install dataset-fashion-mnist "
            "(or set AGAD_FMNIST_DIR to a folder with the four idx .gz files)"
        )
    data = gzip.decompress(path.read_bytes())
    ndim = magic & 0xFF
    header = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise AgadError(f"{path} is not an idx file of the expected kind (magic {int(header[0]):#010x})")
    shape = tuple(int(d) for d in header[1:])
    return np.frombuffer(data, dtype=np.uint8, offset=4 * (1 + ndim)).reshape(shape)


def read_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Official ``train`` or ``t10k`` images (N, 28, 28) and labels (N,)."""
    root = data_dir()
    images = _read_idx(root / f"{name}-images-idx3-ubyte.gz", 0x803)
    labels = _read_idx(root / f"{name}-labels-idx1-ubyte.gz", 0x801)
    return images, labels.astype(np.int64)


def load(
    spec: str,
    cls: str,
    image_size: int,
    *,
    gamma: float,
    seed: int,
    channels: int | None,
    val_fraction: float,
) -> DataSet:
    """The one-class Fashion-MNIST DataSet for class ``cls``."""
    check_gamma(gamma)
    normal_class = parse_class(cls)
    channels = channels or DEFAULT_CHANNELS
    train_images, train_classes = read_split("train")
    test_images, test_classes = read_split("t10k")

    def split(images: np.ndarray, classes: np.ndarray, positions: np.ndarray, prefix: str) -> Split:
        pixels = images[positions][:, :, :, None]
        if channels == 3:
            pixels = pixels.repeat(3, axis=3)  # what convert_channels does to a grayscale image
        return Split(
            resize_batch(pixels, image_size),
            (classes[positions] != normal_class).astype(np.int64),
            np.array([CLASSES[c] for c in classes[positions]], dtype=str),
            [f"fmnist/{prefix}/{i}" for i in positions],
        )

    normals = np.flatnonzero(train_classes == normal_class)
    keep, held = split_off(len(normals), val_fraction, rng_for(seed, NORMAL_STREAM))
    others = np.flatnonzero(train_classes != normal_class)
    take_train, take_val = draw_labelled(
        len(others),
        anomalies_for(len(keep), gamma),
        anomalies_for(len(held), gamma),
        rng_for(seed, ANOMALY_STREAM),
        what="Fashion-MNIST",
    )
    return DataSet(
        spec=spec,
        image_size=image_size,
        channels=channels,
        gamma=gamma,
        seed=seed,
        train=split(train_images, train_classes, np.r_[normals[keep], np.sort(others[take_train])], "train"),
        val=split(train_images, train_classes, np.r_[normals[held], np.sort(others[take_val])], "train"),
        test=split(test_images, test_classes, np.arange(len(test_classes)), "test"),
        source={"kind": "fmnist", "data_dir": str(data_dir()), "normal_class": CLASSES[normal_class]},
    )
