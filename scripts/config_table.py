#!/usr/bin/env python3
"""Print the README's configuration table from :mod:`agad_stream.config`, or check or update it.

    python scripts/config_table.py                  # print the Markdown table
    python scripts/config_table.py --check README.md
    python scripts/config_table.py --write README.md

In the README the table sits between the markers ``<!-- config-table:begin -->`` and
``<!-- config-table:end -->``; a test runs ``--check`` so the table cannot drift from the code.
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from agad_stream.config import Settings, env_var_name
from deploy.services.settings import LOCATION as SERVICES
from deploy.services.settings import ServicesSettings

BEGIN = "<!-- config-table:begin -->"
END = "<!-- config-table:end -->"

# Defaults computed at run time are described rather than printed for one machine.
COMPUTED_DEFAULTS = {
    "AGAD_SERVICES__STATE_DIR": "`$XDG_STATE_HOME/agad-stream`, else `~/.local/state/agad-stream`",
}


def rows(model: type[BaseModel], location: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every leaf setting, in declaration order."""
    table = []
    for name, info in model.model_fields.items():
        here = (*location, name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            table.extend(rows(annotation, here))
            continue
        variable = env_var_name(here)
        table.append((variable, _default(variable, info), _meaning(info)))
    return table


def _default(variable: str, info: FieldInfo) -> str:
    if info.default_factory is not None:
        if variable not in COMPUTED_DEFAULTS:
            raise SystemExit(f"{variable} has a computed default: describe it in COMPUTED_DEFAULTS")
        return COMPUTED_DEFAULTS[variable]
    value: Any = info.default
    if value is None:
        return "(unset)"
    if isinstance(value, SecretStr):
        return "(secret)"
    return f"`{value}`"


def _meaning(info: FieldInfo) -> str:
    parts = [info.description or ""]
    choices = _choices(info.annotation)
    if choices:
        parts.append("one of " + ", ".join(f"`{choice}`" for choice in choices))
    bounds = _bounds(info)
    if bounds:
        parts.append(bounds)
    return "; ".join(part for part in parts if part).replace("|", "\\|")


def _choices(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(arg) for arg in typing.get_args(annotation)]
    return [choice for arg in typing.get_args(annotation) for choice in _choices(arg)]


def _bounds(info: FieldInfo) -> str:
    low = high = None
    for constraint in info.metadata:
        if isinstance(constraint, annotated_types.Ge):
            low = f"≥ {constraint.ge}"
        elif isinstance(constraint, annotated_types.Gt):
            low = f"> {constraint.gt}"
        elif isinstance(constraint, annotated_types.Le):
            high = f"≤ {constraint.le}"
        elif isinstance(constraint, annotated_types.Lt):
            high = f"< {constraint.lt}"
    return ", ".join(bound for bound in (low, high) if bound)


def markdown() -> str:
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    every = rows(Settings) + rows(ServicesSettings, SERVICES)
    lines += [f"| `{variable}` | {default} | {meaning} |" for variable, default, meaning in every]
    return "\n".join(lines) + "\n"


def _replace(text: str, table: str) -> str:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"the markers {BEGIN} and {END} are missing")
    return text[: start + len(BEGIN)] + "\n" + table + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", type=Path, metavar="README", help="fail if README's table is out of date")
    group.add_argument("--write", type=Path, metavar="README", help="replace README's table")
    args = parser.parse_args(argv)
    table = markdown()
    if args.check is not None:
        text = args.check.read_text()
        if _replace(text, table) != text:
            print(
                f"{args.check}: the configuration table is out of date; run "
                f"`python scripts/config_table.py --write {args.check}`",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.write is not None:
        args.write.write_text(_replace(args.write.read_text(), table))
        return 0
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
