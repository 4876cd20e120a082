"""``agad train`` and ``agad evaluate``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch

from agad_stream.cli import args as types
from agad_stream.errors import AgadError
from agad_stream.model.artifact import InputSpec, ModelCard, Threshold, load_scorer, save_model
from agad_stream.model.generator import ARCHITECTURES
from agad_stream.model.provenance import remove_derived
from agad_stream.model.score import AnomalyScorer
from agad_stream.preprocess import to_model_input
from trainer.agad.loop import TrainData, selection_criterion, train_agad
from trainer.agad.score_choice import shipped_scorer
from trainer.agad.variant import PRESETS, Variant, preset
from trainer.data import DataSet, Split, load_dataset
from trainer.evaluate import evaluation_report, score_split, stuck_pixels, write_plots
from trainer.metrics import ThresholdRule, calibrate_threshold

log = logging.getLogger(__name__)

DATA_HELP = "data set spec: folder:PATH (MVTec AD layout), elpv, or fmnist:CLASS"


def register_train(subparsers: Any) -> None:
    train = subparsers.add_parser(
        "train",
        help="train an AGAD model and write a model directory",
        description="Train AGAD on normal images (plus labelled anomalies with --gamma), pick the best epoch "
        "on the validation split, calibrate the threshold there, and write weights + model.json.",
    )
    train.add_argument("--data", required=True, help=DATA_HELP)
    train.add_argument("--out", required=True, type=Path, help="model directory to write")
    train.add_argument(
        "--variant",
        default="default",
        choices=sorted(PRESETS),
        help="named preset: default (best measured, no discriminator; turned anomalies by the turns that "
        "change the part, measured on its good parts), upright (turned by a quarter and a half whatever the "
        "parts show), quarter (the earlier default: quarter turns only), unturned (no turned anomalies: "
        "parts that reach the camera in any pose), adversarial "
        "(the best with a discriminator), faithful (the paper as written), or a baseline: autoencoder, "
        "skip-ganomaly",
    )
    train.add_argument("--arch", choices=ARCHITECTURES, help="generator backbone (default: the variant's)")
    train.add_argument(
        "--image-size",
        type=types.image_size,
        default=32,
        help="square input size: 32, 64, 128 or 256 (default 32)",
    )
    train.add_argument("--channels", type=int, choices=[1, 3], help="default: the data set's own")
    train.add_argument("--epochs", type=types.positive, default=15, help="passes over the training normals")
    train.add_argument(
        "--gamma",
        type=GAMMA,
        default=0.0,
        help="fraction of labelled anomalies in training, a/(n+a), below 1",
    )
    train.add_argument("--seed", type=types.non_negative, default=0, help="seed of the split and of training")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        type=variant_override,
        metavar="FIELD=VALUE",
        help="override a variant field, e.g. --set detach_pseudo=true (repeatable)",
    )
    train.add_argument(
        "--target-fpr",
        type=types.number(0, 1, low_open=True, high_open=True),
        default=0.01,
        help="false-positive rate the threshold aims at when validation has no anomalies",
    )
    train.add_argument(
        "--threshold",
        choices=get_args(ThresholdRule),
        default="f1",
        help="with labelled anomalies in validation: best F1 there (f1; right when validation's defect "
        "share is the line's) or best balanced accuracy (balanced; independent of that share)",
    )
    train.add_argument("--threads", type=types.positive, help="torch CPU threads (default: all cores)")
    train.add_argument(
        "--device", type=types.device, default="auto", help="cpu, cuda, cuda:N or auto (CUDA when available)"
    )
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument(
        "--report-test-per-epoch",
        action="store_true",
        help="also record test AUROC each epoch (reporting only; never used for selection)",
    )
    train.add_argument("--version", help="model version name (default: timestamp and architecture)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--json", action="store_true", help="print the model card as JSON")
    train.set_defaults(func=run_train)


def register_evaluate(subparsers: Any) -> None:
    evaluate = subparsers.add_parser(
        "evaluate",
        help="score a labelled test split and report AUROC, AP, F1 and plots",
        description="Evaluate a model directory on a data set's test split at the model's threshold; "
        "writes roc.png and scores.png.",
    )
    evaluate.add_argument("--model", required=True, type=types.model_dir, help="model directory")
    evaluate.add_argument("--data", help=DATA_HELP + " (default: the model's training data)")
    evaluate.add_argument(
        "--gamma", type=GAMMA, help="labelled-anomaly fraction of the split (default: the model's)"
    )
    evaluate.add_argument("--seed", type=types.non_negative, help="seed of the split (default: the model's)")
    evaluate.add_argument("--plots", type=Path, help="folder for the PNG plots (default: MODEL/eval)")
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.set_defaults(func=run_evaluate)


GAMMA = types.number(0, 1, high_open=True)


def variant_override(pair: str) -> tuple[str, Any]:
    """``FIELD=VALUE`` of ``--set`` as (field, value of the field's type)."""
    fields = [f.name for f in dataclasses.fields(Variant)]
    name, sep, raw = pair.partition("=")
    if not sep or name not in fields:
        raise argparse.ArgumentTypeError(
            f"{pair!r}: expected FIELD=VALUE with FIELD one of {', '.join(fields)}"
        )
    default = getattr(Variant(), name)
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return name, raw.lower() in ("true", "1")
        return name, type(default)(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{pair!r}: {raw!r} is not a valid {type(default).__name__}"
        ) from None


def _tensors(split: Split) -> torch.Tensor:
    return torch.from_numpy(to_model_input(split.images))


def run_train(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = dict(args.set)
    if args.arch:
        overrides["arch"] = args.arch
    try:
        variant = preset(args.variant, **overrides)
    except (TypeError, ValueError) as exc:
        raise AgadError(str(exc)) from None
    dataset = load_dataset(
        args.data, args.image_size, gamma=args.gamma, seed=args.seed, channels=args.channels
    )
    if variant.score == "knn_contrast" and not (dataset.train.labels == 1).any():
        raise AgadError(
            f"score knn_contrast compares with labelled defects, and {args.data} gives none for "
            "training: add --gamma (e.g. 0.05) or defect images in train/<defect>/, or choose another score"
        )
    data = TrainData(
        _tensors(dataset.train),
        torch.from_numpy(dataset.train.labels),
        _tensors(dataset.val),
        dataset.val.labels,
        *((_tensors(dataset.test), dataset.test.labels) if args.report_test_per_epoch else (None, None)),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / "checkpoint.pt"
    if args.resume and not checkpoint.exists():
        raise AgadError(f"--resume: {checkpoint} does not exist; start without --resume")
    if not args.resume:
        checkpoint.unlink(missing_ok=True)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    result = train_agad(
        data,
        variant,
        image_size=args.image_size,
        epochs=args.epochs,
        seed=args.seed,
        checkpoint=checkpoint,
        progress=not args.no_progress,
        device=device,
    )
    scorer, choice = shipped_scorer(
        result.generator.cpu(),
        variant.score,
        dataset.val,
        data.train_images[data.train_labels == 0],
        data.val_images[torch.from_numpy(data.val_labels == 0)],
        data.train_images[data.train_labels == 1],
        with_memory=variant.arch == "naive",
        turned=variant.makes_anomalies,
    )
    stuck = stuck_pixels(scorer, dataset.val)
    if stuck:
        row, column = stuck[0]
        log.warning(
            "the generator is stuck at %d output pixels (e.g. row %d, column %d): it misses them on nearly "
            "every validation normal, so every heat-map shows them and topk or maxpool scores are "
            "unreliable; retrain with another --seed (model.json: training.stuck_pixels)",
            len(stuck),
            row,
            column,
        )
    card = _model_card(
        args,
        variant,
        dataset,
        scorer,
        result.best_epoch,
        result.history,
        {
            "seconds": round(result.seconds, 1),
            "images_per_second": round(result.images_per_second, 1),
            "score_choice": choice.as_dict(),
            "stuck_pixels": [list(pixel) for pixel in stuck],
            "turn_choice": result.turn_choice.as_dict() if result.turn_choice else None,
        },
    )
    for stale in remove_derived(args.out):
        log.info("removed %s: it was made from the model this training replaces", stale)
    save_model(args.out, card, result.generator_state(), scorer.memory, scorer.defect_memory)
    checkpoint.unlink(missing_ok=True)
    if args.json:
        print(card.model_dump_json(indent=2))
    else:
        test = card.metrics["test"]
        print(
            f"wrote {args.out} (version {card.model_version}, best epoch {result.best_epoch}/{args.epochs}, "
            f"score {card.score.method}, threshold {card.threshold.value:.4g} by {card.threshold.method}); "
            f"test AUROC {_fmt(test['auroc'])}, accuracy {test['accuracy']:.3f}"
        )
    return 0


def _model_card(
    args: argparse.Namespace,
    variant: Variant,
    dataset: DataSet,
    scorer: AnomalyScorer,
    best_epoch: int,
    history: list[dict[str, Any]],
    outcome: dict[str, Any],
) -> ModelCard:
    val_scores = score_split(scorer, dataset.val)
    threshold = calibrate_threshold(
        dataset.val.labels, val_scores, target_fpr=args.target_fpr, rule=args.threshold
    )
    test_scores = score_split(scorer, dataset.test)
    normal_val = val_scores[dataset.val.labels == 0]
    version = args.version or f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{variant.arch}"
    return ModelCard(
        model_version=version,
        generator=variant.arch,
        variant=variant.to_dict(),
        input=InputSpec(
            image_size=dataset.image_size,
            channels=dataset.channels,
            colour="gray" if dataset.channels == 1 else "rgb",
        ),
        score=scorer.spec(),
        threshold=Threshold(**threshold.as_dict()),
        score_statistics={
            "val_normal_mean": float(normal_val.mean()),
            "val_normal_std": float(normal_val.std()),
            "val_normal_p99": float(np.quantile(normal_val, 0.99)),
        },
        data=dataset.summary(),
        metrics={
            "val": evaluation_report(dataset.val, val_scores, threshold.value),
            "test": evaluation_report(dataset.test, test_scores, threshold.value, dataset.hard_groups),
        },
        training={
            "epochs": args.epochs,
            "best_epoch": best_epoch,
            "seed": args.seed,
            "selection": selection_criterion(variant, dataset.val.labels),
            **outcome,
            "history": history,
        },
    )


def run_evaluate(args: argparse.Namespace) -> int:
    scorer, card = load_scorer(args.model)
    spec = args.data or card.data.get("spec")
    if not spec:
        raise AgadError(f"{args.model}/model.json names no training data; pass --data SPEC")
    gamma = args.gamma if args.gamma is not None else float(card.data.get("gamma", 0.0))
    seed = args.seed if args.seed is not None else int(card.data.get("seed", 0))
    dataset = load_dataset(spec, card.input.image_size, gamma=gamma, seed=seed, channels=card.input.channels)
    scores = score_split(scorer, dataset.test)
    report = evaluation_report(dataset.test, scores, card.threshold.value, dataset.hard_groups)
    plots_dir = args.plots or args.model / "eval"
    title = f"{card.model_version} on {spec}"
    report["plots"] = [
        str(p) for p in write_plots(dataset.test, scores, card.threshold.value, plots_dir, title)
    ]
    report.update(
        model_version=card.model_version, data=spec, score=card.score.method, threshold=card.threshold.value
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"model {card.model_version} on {spec} (test split: {report['n_normal']} normal, "
        f"{report['n_anomalous']} anomalous)"
    )
    for key in ("auroc", "average_precision", "f1", "precision", "recall", "accuracy"):
        print(f"  {key:<18} {_fmt(report[key])}")
    print(f"  score              {card.score.method}")
    print(f"  threshold          {card.threshold.value:.4g} ({card.threshold.method})")
    print(f"  confusion          tp {report['tp']}  fp {report['fp']}  tn {report['tn']}  fn {report['fn']}")
    for group, entry in report["groups"].items():
        print(
            f"  group {group:<12} n {entry['n']:<5} recall {entry['recall']:.3f}  "
            f"AUROC {_fmt(entry.get('auroc'))}"
        )
    print("  plots: " + ", ".join(report["plots"]))
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
