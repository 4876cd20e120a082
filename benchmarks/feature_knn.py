"""Would a memory of learned features beat one of raw pixels? kNN scores on a kept AGAD run.

    python benchmarks/agad_run.py ... --keep-weights runs/NAME.pt      # train and keep G and D
    python benchmarks/feature_knn.py --weights runs/NAME.pt --data fmnist:0 --name fmnist0

For each layer of G's encoder and of D's feature stack (after each activation, and the final code)
the score is the mean distance to the 5 nearest training normals in that layer's space; ``pixels``
is the same on raw pixels (the 5-NN baseline), ``l2`` the reconstruction error, and ``a+b`` sums two
scores standardised on validation normals. Dev and test AUROC as in agad_run.py: choose on dev.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agad_stream.model.discriminator import Discriminator
from agad_stream.model.generator import build_generator
from agad_stream.preprocess import to_model_input
from benchmarks.common import dev_set, write_result
from trainer.agad.scoring import knn_distance, score_batches
from trainer.data import load_dataset
from trainer.metrics import auroc


@torch.inference_mode()
def layer_features(stack: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Flattened outputs of every activation of ``stack`` and of its last layer, one tensor per layer."""
    parts: list[list[torch.Tensor]] = []
    for start in range(0, len(images), 512):
        h, taken = images[start : start + 512], []
        layers = list(stack.children())
        for i, layer in enumerate(layers):
            h = layer(h)
            if isinstance(layer, nn.LeakyReLU | nn.ReLU) or i == len(layers) - 1:
                taken.append(h.flatten(1))
        parts.append(taken)
    return [torch.cat(layer) for layer in zip(*parts, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--weights", required=True, type=Path, help="a .pt file from agad_run.py --keep-weights"
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--gamma", type=float, default=0.0)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    dataset = load_dataset(args.data, args.image_size, gamma=args.gamma, seed=args.seed)
    channels = dataset.channels
    state = torch.load(args.weights, weights_only=True)
    generator = build_generator("naive", args.image_size, channels)
    generator.load_state_dict(state["generator"])
    discriminator = Discriminator(args.image_size, channels)
    discriminator.load_state_dict(state["discriminator"])
    generator.eval()
    discriminator.eval()

    def tensors(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(to_model_input(images))

    dev_images, dev_labels = dev_set(dataset)
    headline = dataset.headline_test()
    sets = {
        "train": tensors(dataset.train.images[dataset.train.labels == 0]),
        "val": tensors(dataset.val.images[dataset.val.labels == 0]),
        "dev": tensors(dev_images),
        "test": tensors(headline.images),
    }
    # Every score, on val (its reference), dev and test.
    scores: dict[str, dict[str, np.ndarray]] = {
        "pixels": {
            k: knn_distance(v.flatten(1), sets["train"].flatten(1)) for k, v in sets.items() if k != "train"
        },
        "l2": {k: score_batches(generator, v)["l2"] for k, v in sets.items() if k != "train"},
    }
    stacks = {"G": generator.get_submodule("encoder"), "D": discriminator.get_submodule("features")}
    for prefix, stack in stacks.items():
        features = {k: layer_features(stack, v) for k, v in sets.items()}
        for depth, bank in enumerate(features["train"]):
            scores[f"{prefix}{depth}"] = {
                k: knn_distance(features[k][depth], bank) for k in ("val", "dev", "test")
            }

    def standardised(name: str, split: str) -> np.ndarray:
        reference = scores[name]["val"]
        return (scores[name][split] - reference.mean()) / (reference.std() + 1e-12)

    last_g = max(k for k in scores if k.startswith("G"))
    last_d = max(k for k in scores if k.startswith("D"))
    for a, b in (("l2", "pixels"), ("l2", last_g), ("l2", last_d), (last_d, "pixels")):
        scores[f"{a}+{b}"] = {s: standardised(a, s) + standardised(b, s) for s in ("dev", "test")}

    record = {
        "label": "feature-knn",
        "data": args.data,
        "gamma": args.gamma,
        "seed": args.seed,
        "image_size": args.image_size,
        "weights": str(args.weights),
        "layers": {"G": last_g, "D": last_d},
        "dev": {"auroc": {k: auroc(dev_labels, v["dev"]) for k, v in scores.items()}},
        "test": {"auroc": {k: auroc(headline.labels, v["test"]) for k, v in scores.items()}},
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    path = write_result("features", args.name, record)
    for name in scores:
        print(f"{name:>14}  dev {record['dev']['auroc'][name]:.3f}  test {record['test']['auroc'][name]:.3f}")
    print(path)


if __name__ == "__main__":
    main()
