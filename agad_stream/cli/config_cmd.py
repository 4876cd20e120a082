"""``agad config show``: the effective settings, secrets masked."""

from __future__ import annotations

import argparse
import json
from importlib.metadata import entry_points
from typing import Any

from agad_stream.cli import args as types
from agad_stream.config import flatten, load_settings

SETTINGS_GROUP = "agad.settings"
"""Settings of installed packages besides the runtime's (``services``: deploy's local services)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("config", help="inspect the effective configuration")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser(
        "show",
        help="print every setting with its environment variable; secrets are masked",
        description="Print the settings in effect after environment variables and .env are applied.",
    )
    types.add_json_flag(show)
    show.set_defaults(func=show_config)


def show_config(args: argparse.Namespace) -> int:
    flat = flatten(load_settings())
    for entry in sorted(entry_points(group=SETTINGS_GROUP), key=lambda e: e.name):
        flat.update(flatten(entry.load()(), (entry.name,)))
    if args.json:
        print(json.dumps(flat, indent=2, default=str))
        return 0
    width = max(len(name) for name in flat)
    for name, value in flat.items():
        print(f"{name:<{width}}  {_display(value)}")
    return 0


def _display(value: Any) -> str:
    return "(unset)" if value is None or value == "" else str(value)
