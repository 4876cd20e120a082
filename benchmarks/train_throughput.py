"""Training throughput (images/s) of AGAD per generator and image size on this machine.

    python benchmarks/train_throughput.py [--threads 2] [--repeats 3]

Each measurement trains the faithful variant for one short epoch on random images (the step's
cost does not depend on the pixels) and reports the median of ``--repeats`` runs.
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

CASES = [
    ("naive", 32, 64),
    ("unet", 32, 64),
    ("unetpp", 32, 64),
    ("naive", 128, 16),
    ("unet", 128, 16),
    ("unetpp", 128, 16),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="training steps per measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for arch, size, batch in CASES:
        images = torch.rand(batch * args.steps, 1, size, size) * 2 - 1
        data = TrainData(images, torch.zeros(len(images), dtype=torch.long), images[:2], np.zeros(2, int))
        variant = preset("faithful", arch=arch, batch_size=batch)
        speeds = [
            train_agad(data, variant, image_size=size, epochs=1, progress=False).images_per_second
            for _ in range(args.repeats)
        ]
        median = statistics.median(speeds)
        write_result(
            "throughput",
            f"{arch}-{size}",
            {
                "arch": arch,
                "image_size": size,
                "batch_size": batch,
                "images_per_second": median,
                "runs": speeds,
            },
        )
        print(
            f"{arch:>7} {size:>4}px batch {batch:>3}: {median:8.1f} images/s "
            f"(runs {', '.join(f'{s:.0f}' for s in speeds)})"
        )


if __name__ == "__main__":
    main()
