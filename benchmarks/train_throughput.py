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
from trainer.agad.variant import preset
from trainer.api import TrainConfig, fit_agad
from trainer.data import DataSet, Split

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
    rng = np.random.default_rng(0)

    def normals(n: int) -> Split:
        images = rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8)
        return Split(images, np.zeros(n, np.int64), np.full(n, "good"), [str(i) for i in range(n)])

    data = DataSet("random", size, 1, 0.0, 0, normals(batch * steps), normals(2), normals(2))
    config = TrainConfig(preset(variant_name, arch=arch, batch_size=batch), epochs=1)
    speeds = [fit_agad(data, config, progress=False).fit.images_per_second for _ in range(repeats)]
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
