"""``agad retrain``: fine-tune the current version on operators' labels; promote it if it holds up."""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from agad_stream.cli import args as types
from agad_stream.config import load_settings
from agad_stream.errors import AgadError
from trainer.retrain.labelled import HOLDOUT_SHARE
from trainer.retrain.run import RetrainConfig, RetrainOutcome, retrain

log = logging.getLogger(__name__)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """``90s``, ``15m``, ``6h``, ``1d`` (or plain seconds) in seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration such as 90s, 15m, 6h or 1d")
    return float(match[1]) * UNITS[match[2] or "s"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "retrain",
        help="fine-tune the current model on operators' labels and promote it if it is not worse",
        description="Read every decision of the labels topic, hold a fixed quarter of the labelled frames "
        "out (by a hash of frame_id), fine-tune the registry's current version on its own data plus the "
        "rest, "
        "compare candidate and current version on the same holdout, and promote the candidate unless its "
        "AUROC there is lower by more than --margin. The candidate, its report (report.md, roc.png) and "
        "model.onnx go into the registry either way; scorers serving the registry switch on promotion.",
    )
    parser.add_argument("--registry", type=Path, help="model registry (default AGAD_REGISTRY)")
    parser.add_argument(
        "--epochs",
        type=types.positive,
        help="fine-tuning epochs (default: as many optimiser steps as the current version trained)",
    )
    parser.add_argument(
        "--margin",
        type=types.number(0, 1),
        default=0.02,
        help="holdout AUROC the candidate may lose (default 0.02)",
    )
    parser.add_argument(
        "--min-new-labels",
        type=types.non_negative,
        default=1,
        help="skip a run with fewer new decisions (default 1)",
    )
    parser.add_argument(
        "--holdout", type=types.rate, default=HOLDOUT_SHARE,
        help=f"share of labelled frames held out for the comparison (default {HOLDOUT_SHARE})",
    )  # fmt: skip
    parser.add_argument("--seed", type=types.non_negative, default=0, help="seed of the fine-tune")
    parser.add_argument("--every", type=duration, help="run again after this long, forever (e.g. 6h)")
    parser.add_argument(
        "--lock-seconds", type=types.number(1), default=600.0,
        help="the cross-host lock frees this long after a retrain died (default 600)",
    )  # fmt: skip
    parser.add_argument("--no-announce", action="store_true", help="promote without sending a models event")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    types.add_json_flag(parser)
    parser.set_defaults(func=run_retrain)


def run_retrain(args: argparse.Namespace) -> int:
    settings = load_settings()
    config = RetrainConfig(
        registry=args.registry or settings.registry,
        epochs=args.epochs,
        margin=args.margin,
        min_new_labels=args.min_new_labels,
        holdout_share=args.holdout,
        seed=args.seed,
        lock_seconds=args.lock_seconds,
        announce=not args.no_announce,
        progress=not args.no_progress,
    )
    while True:
        try:
            _print(retrain(settings, config), args.json)
        except AgadError as exc:
            if args.every is None:
                raise
            log.error("retrain failed, trying again in %.0f s: %s", args.every, exc)
        if args.every is None:
            return 0
        time.sleep(args.every)


def _print(outcome: RetrainOutcome, as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: v for k, v in outcome.__dict__.items()}, default=str))
        return
    print(f"retrain {outcome.status}: {outcome.reason}")
    if outcome.candidate_version:
        print(f"  candidate {outcome.candidate_version} beside {outcome.current_version}: retrain/report.md")
