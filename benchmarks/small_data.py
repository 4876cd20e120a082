"""The small-data protocol: the default beside the baselines, each on exactly the same few good images.

    python benchmarks/small_data.py --data fmnist:0 --normals 100 400 1000 --threads 2
    python benchmarks/small_data.py --data elpv --image-size 64 --normals 301 603 1206 --threads 2
    python benchmarks/small_data.py --data folder:runs/textured --image-size 64 --threads 2
    python benchmarks/small_data.py --data fmnist:0 --normals 100 --methods default knn --dev \
        --set stretched_anomalies=32 --tag stretched --threads 2

A plant starts with a few hundred good images, so every method sees ``--normals`` good images
(drawn with the seed from the data set's training and validation normals, split between the two
as the data set splits them; without ``--normals``, all of them) and is tested on the data set's
whole test split. Methods: ``default`` and ``autoencoder`` (trained by ``trainer.api.train`` with
the product's adaptive step budget), the raw-pixel ``knn`` (5-NN) and ``patch_nn`` (patch nearest
neighbour); the trained models stay under ``--models``. A folder with ``ground_truth/`` masks
also gets pixel AUROC and AUPRO of each method's heat-maps (``knn`` has none). One run file per
data set, size and method in benchmarks/results/small/.

``--dev`` tests on data that is not test data instead, for choosing a change to the default: good
images of the data set that were not drawn (at most :data:`DEV_NORMALS`) against the anomalies
a gamma = 0.05 split would label (``benchmarks.common.dev_anomalies``); its run files go to
benchmarks/results/small-dev/. ``--set FIELD=VALUE`` changes a field of the trained variants,
``--steps N`` gives them a fixed budget of N steps (validation still chooses the checkpoint, but
nothing stops early), and ``--tag`` names the change in the run file names.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dev_anomalies, write_result
from trainer.agad.variant import preset
from trainer.api import TrainConfig, train
from trainer.baselines import knn_scores, patch_nn
from trainer.cli import variant_override
from trainer.data import DataSet, Split, load_dataset
from trainer.data.masks import masks_of_test_split
from trainer.evaluate import evaluation_report, scores_and_heatmaps
from trainer.localisation import aupro, pixel_auroc

METHODS = ("default", "autoencoder", "knn", "patch_nn")
TRAINED = ("default", "autoencoder")
TABLE = "small"
DEV_TABLE = "small-dev"
DEV_NORMALS = 600


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="fmnist:<class>, elpv or folder:PATH")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--normals", type=int, nargs="*", default=[], help="good images each method gets")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seed", type=int, default=0, help="draws the images and seeds the training")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", type=Path, default=Path("runs/small"), help="where trained models go")
    parser.add_argument("--dev", action="store_true", help="test on dev data, never the test split")
    parser.add_argument("--set", action="append", type=variant_override, default=[], metavar="FIELD=VALUE")
    parser.add_argument(
        "--steps", type=int, help="a fixed budget in optimiser steps instead of the default's (dev runs)"
    )
    parser.add_argument("--tag", default="", help="names the --set or --steps change in run file names")
    args = parser.parse_args()
    if (args.set or args.steps) and not args.tag:
        parser.error("--set and --steps need a --tag that names the change in the run files")
    if args.dev and args.data.startswith("folder:"):
        parser.error("--dev takes fmnist or elpv; for a folder, build a dev folder: textured_data.py --dev")
    torch.set_num_threads(args.threads)
    full = load_dataset(args.data, args.image_size, seed=args.seed)
    masks = None if args.dev else masks_of_test_split(full)
    overrides = dict(args.set)
    for n in args.normals or [full.train.n_normal + full.val.n_normal]:
        dataset = full.with_normals(n, args.seed)
        if args.dev:
            dataset = replace(dataset, test=dev_split(full, dataset, args.seed))
        for method in args.methods:
            started = time.perf_counter()
            tag = f"-{args.tag}" if args.tag and method in TRAINED else ""
            name = f"{_tag(args.data)}-{args.image_size}px-n{n}-{method}{tag}-s{args.seed}"
            record = {
                "data": args.data,
                "image_size": args.image_size,
                "normals": n,
                "train_normals": dataset.train.n_normal,
                "val_normals": dataset.val.n_normal,
                "method": method,
                "seed": args.seed,
                "tested_on": "dev" if args.dev else "test",
                **({"set": overrides} if method in TRAINED and overrides else {}),
                **({"steps": args.steps} if method in TRAINED and args.steps else {}),
                **run(method, dataset, masks, args.models / name, overrides, args.steps, args.seed),
            }
            record["wall_seconds"] = round(time.perf_counter() - started, 1)
            path = write_result(DEV_TABLE if args.dev else TABLE, name, record)
            print(f"{path.name}: {record['tested_on']} AUROC {record['auroc']:.4f}", flush=True)


def dev_split(full: DataSet, dataset: DataSet, seed: int) -> Split:
    """Good images of ``full`` that ``dataset`` did not draw (at most DEV_NORMALS, drawn with the
    seed) and the anomalies a gamma = 0.05 split would label: data that is not test data."""
    drawn = set(dataset.train.ids) | set(dataset.val.ids)
    pool = Split.concat([full.train.take(full.train.labels == 0), full.val.take(full.val.labels == 0)])
    unused = np.flatnonzero([i not in drawn for i in pool.ids])
    normals = pool.take(np.sort(np.random.default_rng([seed, 3]).permutation(unused)[:DEV_NORMALS]))
    anomalies = dev_anomalies(full.spec, full.image_size, seed, full.channels)
    labelled = Split(
        anomalies,
        np.ones(len(anomalies), dtype=np.int64),
        np.full(len(anomalies), "anomaly"),
        [f"dev-anomaly/{i}" for i in range(len(anomalies))],
    )
    return Split.concat([normals, labelled])


def run(
    method: str,
    dataset: DataSet,
    masks: np.ndarray | None,
    out: Path,
    overrides: dict[str, Any],
    steps: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Test AUROC of ``method`` trained on ``dataset`` (a model goes to ``out``; ``steps``: a fixed
    budget, None: the default's; ``seed``: the training seed, the one that drew the images);
    pixel figures too when there are masks."""
    normals = dataset.train.images[dataset.train.labels == 0]
    heatmaps = None
    extra: dict[str, Any] = {}
    if method == "knn":
        scores = knn_scores(normals, dataset.test.images)
    elif method == "patch_nn":
        scores, heatmaps = patch_nn(normals, dataset.test.images)
    else:
        config = TrainConfig(preset(method, **overrides), steps=steps, seed=seed)
        trained = train(config, dataset, out, progress=False)
        scores, heatmaps = scores_and_heatmaps(trained.scorer, dataset.test)
        keys = ("budget", "steps", "best_step", "stopped", "seconds", "images_per_second")
        extra = {
            "training": {k: trained.card.training[k] for k in keys},
            "score": trained.card.score.method,
            "variant": trained.card.variant,  # as trained on these images
        }
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
