"""``agad services up|down|status``: local Kafka and Redis for development, tests and the demo."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from agad_stream.cli import args as types
from agad_stream.config import KafkaSettings, load_settings
from deploy.services import manager
from deploy.services.settings import ServicesSettings, load_services_settings
from deploy.topics import create_topics
from deploy.topics_cmd import print_outcomes


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "services",
        help="run a local Kafka broker and Redis server for development and tests",
        description=(
            "Manage a single-node Apache Kafka (KRaft) and a Redis server on 127.0.0.1. State, logs and "
            "PID files live in AGAD_SERVICES__STATE_DIR; ports come from AGAD_SERVICES__KAFKA_PORT and "
            "AGAD_SERVICES__REDIS_PORT."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    helps = {
        "up": "start the services that are not running (a no-op when all are up) and create the topics "
        "of the contract on the local broker",
        "down": "stop the services agad started; no process is left behind",
        "status": "print PID, port and health of each service",
    }
    for action, text in helps.items():
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument("--only", choices=["kafka", "redis"], help="act on one service")
        if action == "status":
            types.add_json_flag(sub)
        sub.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    kafka = load_settings().kafka  # every command refuses an invalid setting, not only those it reads
    settings = load_services_settings()
    if args.action == "up":
        started = manager.up(settings, args.only)
        print(f"started: {', '.join(started)}" if started else "already running")
        _print_status(manager.status(settings, args.only))
        if args.only in (None, "kafka"):
            local = local_kafka(kafka, settings)
            print_outcomes(create_topics(local), local.bootstrap_servers)
        return 0
    if args.action == "down":
        stopped = manager.down(settings, args.only)
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        return 0
    statuses = manager.status(settings, args.only)
    if args.json:
        print(json.dumps([{**asdict(s), "state": s.state} for s in statuses], indent=2))
    else:
        _print_status(statuses)
    return 0 if all(s.healthy for s in statuses) else 1


def _print_status(statuses: list[manager.ServiceStatus]) -> None:
    print(f"{'SERVICE':<8} {'STATE':<20} {'PID':>8} {'PORT':>6}")
    for s in statuses:
        print(f"{s.name:<8} {s.state:<20} {s.pid or '-':>8} {s.port:>6}")


def local_kafka(kafka: KafkaSettings, services: ServicesSettings) -> KafkaSettings:
    """The Kafka settings with the local broker's address: its topics get the configured names."""
    return kafka.model_copy(
        update={
            "bootstrap_servers": f"127.0.0.1:{services.kafka_port}",
            "security_protocol": "PLAINTEXT",
            "sasl_mechanism": None,
        }
    )
