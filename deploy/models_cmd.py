"""``agad models list|show|promote|rollback|diff``: the model registry (``AGAD_REGISTRY``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agad_stream.cli import args as types
from agad_stream.config import load_settings
from agad_stream.errors import AgadError
from agad_stream.model.card import ModelCard, load_card
from agad_stream.model.registry import current_version, is_registry
from deploy.promotion import cards, promote, rollback_target


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "models",
        help="the model registry: list, show, promote, roll back and compare versions",
        description="Versions in AGAD_REGISTRY (or --registry), the current one marked. Promotion rewrites "
        "the registry's `current` pointer atomically and announces the version on the models topic, so "
        "that scorers switch to it between batches.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    helps = {
        "list": "every version: created, parent, score, threshold, metrics; * marks the current one",
        "show": "one version's card (the current one by default)",
        "promote": "make a version current and announce it on the models topic",
        "rollback": "make the version before the current one current again (or --to VERSION)",
        "diff": "what differs between two versions' cards",
    }
    for action, text in helps.items():
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument("--registry", type=Path, help="registry folder (default AGAD_REGISTRY)")
        if action in ("show", "promote"):
            sub.add_argument("version", nargs="?" if action == "show" else None, help="version name")
        if action == "diff":
            sub.add_argument("first", help="a version")
            sub.add_argument("second", help="another version")
        if action == "rollback":
            sub.add_argument("--to", help="the version to make current (default: the one before)")
        if action in ("promote", "rollback"):
            sub.add_argument(
                "--no-announce", action="store_true", help="rewrite the pointer only, send no event"
            )
        types.add_json_flag(sub)
        sub.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    registry = args.registry or settings.registry
    if not registry.is_dir():
        raise AgadError(
            f"{registry} is not a folder; set AGAD_REGISTRY (or --registry) to the model registry"
        )
    kafka = None if getattr(args, "no_announce", False) else settings.kafka
    if args.action == "list":
        return _list(registry, args.json)
    if args.action == "show":
        directory = registry / args.version if args.version else current_version(registry)
        card = load_card(directory)
        print(card.model_dump_json(indent=2) if args.json else _describe(card))
        return 0
    if args.action == "diff":
        changes = diff(load_card(registry / args.first), load_card(registry / args.second))
        if args.json:
            print(json.dumps(changes, indent=2, default=str))
        else:
            for key, (a, b) in changes.items():
                print(f"{key:<32} {a!s:<24} -> {b}")
        return 0
    target = args.version if args.action == "promote" else (args.to or rollback_target(registry))
    done = promote(registry, target, kafka, reason=args.action)
    summary = {
        "current": done.version,
        "previous": done.previous,
        "announced": done.announced,
        "sha256": done.event.sha256,
    }
    print(json.dumps(summary) if args.json else f"{done.version} is current (was {done.previous}); "
          f"{'announced on the models topic' if done.announced else 'not announced'}")  # fmt: skip
    return 0


def _list(registry: Path, as_json: bool) -> int:
    current = current_version(registry).name if is_registry(registry) else None
    found = cards(registry)
    if as_json:
        print(
            json.dumps([{**_row(card), "current": card.model_version == current} for card in found], indent=2)
        )
        return 0
    header = ("", "version", "created", "parent", "score", "threshold", "holdout", "test")
    print(_line(header))
    for card in found:
        row = _row(card)
        mark = "*" if card.model_version == current else ""
        values = (mark, row["version"], row["created_at"][:19], row["parent"] or "-", row["score"])
        print(
            _line((*values, f"{row['threshold']:.4g}", _fmt(row["holdout_auroc"]), _fmt(row["test_auroc"])))
        )
    return 0


def _line(cells: tuple[str, ...]) -> str:
    widths = (1, -28, -20, -28, -14, 10, 8, 7)  # negative: left-aligned
    return " ".join(f"{c:<{-w}}" if w < 0 else f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))


def _row(card: ModelCard) -> dict[str, Any]:
    return {
        "version": card.model_version,
        "created_at": card.created_at,
        "parent": card.parent_version,
        "score": card.score.method,
        "threshold": card.threshold.value,
        "holdout_auroc": card.metrics.get("holdout", {}).get("auroc"),
        "test_auroc": card.metrics.get("test", {}).get("auroc"),
    }


def _describe(card: ModelCard) -> str:
    row = _row(card)
    labels = card.training.get("labels") or {}
    lines = [f"{key:<14} {value}" for key, value in row.items()]
    lines.append(f"{'input':<14} {card.input.channels}x{card.input.image_size}px {card.input.colour}")
    lines.append(f"{'threshold by':<14} {card.threshold.method}")
    if labels:
        lines.append(f"{'labels':<14} {json.dumps(labels.get('counts', {}))}")
    return "\n".join(lines)


def diff(first: ModelCard, second: ModelCard) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ, dotted: version, parent, threshold, score, variant, metrics, labels."""

    def flat(card: ModelCard) -> dict[str, Any]:
        values: dict[str, Any] = {
            "model_version": card.model_version,
            "parent_version": card.parent_version,
            "generator": card.generator,
            "score.method": card.score.method,
            "threshold.value": card.threshold.value,
            "threshold.method": card.threshold.method,
            "training.epochs": card.training.get("epochs"),
            "training.best_epoch": card.training.get("best_epoch"),
        }
        values |= {f"variant.{k}": v for k, v in card.variant.items()}
        for split in ("val", "test", "holdout"):
            values[f"metrics.{split}.auroc"] = card.metrics.get(split, {}).get("auroc")
        for key, value in (card.training.get("labels") or {}).get("counts", {}).items():
            values[f"labels.{key}"] = value
        return values

    a, b = flat(first), flat(second)
    return {key: (a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
