"""``agad labels export|stats``: the label store (the labels topic) as a training folder, or counts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agad_stream.cli import args as types
from agad_stream.config import load_settings
from agad_stream.review.export import export_labels, label_stats
from agad_stream.review.labels import read_labels


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "labels",
        help="operators' decisions from the labels topic: export as a training folder, or count them",
        description="The labels topic (AGAD_KAFKA__TOPICS__LABELS) keeps every decided frame's latest "
        "decision with its image; these commands read it from the beginning, so they work however long "
        "ago the decisions were made, and whatever became of Redis.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export",
        help="write the decided frames as an MVTec folder (train/good, train/<defect>) and decisions.csv",
        description="Write every decided frame: normals under OUT/train/good/, confirmed anomalies under "
        "OUT/train/<defect>/ (anomaly when unnamed), images byte for byte as the cameras sent them, plus "
        "OUT/decisions.csv. Train on it with `agad train --data folder:OUT`.",
    )
    export.add_argument("--out", required=True, type=Path, help="folder to write")
    types.add_json_flag(export)
    export.set_defaults(func=run_export)
    stats = actions.add_parser("stats", help="counts by label, defect, camera, reviewer and model version")
    types.add_json_flag(stats)
    stats.set_defaults(func=run_stats)


def run_export(args: argparse.Namespace) -> int:
    store = read_labels(load_settings().kafka)
    exported = export_labels(store, args.out)
    summary = {"out": str(args.out), "normal": exported.normal, "anomalous": exported.anomalous}
    if args.json:
        print(json.dumps(summary))
    else:
        anomalous = ", ".join(f"{n} {name}" for name, n in sorted(exported.anomalous.items())) or "none"
        print(f"wrote {args.out}: {exported.normal} normal, anomalous: {anomalous}; decisions.csv")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    store = read_labels(load_settings().kafka)
    stats = label_stats(store)
    if args.json:
        print(json.dumps({"decided": len(store.labels), **stats}, indent=2))
        return 0
    print(f"{len(store.labels)} decided frames")
    for group, counts in stats.items():
        shown = ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        print(f"  by {group:<14} {shown or '-'}")
    return 0
