"""Train one AGAD variant on one data set and record every number the results tables need.

    python benchmarks/agad_run.py --table ablation --name fmnist0-faithful --data fmnist:0 \
        --variant faithful --epochs 10 --threads 1

Recorded per run (benchmarks/results/TABLE/NAME.json):
- ``dev``: AUROC of every score on held-out data with labelled anomalies that are not test data
  (validation normals plus the anomalies the data set would label at gamma 0.05; at gamma > 0 the
  validation split itself). Variants and scores are chosen on this.
- ``test``: the model of the epoch chosen on validation, scored on the test split: AUROC of every
  score, and accuracy/F1 at the threshold calibrated on validation for the score the model ships
  with (``score_choice``: the variant's, or the one ``score=auto`` picks on validation).
- ``best_epoch_on_test``: the highest per-epoch test AUROC, the figure GANomaly-family code
  reports. Labelled as such; never used to choose anything.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agad_stream.model.card import SCORE_METHODS
from agad_stream.preprocess import to_model_input
from benchmarks.common import at_balanced_threshold, dev_set, run_parser, write_result
from trainer.agad.evaluation import selection_criterion
from trainer.agad.score_choice import applicable_scores
from trainer.agad.scoring import build_scorer, score_batches
from trainer.agad.variant import preset
from trainer.api import TrainConfig, fit_agad, ship
from trainer.cli import variant_override
from trainer.data import load_dataset
from trainer.evaluate import evaluation_report, score_images, score_split
from trainer.metrics import auroc, calibrate_threshold


def main() -> None:
    parser = run_parser(__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--variant", default="faithful")
    parser.add_argument("--label", help="row label in the results tables (default: the variant's name)")
    parser.add_argument("--set", action="append", type=variant_override, default=[], metavar="FIELD=VALUE")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--gamma", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0, help="fixes the data split and, by default, training")
    parser.add_argument(
        "--train-seed",
        type=int,
        help="seeds initialisation and batch order only (default: --seed); the split stays on --seed",
    )
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--save-scores",
        type=Path,
        help="also save every score per dev and test image here (.npz, never committed), for ensembles",
    )
    parser.add_argument(
        "--keep-weights",
        type=Path,
        help="also save G and D of the chosen epoch here (a .pt file, never committed)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train_seed = args.seed if args.train_seed is None else args.train_seed

    variant = preset(args.variant, **dict(args.set))
    dataset = load_dataset(args.data, args.image_size, gamma=args.gamma, seed=args.seed)
    headline = dataset.headline_test()

    def tensors(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(to_model_input(images))

    config = TrainConfig(variant, epochs=args.epochs, seed=train_seed)
    networks = fit_agad(dataset, config, progress=False, test=headline)
    variant = networks.variant  # as trained on this data set
    result = networks.fit
    generator, discriminator = networks.generator, networks.discriminator
    val_normal = tensors(dataset.val.images[dataset.val.labels == 0])

    if args.keep_weights:
        args.keep_weights.parent.mkdir(parents=True, exist_ok=True)
        states = {"generator": generator, "discriminator": discriminator}
        torch.save({k: v.state_dict() for k, v in states.items() if v is not None}, args.keep_weights)

    dev_images, dev_labels = dev_set(dataset)
    dev_scores = score_batches(generator, tensors(dev_images), discriminator)
    test_scores = score_batches(generator, tensors(headline.images), discriminator)
    if discriminator is not None:
        # Skip-GANomaly's own score, 0.9 reconstruction + 0.1 latent distance, each standardised by
        # validation normals (its code min-max scales over the test set instead).
        reference = score_batches(generator, val_normal, discriminator)
        for scores in (dev_scores, test_scores):
            scores["skip"] = 0.9 * _standardise(scores["l2"], reference["l2"]) + 0.1 * _standardise(
                scores["latent"], reference["latent"]
            )

    train_normal = tensors(dataset.train.images[dataset.train.labels == 0])
    train_anomalous = tensors(dataset.train.images[dataset.train.labels == 1])
    # The scores that look up training normals, of the same generator: per pixel, and with a code
    # the latent memory ones (knn_contrast only with labelled anomalies).
    applicable = applicable_scores(hasattr(generator, "encoder"), contrast=len(train_anomalous) > 0)
    for method in (m for m in applicable if m not in SCORE_METHODS):  # score_batches has those
        reference_scorer = build_scorer(
            generator, method, train_normal, val_normal, train_anomalous=train_anomalous
        )
        for images, scores in ((dev_images, dev_scores), (headline.images, test_scores)):
            scores[method] = score_images(reference_scorer, tensors(images))

    scorer, choice = ship(generator, dataset, variant)
    val_scores, test_split_scores = score_split(scorer, dataset.val), score_split(scorer, dataset.test)
    threshold = calibrate_threshold(dataset.val.labels, val_scores)
    test_report = evaluation_report(dataset.test, test_split_scores, threshold.value, dataset.hard_groups)
    per_epoch = [r["test_auroc"][variant.selection_score] for r in result.history]
    record: dict[str, Any] = {
        "label": args.label or variant.name,
        "score": choice.method,
        "score_choice": choice.as_dict(),
        "data": args.data,
        "gamma": args.gamma,
        "seed": args.seed,
        "train_seed": train_seed,
        "epochs": args.epochs,
        "image_size": args.image_size,
        "variant": variant.to_dict(),
        "selected_epoch": result.best_epoch,
        "turn_choice": networks.turn_choice.as_dict() if networks.turn_choice else None,
        "selection": selection_criterion(dataset.val.labels).key,
        "dev": {
            "n_normal": int((dev_labels == 0).sum()),
            "n_anomalous": int((dev_labels == 1).sum()),
            "auroc": {k: auroc(dev_labels, v) for k, v in dev_scores.items()},
        },
        "test": {
            "auroc": {k: auroc(headline.labels, v) for k, v in test_scores.items()},
            "at_threshold": test_report,
            "threshold": threshold.model_dump(),
            "at_balanced_threshold": at_balanced_threshold(dataset, val_scores, test_split_scores),
        },
        "best_epoch_on_test": {
            "score": variant.selection_score,
            "epoch": int(np.argmax(per_epoch)) + 1,
            "auroc": float(max(per_epoch)),
        },
        "train_seconds": round(result.seconds, 1),
        "images_per_second": round(result.images_per_second, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "history": [{k: v for k, v in r.items()} for r in result.history],
        "data_summary": dataset.summary(),
    }
    path = write_result(args.table, args.name, record)
    if args.save_scores:
        args.save_scores.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"dev_{k}": v for k, v in dev_scores.items()}
        arrays |= {f"test_{k}": v for k, v in test_scores.items()}
        np.savez(args.save_scores, dev_labels=dev_labels, test_labels=headline.labels, **arrays)
    print(
        f"{path}: dev {record['dev']['auroc']}, test {record['test']['auroc']}, "
        f"selected epoch {result.best_epoch}, best-on-test {record['best_epoch_on_test']}"
    )


def _standardise(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (values - reference.mean()) / (reference.std() + 1e-12)


if __name__ == "__main__":
    main()
