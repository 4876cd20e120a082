"""Training throughput (images/s) of AGAD per generator and image size on this machine.

    python benchmarks/train_throughput.py [--variant default] [--sizes 32 64 128] [--threads 2]

Each measurement trains the variant (the product default, or the faithful one with its
discriminator and second generator pass) for one short epoch on random images (the step's cost
does not depend on the pixels) and reports the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result
from trainer.agad.loop import TrainData, train_agad
from trainer.agad.variant import preset

ARCHS = ("naive", "unet", "unetpp")
BATCH_BY_SIZE = {32: 64, 64: 64, 128: 16}  # as the result tables train: elpv at 64 px uses 64


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", choices=("default", "faithful"), default="default")
    parser.add_argument("--sizes", type=int, nargs="+", choices=sorted(BATCH_BY_SIZE), default=[32, 64, 128])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="training steps per measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for size in args.sizes:
        for arch in ARCHS:
            measure(args.variant, arch, size, BATCH_BY_SIZE[size], args.steps, args.repeats)


def measure(variant_name: str, arch: str, size: int, batch: int, steps: int, repeats: int) -> None:
    """Median training throughput of one generator at one image size; one results file."""
    images = torch.rand(batch * steps, 1, size, size) * 2 - 1
    data = TrainData(images, torch.zeros(len(images), dtype=torch.long), images[:2], np.zeros(2, int))
    variant = preset(variant_name, arch=arch, batch_size=batch)
    speeds = [
        train_agad(data, variant, image_size=size, epochs=1, progress=False).images_per_second
        for _ in range(repeats)
    ]
    median = statistics.median(speeds)
    write_result(
        "throughput",
        f"{variant_name}-{arch}-{size}",
        {
            "variant": variant_name,
            "arch": arch,
            "image_size": size,
            "batch_size": batch,
            "images_per_second": median,
            "runs": speeds,
        },
    )
    print(
        f"{variant_name} {arch:>7} {size:>4}px batch {batch:>3}: {median:8.1f} images/s "
        f"(runs {', '.join(f'{s:.0f}' for s in speeds)})"
    )


if __name__ == "__main__":
    main()
