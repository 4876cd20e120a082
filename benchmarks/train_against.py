"""Training images per second of the default at this commit against an earlier one, in one run.

    python benchmarks/train_against.py ae9a465^ --size 32 --batch 256 --rounds 4 --threads 2

Whether a change made training slower per image is a ratio, and this machine's speed drifts
more from hour to hour than most changes move it. So each round trains both commits, one after
the other in a fresh process (the order alternates from round to round), on the same random
images for ``--steps`` steps of the naive generator, and the summary is the median of the
per-round ratios. The earlier commit is checked out into a temporary git worktree; it needs
``trainer.api.fit_agad`` as this one calls it (every commit since the step budget and before).
Result: benchmarks/results/train-against/<rev>-<size>px-b<batch>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result

ROOT = Path(__file__).resolve().parent.parent
ONE_MEASUREMENT = """
import sys
import numpy as np, torch
from trainer.agad.variant import preset
from trainer.api import TrainConfig, fit_agad
from trainer.data import DataSet, Split
size, batch, steps, threads = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(threads)
rng = np.random.default_rng(0)
def normals(n):
    images = rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8)
    return Split(images, np.zeros(n, np.int64), np.full(n, "good"), [str(i) for i in range(n)])
data = DataSet("random", size, 1, 0.0, 0, normals(batch * steps), normals(2), normals(2))
config = TrainConfig(preset("default", arch="naive", batch_size=batch), epochs=1)
print(fit_agad(data, config, progress=False).fit.images_per_second)
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rev", help="the earlier commit (any git revision)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6, help="training steps per measurement")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    base = subprocess.run(
        ["git", "rev-parse", "--short", args.rev], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    measure = [str(args.size), str(args.batch), str(args.steps), str(args.threads)]
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), base], cwd=ROOT, check=True)
        try:
            trees = {"head": ROOT, "base": worktree}
            speeds: dict[str, list[float]] = {"head": [], "base": []}
            for round_ in range(args.rounds):
                for name in ("head", "base") if round_ % 2 == 0 else ("base", "head"):
                    speeds[name].append(images_per_second(trees[name], measure))
                head, earlier = speeds["head"][-1], speeds["base"][-1]
                print(f"round {round_ + 1}: head {head:.0f}, {base} {earlier:.0f} images/s")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=True)
    ratios = [h / b for h, b in zip(speeds["head"], speeds["base"], strict=True)]
    summary = statistics.median(ratios)
    path = write_result(
        "train-against",
        f"{base}-{args.size}px-b{args.batch}",
        {
            "base": base,
            "image_size": args.size,
            "batch_size": args.batch,
            "steps": args.steps,
            "threads": args.threads,
            "images_per_second": speeds,
            "head_vs_base": ratios,
            "summary": {"head_vs_base": summary},
        },
    )
    print(f"{path}: head / {base} {summary:.3f} (rounds {', '.join(f'{r:.3f}' for r in ratios)})")


def images_per_second(tree: Path, measure: list[str]) -> float:
    """One measurement in a fresh process that imports the trainer of ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", ONE_MEASUREMENT, *measure], cwd=tree, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"training at {tree} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
