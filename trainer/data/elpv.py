"""elpv: electroluminescence images of solar cells with real defects (spec ``elpv``).

The images come from the installed ``elpv-dataset`` package (CC-BY-NC-SA-4.0), never copied into
this repository. 2,624 grayscale 300×300 cells, each with a defect probability from experts.

Labels: probability 0 is normal (group ``prob_0.0``), 1.0 anomalous (``prob_1.0``). The uncertain
0.333 and 0.667 cells are anomalous too but kept as their own groups, ``prob_0.333`` and
``prob_0.667``: they are ``hard_groups``, reported apart and left out of the headline metrics.

The split is fixed and committed: ``splits/elpv_seed0.csv`` lists every image's relative path,
split, probability and cell type (file names only). It was made by :func:`make_split` with seed
0, stratified by probability and cell type (mono / poly):

- probability 0: 70 % train, 10 % val, 20 % test (1,056 / 150 / 302);
- probability 1.0: 40 % ``pool`` of labelled anomalies, 60 % test (286 / 429);
- probabilities 0.333 and 0.667: all test (295 + 106).

So every run, model version and γ is tested on the same 1,132 images. γ > 0 draws labelled
anomalies from the pool only (train from the front of a seeded order, val from the back, see
``sampling``); the ``seed`` argument of ``load_dataset`` changes which pool images are labelled,
nothing else. γ is limited by the pool: a_train + a_val ≤ 286, i.e. γ ≲ 0.19. ``val_fraction``
is ignored: the split file decides. Regenerate the file (only if the package's data changes) with
``python -m trainer.data.make_elpv_split``.
"""

from __future__ import annotations

import csv
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agad_stream.errors import AgadError
from agad_stream.preprocess import prepare_image
from trainer.data.cache import cache_key, cached_array
from trainer.data.dataset import DataSet, Split
from trainer.data.sampling import ANOMALY_STREAM, anomalies_for, check_gamma, draw_labelled, rng_for

SPLIT_FILE = Path(__file__).parent / "splits" / "elpv_seed0.csv"
SPLIT_FRACTIONS = {  # probability -> (split, fraction) in the order the shuffled images are dealt
    "0.000": (("train", 0.7), ("val", 0.1), ("test", 0.2)),
    "1.000": (("pool", 0.4), ("test", 0.6)),
    "0.333": (("test", 1.0),),
    "0.667": (("test", 1.0),),
}
GROUPS = {"0.000": "prob_0.0", "0.333": "prob_0.333", "0.667": "prob_0.667", "1.000": "prob_1.0"}
HARD_GROUPS = ("prob_0.333", "prob_0.667")
DEFAULT_CHANNELS = 1


@dataclass(frozen=True)
class Row:
    """One image of the split file."""

    path: str  # relative to the package's data directory, e.g. images/cell0001.png
    split: str  # train | val | test | pool
    probability: str  # "0.000", "0.333", "0.667" or "1.000"
    cell_type: str  # mono | poly


def data_dir() -> Path:
    """The installed package's data directory, or an AgadError saying how to install it."""
    try:
        import elpv_dataset
    except ImportError:
        raise AgadError("elpv data set not installed: pip install elpv-dataset") from None
    path = Path(os.path.dirname(elpv_dataset.__file__)) / "data"
    if not (path / "labels.csv").is_file():
        raise AgadError(f"elpv-dataset is installed but {path / 'labels.csv'} is missing: reinstall it")
    return path


def read_labels(root: Path) -> list[tuple[str, str, str]]:
    """(path, probability as "0.333", cell type) per image of the package's labels.csv, in its order."""
    rows = []
    for line in (root / "labels.csv").read_text().splitlines():
        if line.strip():
            path, probability, cell_type = line.split()
            rows.append((path, f"{float(probability):.3f}", cell_type))
    return rows


def make_split(labels: list[tuple[str, str, str]], seed: int = 0) -> list[Row]:
    """Deal each (probability, cell type) stratum, shuffled by ``seed``, into splits by SPLIT_FRACTIONS."""
    rng = np.random.default_rng(seed)
    split_of: dict[str, str] = {}
    for probability, fractions in SPLIT_FRACTIONS.items():
        for cell_type in sorted({t for _, p, t in labels if p == probability}):
            stratum = sorted(path for path, p, t in labels if p == probability and t == cell_type)
            order = rng.permutation(len(stratum))
            start, cumulative = 0, 0.0
            for split, fraction in fractions:
                cumulative += fraction
                stop = round(cumulative * len(stratum))
                for i in order[start:stop]:
                    split_of[stratum[i]] = split
                start = stop
    return [Row(path, split_of[path], probability, cell_type) for path, probability, cell_type in labels]


def write_split(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "split", "probability", "cell_type"])
        writer.writerows([r.path, r.split, r.probability, r.cell_type] for r in rows)


def read_split(path: Path = SPLIT_FILE) -> list[Row]:
    with path.open(newline="") as f:
        return [Row(r["path"], r["split"], r["probability"], r["cell_type"]) for r in csv.DictReader(f)]


def _load_pixels(root: Path, paths: list[str], image_size: int, channels: int) -> np.ndarray:
    def one(path: str) -> np.ndarray:
        return prepare_image(
            (root / path).read_bytes(), "image/png", image_size=image_size, channels=channels
        )

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return np.stack(list(pool.map(one, paths)))


def load(spec: str, image_size: int, *, gamma: float, seed: int, channels: int | None) -> DataSet:
    """The elpv DataSet at ``image_size``: the committed split, labelled anomalies from its pool."""
    check_gamma(gamma)
    channels = channels or DEFAULT_CHANNELS
    root = data_dir()
    rows = read_split()
    labels = read_labels(root)
    if [(r.path, r.probability, r.cell_type) for r in rows] != labels:
        raise AgadError(
            f"{SPLIT_FILE.name} does not match the installed elpv-dataset ({root}): "
            "install elpv-dataset 1.0, which it was made for, "
            "or regenerate it with python -m trainer.data.make_elpv_split"
        )
    paths = [r.path for r in rows]
    labels_bytes = (root / "labels.csv").read_bytes()
    key = cache_key("elpv", labels_bytes, image_size, channels)
    images = cached_array(
        f"elpv-{image_size}px-{channels}c", key, lambda: _load_pixels(root, paths, image_size, channels)
    )

    def split(index: np.ndarray) -> Split:
        probabilities = [rows[i].probability for i in index]
        return Split(
            images[index],
            np.array([0 if p == "0.000" else 1 for p in probabilities], dtype=np.int64),
            np.array([GROUPS[p] for p in probabilities], dtype=str),
            [paths[i] for i in index],
        )

    def where(name: str) -> np.ndarray:
        return np.array([i for i, r in enumerate(rows) if r.split == name], dtype=np.int64)

    train, val, pool = where("train"), where("val"), where("pool")
    n_train, n_val = anomalies_for(len(train), gamma), anomalies_for(len(val), gamma)
    take_train, take_val = draw_labelled(
        len(pool), n_train, n_val, rng_for(seed, ANOMALY_STREAM), what="elpv (pool of 286 prob-1.0 cells)"
    )
    source: dict[str, Any] = {
        "kind": "elpv",
        "data_dir": str(root),
        "split_file": f"trainer/data/splits/{SPLIT_FILE.name}",
        "split_file_sha256": hashlib.sha256(SPLIT_FILE.read_bytes()).hexdigest(),
        "labels_sha256": hashlib.sha256(labels_bytes).hexdigest(),
    }
    return DataSet(
        spec=spec,
        image_size=image_size,
        channels=channels,
        gamma=gamma,
        seed=seed,
        train=split(np.concatenate([train, pool[np.sort(take_train)]])),
        val=split(np.concatenate([val, pool[np.sort(take_val)]])),
        test=split(where("test")),
        hard_groups=HARD_GROUPS,
        source=source,
    )
