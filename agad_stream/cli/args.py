"""Argument types shared by every subcommand: a bad value is refused while the command line is parsed.

argparse turns the ``ValueError`` or ``argparse.ArgumentTypeError`` of a type function into
``agad CMD: error: argument --flag: <message>`` and exit status 2, before any work starts.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from agad_stream.model.card import CARD
from agad_stream.model.registry import POINTER

IMAGE_SIZES = (32, 64, 128, 256)
"""Square input sizes the generators take: powers of two, halved stage by stage down to 4 px."""


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An int within [low, high] (either bound may be open)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range; {_bounds(low, high)}")
        return value

    return parse


def number(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    """A finite float within the bounds; ``low_open``/``high_open`` exclude the bound itself."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or below or above:
            raise argparse.ArgumentTypeError(
                f"{text} is out of range; {_bounds(low, high, low_open=low_open, high_open=high_open)}"
            )
        return value

    return parse


positive = integer(1)
non_negative = integer(0)
port = integer(0, 65535)
listening_port = integer(1, 65535)
fraction = number(0.0, 1.0)
rate = number(0.0, 1.0, low_open=True, high_open=True)
score_value = number()
"""A score, e.g. a threshold: any finite number."""
"""A rate strictly between 0 and 1, such as a false-positive rate."""


def image_size(text: str) -> int:
    """A square input size the generators take."""
    value = integer(1)(text)
    if value not in IMAGE_SIZES:
        raise argparse.ArgumentTypeError(
            f"{value} px is not a size the generators take; choose one of {', '.join(map(str, IMAGE_SIZES))}"
        )
    return value


def model_dir(text: str) -> Path:
    """A model directory (it holds model.json)."""
    path = Path(text)
    if not (path / CARD).is_file():
        raise argparse.ArgumentTypeError(
            f"{path} is not a model directory (no {CARD} in it); train one with `agad train --out {path}`"
        )
    return path


def model_or_registry(text: str) -> Path:
    """A model directory, or a registry folder with a ``current`` pointer."""
    path = Path(text)
    if not (path / CARD).is_file() and not (path / POINTER).is_file():
        raise argparse.ArgumentTypeError(
            f"{path} is neither a model directory (with {CARD}) nor a registry (with a `{POINTER}` file)"
        )
    return path


def device(text: str) -> str:
    """auto, cpu, cuda or cuda:N."""
    value = text.strip().lower()
    index = value.removeprefix("cuda:")
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and index.isdigit()):
        return value
    raise argparse.ArgumentTypeError(f"{text!r}: choose auto, cpu, cuda or cuda:N")


def _bounds(low: float | None, high: float | None, *, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        start = f"{low} (excluded)" if low_open else f"{low}"
        end = f"{high} (excluded)" if high_open else f"{high}"
        return f"choose from {start} to {end}"
    if low is not None:
        return f"choose more than {low}" if low_open else f"choose {low} or more"
    if high is not None:
        return f"choose less than {high}" if high_open else f"choose {high} or less"
    return "choose a finite number"


def batch_sizes(text: str) -> list[int]:
    """``1,8,32``: positive batch sizes, sorted and unique."""
    sizes: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected positive whole numbers separated by commas, e.g. 1,8,32"
            )
        sizes.add(int(part))
    return sorted(sizes)


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--threads`` and ``--precision`` of an inference backend, with one meaning wherever
    they appear."""
    parser.add_argument(
        "--device",
        type=device,
        default="auto",
        help="device of the torch or onnxruntime backend: cpu, cuda or cuda:N (default auto: the backend's "
        "own choice)",
    )
    parser.add_argument(
        "--threads", type=positive, help="intra-op CPU threads of torch or ONNX Runtime (default: theirs)"
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "int8"],
        help="graph ONNX Runtime runs: fp32, or int8 (MODEL/model.int8.onnx from `agad export --precision "
        "int8`); default auto: int8 on a CPU where that file exists",
    )


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
