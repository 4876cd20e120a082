"""Run one raw-pixel or supervised baseline on the same split as AGAD and record its numbers.

    python benchmarks/baseline_run.py --table fmnist --name fmnist0-knn --data fmnist:0 --method knn

Methods: ``knn`` (5-NN distance), ``pca`` (20 components), ``classifier`` (supervised CNN, gamma > 0).
The plain autoencoder and Skip-GANomaly run through benchmarks/agad_run.py as AGAD variants.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import at_balanced_threshold, dev_set, run_parser, write_result
from trainer.baselines import classifier_scores, knn_scores, pca_scores, train_classifier
from trainer.data import load_dataset
from trainer.evaluate import evaluation_report
from trainer.metrics import auroc, calibrate_threshold


def main() -> None:
    parser = run_parser(__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--method", required=True, choices=["knn", "pca", "classifier"])
    parser.add_argument("--gamma", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10, help="classifier only")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    dataset = load_dataset(args.data, args.image_size, gamma=args.gamma, seed=args.seed)
    normals = dataset.train.images[dataset.train.labels == 0]
    if args.method == "classifier":
        model = train_classifier(
            dataset.train.images,
            dataset.train.labels,
            dataset.val.images,
            dataset.val.labels,
            image_size=args.image_size,
            epochs=args.epochs,
            seed=args.seed,
        )

        def score(images: np.ndarray) -> np.ndarray:
            return classifier_scores(model, images)
    elif args.method == "knn":

        def score(images: np.ndarray) -> np.ndarray:
            return knn_scores(normals, images)
    else:

        def score(images: np.ndarray) -> np.ndarray:
            return pca_scores(normals, images)

    dev_images, dev_labels = dev_set(dataset)
    val_scores = score(dataset.val.images)
    threshold = calibrate_threshold(dataset.val.labels, val_scores)
    test_scores = score(dataset.test.images)
    report = evaluation_report(dataset.test, test_scores, threshold.value, dataset.hard_groups)
    record: dict[str, Any] = {
        "label": args.method,
        "score": args.method,
        "data": args.data,
        "gamma": args.gamma,
        "seed": args.seed,
        "image_size": args.image_size,
        "method": args.method,
        "epochs": args.epochs if args.method == "classifier" else None,
        "dev": {"auroc": {args.method: auroc(dev_labels, score(dev_images))}},
        "test": {
            "auroc": {args.method: report["auroc"]},
            "at_threshold": report,
            "threshold": threshold.model_dump(),
            "at_balanced_threshold": at_balanced_threshold(dataset, val_scores, test_scores),
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
        "data_summary": dataset.summary(),
    }
    path = write_result(args.table, args.name, record)
    print(f"{path}: test AUROC {report['auroc']:.4f}, accuracy {report['accuracy']:.3f}")


if __name__ == "__main__":
    main()
