"""What decoding a camera frame costs the scorer, scaled JPEG decoding against decoding every pixel.

    python benchmarks/decode.py --table decode --name camera-frames --rounds 15 --iterations 40

For each case (frame size, channels, model size) the two paths take turns, round by round, on the
same synthetic JPEG frame (``agad_stream.inference.bench.synthetic_frame``): the product's
``prepare_image`` (which decodes a large JPEG at 1/2, 1/4 or 1/8 of its size) and the whole
decode it replaced (``decode_image``, then the same conversion and resize). The run file holds the
median ms per frame of each, their ratio within each round, and how far apart their pixels are.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agad_stream.inference.bench import synthetic_frame
from agad_stream.preprocess import convert_channels, decode_image, prepare_image, resize_square
from benchmarks.common import run_parser, write_result

CASES = [(640, 480, 1, 32), (640, 480, 3, 256), (1280, 1024, 1, 64), (1920, 1080, 3, 256)]
"""(width, height, channels, model size): a VGA frame for a small and a large model, a 1.3 MP
monochrome camera and a colour 1080p one."""


def whole_decode(frame: bytes, size: int, channels: int) -> np.ndarray:
    """The path before scaled decoding: every pixel decoded, then converted and averaged down."""
    return resize_square(convert_channels(decode_image(frame, "image/jpeg"), channels), size)


def scaled_decode(frame: bytes, size: int, channels: int) -> np.ndarray:
    """The product's path: a large JPEG decoded at reduced scale, then converted and resized."""
    return prepare_image(frame, "image/jpeg", image_size=size, channels=channels)


Prepare = Callable[[bytes, int, int], np.ndarray]


def seconds_per_frame(prepare: Prepare, frame: bytes, size: int, channels: int, iterations: int) -> float:
    prepare(frame, size, channels)
    start = time.perf_counter()
    for _ in range(iterations):
        prepare(frame, size, channels)
    return (time.perf_counter() - start) / iterations


def one_case(
    width: int, height: int, channels: int, size: int, rounds: int, iterations: int
) -> dict[str, Any]:
    frame = synthetic_frame(width, height, channels)

    ratios, scaled_ms, whole_ms = [], [], []
    for _ in range(rounds):
        whole = seconds_per_frame(whole_decode, frame, size, channels, iterations)
        fast = seconds_per_frame(scaled_decode, frame, size, channels, iterations)
        whole_ms.append(whole * 1000)
        scaled_ms.append(fast * 1000)
        ratios.append(whole / fast)
    difference = np.abs(
        scaled_decode(frame, size, channels).astype(int) - whole_decode(frame, size, channels).astype(int)
    )
    return {
        "frame": f"{width}x{height}x{channels}",
        "frame_bytes": len(frame),
        "model_size": size,
        "whole_ms": statistics.median(whole_ms),
        "scaled_ms": statistics.median(scaled_ms),
        "speedup": statistics.median(ratios),
        "speedup_each_round": [round(r, 3) for r in ratios],
        "mean_abs_pixel_difference": float(difference.mean()),
        "max_abs_pixel_difference": int(difference.max()),
    }


def main() -> None:
    parser = run_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=50, help="frames timed per path and round")
    args = parser.parse_args()
    cases = []
    for width, height, channels, size in CASES:
        case = one_case(width, height, channels, size, args.rounds, args.iterations)
        print(
            f"{case['frame']} -> {size} px: whole {case['whole_ms']:.2f} ms, "
            f"scaled {case['scaled_ms']:.2f} ms, {case['speedup']:.2f}x; "
            f"mean |pixel difference| {case['mean_abs_pixel_difference']:.2f}"
        )
        cases.append(case)
    path = write_result(
        args.table, args.name, {"rounds": args.rounds, "iterations": args.iterations, "cases": cases}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
