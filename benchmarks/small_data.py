"""The small-data protocol: the default beside the baselines, each on exactly the same few good images.

    python benchmarks/small_data.py --data fmnist:0 --normals 100 400 1000 --threads 2
    python benchmarks/small_data.py --data elpv --image-size 64 --normals 301 603 1206 --threads 2
    python benchmarks/small_data.py --data folder:runs/textured --image-size 64 --threads 2

A plant starts with a few hundred good images, so every method sees ``--normals`` good images
(drawn with the seed from the data set's training and validation normals, split between the two
as the data set splits them; without ``--normals``, all of them) and is tested on the data set's
whole test split. Methods: ``default`` and ``autoencoder`` (trained by ``trainer.api.train`` with
the product's adaptive step budget), the raw-pixel ``knn`` (5-NN) and ``patch_nn`` (patch nearest
neighbour); the trained models stay under ``--models``. A folder with ``ground_truth/`` masks
also gets pixel AUROC and AUPRO of each method's heat-maps (``knn`` has none). One run file per
data set, size and method in benchmarks/results/small/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result
from trainer.agad.variant import preset
from trainer.api import TrainConfig, train
from trainer.baselines import knn_scores, patch_nn
from trainer.data import DataSet, load_dataset
from trainer.data.masks import masks_of_test_split
from trainer.evaluate import evaluation_report, scores_and_heatmaps
from trainer.localisation import aupro, pixel_auroc

METHODS = ("default", "autoencoder", "knn", "patch_nn")
TABLE = "small"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="fmnist:<class>, elpv or folder:PATH")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--normals", type=int, nargs="*", default=[], help="good images each method gets")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", type=Path, default=Path("runs/small"), help="where trained models go")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    full = load_dataset(args.data, args.image_size, seed=args.seed)
    masks = masks_of_test_split(full)
    for n in args.normals or [full.train.n_normal + full.val.n_normal]:
        dataset = full.with_normals(n, args.seed)
        for method in args.methods:
            started = time.perf_counter()
            name = f"{_tag(args.data)}-{args.image_size}px-n{n}-{method}-s{args.seed}"
            record = {
                "data": args.data,
                "image_size": args.image_size,
                "normals": n,
                "train_normals": dataset.train.n_normal,
                "val_normals": dataset.val.n_normal,
                "method": method,
                "seed": args.seed,
                **run(method, dataset, masks, args.models / name),
            }
            record["wall_seconds"] = round(time.perf_counter() - started, 1)
            path = write_result(TABLE, name, record)
            print(f"{path.name}: test AUROC {record['auroc']:.4f}", flush=True)


def run(method: str, dataset: DataSet, masks: np.ndarray | None, out: Path) -> dict[str, Any]:
    """Test AUROC of ``method`` trained on ``dataset`` (a model goes to ``out``); pixel figures too
    when there are masks."""
    normals = dataset.train.images[dataset.train.labels == 0]
    heatmaps = None
    extra: dict[str, Any] = {}
    if method == "knn":
        scores = knn_scores(normals, dataset.test.images)
    elif method == "patch_nn":
        scores, heatmaps = patch_nn(normals, dataset.test.images)
    else:
        trained = train(TrainConfig(preset(method)), dataset, out, progress=False)
        scores, heatmaps = scores_and_heatmaps(trained.scorer, dataset.test)
        keys = ("budget", "steps", "best_step", "stopped", "seconds", "images_per_second")
        extra = {"training": {k: trained.card.training[k] for k in keys}, "score": trained.card.score.method}
    report = evaluation_report(dataset.test, scores, float(np.median(scores)), dataset.hard_groups)
    result: dict[str, Any] = {
        "auroc": report["auroc"],
        "groups": {g: e.get("auroc") for g, e in report["groups"].items()},
        **extra,
    }
    if masks is not None and heatmaps is not None:
        result.update(pixel_auroc=pixel_auroc(masks, heatmaps), aupro=aupro(masks, heatmaps))
    return result


def _tag(spec: str) -> str:
    """``fmnist:3`` -> ``fmnist3``; ``folder:runs/textured`` -> ``textured``."""
    kind, _, arg = spec.partition(":")
    return Path(arg).name if kind == "folder" else kind + arg


if __name__ == "__main__":
    main()
