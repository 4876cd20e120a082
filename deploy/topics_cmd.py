"""``agad topics create|describe``: the contract's Kafka topics (see :mod:`deploy.topics`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from agad_stream.cli import args as types
from agad_stream.config import load_settings
from deploy.topics import TopicOutcome, TopicReport, create_topics, describe_topics


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "topics",
        help="create and inspect the Kafka topics agad reads and writes",
        description="The topics of the contract (frames, scores, dead letters, labels, models), named by "
        "AGAD_KAFKA__TOPICS__*, with AGAD_KAFKA__PARTITIONS partitions, AGAD_KAFKA__REPLICATION_FACTOR "
        "replicas and records up to AGAD_KAFKA__MAX_FRAME_BYTES; labels compacted and kept for good.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create missing topics and align their configuration (idempotent)",
        description="Create every topic of the contract that is missing, and set the configuration the "
        "settings ask for on those that exist (other settings of theirs are left alone). A partition "
        "count that differs is reported, never changed.",
    )
    types.add_json_flag(create)
    create.set_defaults(func=_create)
    describe = actions.add_parser(
        "describe",
        help="partitions, configuration and consumer-group lag of each topic",
        description="For each topic of the contract: its partitions with leader, replicas and in-sync "
        "replicas, its size and retention configuration, its end offsets, and the lag of every consumer "
        "group that has committed offsets on it. Exits 1 when a topic is missing.",
    )
    types.add_json_flag(describe)
    describe.set_defaults(func=_describe)


def _create(args: argparse.Namespace) -> int:
    kafka = load_settings().kafka
    outcomes = create_topics(kafka)
    if args.json:
        print(json.dumps([asdict(outcome) for outcome in outcomes], indent=2))
    else:
        print_outcomes(outcomes, kafka.bootstrap_servers)
    return 0


def print_outcomes(outcomes: list[TopicOutcome], where: str) -> None:
    print(f"topics on {where}:")
    for outcome in outcomes:
        changed = ", ".join(f"{key}={value}" for key, value in outcome.changed.items())
        print(f"  {outcome.name:<24} {outcome.action}{f' ({changed})' if changed else ''}")
        for note in outcome.notes:
            print(f"  {'':<24} note: {note}")


def _describe(args: argparse.Namespace) -> int:
    kafka = load_settings().kafka
    reports = describe_topics(kafka)
    if args.json:
        print(json.dumps([asdict(report) for report in reports], indent=2))
    else:
        for report in reports:
            _print_report(report)
    return 0 if all(report.exists for report in reports) else 1


def _print_report(report: TopicReport) -> None:
    if not report.exists:
        print(f"{report.name} ({report.variable}): missing; create it with `agad topics create`\n")
        return
    replicas = max((len(p["replicas"]) for p in report.partitions), default=0)
    print(f"{report.name} ({report.variable}): {len(report.partitions)} partitions, {replicas} replicas")
    print("  config: " + ", ".join(f"{key}={value}" for key, value in report.configs.items()))
    for p in report.partitions:
        end = report.end_offsets.get(p["partition"], 0)
        print(
            f"  partition {p['partition']:<3} leader {p['leader']:<4} replicas {p['replicas']} "
            f"isr {p['isr']} end offset {end}"
        )
    if not report.groups:
        print("  groups: none with committed offsets")
    for group in report.groups:
        parts = " ".join(f"{partition}:{lag}" for partition, lag in sorted(group.per_partition.items()))
        print(f"  group {group.group}: lag {group.lag} ({parts})")
    print()
