"""``agad train`` and ``agad evaluate``: flags become a :class:`trainer.api.TrainConfig`, nothing more."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import torch

from agad_stream.cli import args as types
from agad_stream.errors import AgadError
from agad_stream.model.artifact import load_scorer
from agad_stream.model.card import load_card
from agad_stream.model.generator import ARCHITECTURES
from trainer.agad.variant import PRESETS, Variant, preset
from trainer.api import TrainConfig, train
from trainer.budget import DEFAULT_EPOCHS, FLOOR_STEPS
from trainer.data import load_dataset
from trainer.data.masks import masks_of_test_split
from trainer.evaluate import (
    evaluation_report,
    score_split,
    scores_and_heatmaps,
    write_heatmap_picture,
    write_plots,
)
from trainer.localisation import MAX_FPR, aupro, pixel_auroc
from trainer.metrics import ThresholdRule

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
        help="default (the best measured: no discriminator, taught the part's pose by turned normals), "
        "faithful (the paper as written), adversarial (the best with a discriminator), or a "
        "baseline: autoencoder, skip-ganomaly (docs/RESULTS.md compares them)",
    )
    train.add_argument("--arch", choices=ARCHITECTURES, help="generator backbone (default: the variant's)")
    train.add_argument(
        "--image-size",
        type=types.image_size,
        default=32,
        help="square input size: 32, 64, 128 or 256 (default 32)",
    )
    train.add_argument("--channels", type=int, choices=[1, 3], help="default: the data set's own")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument(
        "--epochs",
        type=types.positive,
        help=f"train for exactly this many passes over the training normals (default: {DEFAULT_EPOCHS} "
        f"epochs or {FLOOR_STEPS} optimiser steps, whichever is more, stopped early when validation stops "
        "improving)",
    )
    budget.add_argument("--steps", type=types.positive, help="train for exactly this many optimiser steps")
    train.add_argument(
        "--gamma",
        type=GAMMA,
        help="fraction of labelled anomalies in training, a/(n+a), below 1; a folder's train/<defect>/ "
        "images are all used by default (--gamma caps them, 0 turns them off); elpv and fmnist default to 0",
    )
    train.add_argument("--seed", type=types.non_negative, default=0, help="seed of the split and of training")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        type=variant_override,
        metavar="FIELD=VALUE",
        help="override a variant field (trainer/agad/variant.py), e.g. --set ema=0 (repeatable)",
    )
    train.add_argument(
        "--target-fpr",
        type=types.rate,
        default=0.01,
        help="false-positive rate the threshold aims at when validation has no anomalies",
    )
    train.add_argument(
        "--threshold-rule",
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
    train.add_argument(
        "--model-version", help="name of the model version written (default: timestamp and architecture)"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--json", action="store_true", help="print the model card as JSON")
    train.set_defaults(func=run_train)


def register_calibrate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="write a new model version with another threshold, without retraining",
        description="Copy MODEL's weights and score into a new version whose threshold flags --target-fpr of "
        "the validation normals, or sits at --threshold; model.json says what it means on validation (the "
        "false-positive rate with its 95 % interval, the share of drawn damage it flags) and on test. "
        "Promote it with `agad models promote` when it lives in the registry.",
    )
    parser.add_argument("--model", required=True, type=types.model_dir, help="model directory")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--target-fpr",
        type=types.rate,
        help="false alarms among normals",
    )
    target.add_argument("--threshold", type=types.score_value, help="flag scores at or above this")
    parser.add_argument(
        "--out", type=Path, help="new model directory (default: beside MODEL, named by version)"
    )
    parser.add_argument("--model-version", help="name of the new version (default: MODEL's plus a timestamp)")
    types.add_json_flag(parser)
    parser.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from trainer.calibrate import recalibrate

    version = args.model_version or f"{load_card(args.model).model_version}-t{datetime.now(UTC):%Y%m%d%H%M%S}"
    out = args.out or args.model.parent / version
    card = recalibrate(args.model, out, target_fpr=args.target_fpr, threshold=args.threshold, version=version)
    t = card.threshold
    if args.json:
        print(card.model_dump_json(indent=2))
    else:
        low, high = t.val_fpr_interval or (0.0, 1.0)
        print(
            f"wrote {out} (version {card.model_version}): threshold {t.value:.4g}, validation false alarms "
            f"{_fmt(t.val_fpr)} ({low:.3f}-{high:.3f}, {t.n_normal} normals), drawn damage caught "
            f"{_fmt(t.synthetic_recall)}, test recall {_fmt(card.metrics['test']['recall'])}"
        )
    return 0


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
    types.add_json_flag(evaluate)
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
    default = getattr(PRESETS["default"], name)
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


def run_train(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = dict(args.set)
    if args.arch:
        overrides["arch"] = args.arch
    try:
        variant = preset(args.variant, **overrides)
    except (TypeError, ValueError) as exc:
        raise AgadError(f"--variant {args.variant} with --set {overrides}: {exc}") from None
    config = TrainConfig(
        variant,
        epochs=args.epochs,
        steps=args.steps,
        seed=args.seed,
        threshold_rule=args.threshold_rule,
        target_fpr=args.target_fpr,
        model_version=args.model_version,
        device=args.device,
        report_test_per_epoch=args.report_test_per_epoch,
    )
    dataset = load_dataset(
        args.data, args.image_size, gamma=args.gamma, seed=args.seed, channels=args.channels
    )
    card = train(config, dataset, args.out, progress=not args.no_progress, resume=args.resume).card
    if args.json:
        print(card.model_dump_json(indent=2))
    else:
        test = card.metrics["test"]
        print(
            f"wrote {args.out} (version {card.model_version}, step {card.training['best_step']} of "
            f"{card.training['steps']} chosen, {card.training['seconds']:.0f} s of training; score "
            f"{card.score.method}, threshold {card.threshold.value:.4g} by "
            f"{card.threshold.method}); test AUROC {_fmt(test['auroc'])}, accuracy {test['accuracy']:.3f}"
        )
        print(
            f"labelled defects: {dataset.train.n_anomalous} trained, {dataset.val.n_anomalous} validated"
            + (
                " (folder images under train/<defect>/; --gamma 0 turns them off)"
                if dataset.train.n_anomalous
                else ""
            )
        )
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    scorer, card = load_scorer(args.model)
    spec = args.data or card.data.get("spec")
    if not spec:
        raise AgadError(f"{args.model}/model.json names no training data; pass --data SPEC")
    gamma = args.gamma if args.gamma is not None else float(card.data.get("gamma", 0.0))
    seed = args.seed if args.seed is not None else int(card.data.get("seed", 0))
    dataset = load_dataset(spec, card.input.image_size, gamma=gamma, seed=seed, channels=card.input.channels)
    masks = masks_of_test_split(dataset)
    if masks is None:
        scores = score_split(scorer, dataset.test)
    else:
        scores, heatmaps = scores_and_heatmaps(scorer, dataset.test)
    report = evaluation_report(dataset.test, scores, card.threshold.value, dataset.hard_groups)
    plots_dir = args.plots or args.model / "eval"
    title = f"{card.model_version} on {spec}"
    report["plots"] = [
        str(p) for p in write_plots(dataset.test, scores, card.threshold.value, plots_dir, title)
    ]
    if masks is not None:
        picture = write_heatmap_picture(dataset.test, scores, heatmaps, masks, plots_dir / "heatmaps.png")
        report["plots"].append(str(picture))
        report["localisation"] = {
            "pixel_auroc": pixel_auroc(masks, heatmaps),
            "aupro": aupro(masks, heatmaps),
            "aupro_max_fpr": MAX_FPR,
            "masks": int(dataset.test.n_anomalous),
        }
    report.update(
        model_version=card.model_version, data=spec, score=card.score.method, threshold=card.threshold.value
    )
    expected = card.threshold
    report["expected"] = {
        "val_fpr": expected.val_fpr,
        "val_fpr_interval": expected.val_fpr_interval,
        "synthetic_recall": expected.synthetic_recall,
    }
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
    low, high = expected.val_fpr_interval or (None, None)
    print(
        f"  false alarms       {_fmt(report['fpr'])} of test normals; validation promised "
        f"{_fmt(expected.val_fpr)} (95 % interval {_fmt(low)}-{_fmt(high)}, {expected.n_normal} normals)"
    )
    print(
        f"  defects caught     {_fmt(report['recall'])} of test defects; validation caught "
        f"{_fmt(expected.synthetic_recall)} of drawn damage"
    )
    print(f"  confusion          tp {report['tp']}  fp {report['fp']}  tn {report['tn']}  fn {report['fn']}")
    for group, entry in report["groups"].items():
        print(
            f"  group {group:<12} n {entry['n']:<5} recall {entry['recall']:.3f}  "
            f"AUROC {_fmt(entry.get('auroc'))}"
        )
    if "localisation" in report:
        where = report["localisation"]
        print(
            f"  heat-maps          pixel AUROC {_fmt(where['pixel_auroc'])}, AUPRO {_fmt(where['aupro'])} "
            f"(to {where['aupro_max_fpr']:.0%} FPR) on {where['masks']} defect masks"
        )
    print("  plots: " + ", ".join(report["plots"]))
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
