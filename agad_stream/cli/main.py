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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every installed command, or of ``command`` alone when it is one of them.

    Naming the command spares importing the others' modules (training code pulls in torch, which
    takes seconds), and keeps one command's import error from breaking another.
    """
    parser = argparse.ArgumentParser(
        prog="agad",
        description="Real-time anomaly detection for industrial vision with AGAD, over Kafka and Redis.",
        epilog="Settings come from AGAD_* environment variables (see `agad config show`).",
    )
    parser.add_argument("--version", action="version", version=f"agad-stream {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    entries = sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name)
    if any(entry.name == command for entry in entries):
        entries = [entry for entry in entries if entry.name == command]
    for entry in entries:
        try:
            register = entry.load()
        except ModuleNotFoundError as exc:
            # The package providing the command is not installed on this host (a scorer host
            # without `trainer`, say): the command is simply absent. Any other import error is a bug.
            if exc.name is None or not (entry.module + ".").startswith(exc.name + "."):
                raise
            logging.getLogger(__name__).debug("command %r unavailable: %s", entry.name, exc)
            continue
        register(subparsers)
    return parser


def _command_name(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line, if it comes before any other option."""
    for argument in argv:
        if argument in ("-v", "--verbose"):
            continue
        return None if argument.startswith("-") else argument
    return None


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(_command_name(arguments))
    except AgadError as exc:  # a command that reads settings while registering its flags
        print(f"agad: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(arguments)
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
