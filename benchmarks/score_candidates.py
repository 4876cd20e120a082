"""Every deployable score of one trained generator, on held-out data that is not test data.

    python benchmarks/textured_data.py --out runs/textured-dev --size 128 --dev --defects 200
    python benchmarks/small_data.py --data folder:runs/textured-dev --image-size 64 --methods default \\
        --models runs/small-dev --threads 2
    python benchmarks/score_candidates.py --model runs/small-dev/textured-dev-64px-n400-default-s0 \\
        --data folder:runs/textured-dev --name textured-dev-64px

    agad train --data fmnist:0 --out runs/fm/fm0 --epochs 10 --threads 2
    python benchmarks/score_candidates.py --model runs/fm/fm0 --data fmnist:0 --name fmnist0-default
    agad train --data elpv --out runs/fm/elpv --image-size 64 --set batch_size=64 --epochs 20 --threads 2
    python benchmarks/score_candidates.py --model runs/fm/elpv --data elpv --name elpv-default

What the standing score was chosen on (docs/RESULTS.md, "Which score"). The held-out set is the
dev set of ``benchmarks/agad_run.py`` (validation plus labelled anomalies that are not test data)
for Fashion-MNIST and elpv; for a folder it is the test split, so only a folder built with
``textured_data.py --dev`` is accepted: its test cells come from elpv's training split. Each
score is built from the same training and validation normals the model was trained on (all of
them, as ``small_data.py`` draws them without ``--normals``), and also measured on validation
normals against damaged copies of them, as ``score=auto`` would.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agad_stream.model.artifact import load_scorer
from agad_stream.preprocess import to_model_input
from benchmarks.common import dev_set, write_result
from benchmarks.textured_data import DEV_MARKER
from trainer.agad.score_choice import applicable_scores
from trainer.agad.scoring import build_scorer
from trainer.agad.synthetic import synthetic_defects
from trainer.api import tensors
from trainer.data import load_dataset
from trainer.evaluate import score_images
from trainer.metrics import auroc

TABLE = "scores"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a trained model directory")
    parser.add_argument("--data", required=True, help="the data spec it was trained on")
    parser.add_argument("--name", required=True, help="run file name in benchmarks/results/scores/")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scorer, card = load_scorer(args.model)
    seed = int(card.training.get("seed", 0))
    full = load_dataset(args.data, card.input.image_size, seed=seed, channels=card.input.channels)
    if args.data.startswith("folder:"):
        if not (Path(args.data.partition(":")[2]) / DEV_MARKER).is_file():
            raise SystemExit(
                f"{args.data}: its test split is test data; build one with textured_data.py --dev"
            )
        dataset = full.with_normals(full.train.n_normal + full.val.n_normal, seed)
        held_out = (dataset.test.images, dataset.test.labels)
    else:
        dataset = full
        held_out = dev_set(dataset)
    train_normal = tensors(dataset.train)[torch.from_numpy(dataset.train.labels == 0)]
    val_normal = tensors(dataset.val)[torch.from_numpy(dataset.val.labels == 0)]
    damaged = torch.cat([val_normal, synthetic_defects(val_normal)])
    damage_labels = np.r_[np.zeros(len(val_normal), dtype=int), np.ones(len(val_normal), dtype=int)]
    images = torch.from_numpy(to_model_input(held_out[0]))
    held_out_auroc, synthetic_auroc = {}, {}
    for method in applicable_scores(hasattr(scorer.generator, "encoder"), contrast=False):
        candidate = build_scorer(scorer.generator, method, train_normal, val_normal)
        held_out_auroc[method] = auroc(held_out[1], score_images(candidate, images))
        synthetic_auroc[method] = auroc(damage_labels, score_images(candidate, damaged))
    record = {
        "data": args.data,
        "image_size": card.input.image_size,
        "model": str(args.model),
        "shipped": card.score.method,
        "n_normal": int((held_out[1] == 0).sum()),
        "n_anomalous": int((held_out[1] == 1).sum()),
        "held_out_auroc": held_out_auroc,
        "synthetic_auroc": synthetic_auroc,
    }
    path = write_result(TABLE, args.name, record)
    print(f"{path}: {', '.join(f'{m} {v:.3f}' for m, v in held_out_auroc.items())}")


if __name__ == "__main__":
    main()
