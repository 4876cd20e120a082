"""Entry point of the ``agad`` command.

Subcommands are discovered through the ``agad.commands`` entry-point group: each entry is a
``register(subparsers)`` function. The runtime package therefore needs no import of the
training or deployment code, and a scorer host without them simply lacks those commands.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from agad_stream import __version__
from agad_stream.errors import AgadError

COMMAND_GROUP = "agad.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agad",
        description="Real-time anomaly detection for industrial vision with AGAD, over Kafka and Redis.",
        epilog="Settings come from AGAD_* environment variables (see `agad config show`).",
    )
    parser.add_argument("--version", action="version", version=f"agad-stream {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        entry.load()(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python narrates every connection at INFO; keep its warnings only.
    logging.getLogger("kafka").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        status: int | None = args.func(args)
    except AgadError as exc:
        print(f"agad {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"agad {args.command}: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
