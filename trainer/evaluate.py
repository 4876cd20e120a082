"""Evaluate a trained scorer on a labelled split: the numbers ``agad evaluate`` prints, and its plots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agad_stream.model.score import AnomalyScorer
from agad_stream.preprocess import to_model_input
from trainer.data import Split
from trainer.metrics import auroc, roc_curve, score_report


def _scored(
    scorer: AnomalyScorer, images: np.ndarray, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(scores, heat-maps) of stored images a batch at a time, through the same preprocessing as serving."""
    scorer.eval()
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(to_model_input(images[start : start + batch_size]))
        yield scorer(x.contiguous(memory_format=torch.channels_last))


@torch.inference_mode()
def score_split(scorer: AnomalyScorer, split: Split, batch_size: int = 256) -> np.ndarray:
    """Anomaly score of every image in ``split``."""
    scores = [batch_scores.float().numpy() for batch_scores, _ in _scored(scorer, split.images, batch_size)]
    return np.concatenate(scores) if scores else np.empty(0, dtype=np.float32)


@torch.inference_mode()
def scores_and_heatmaps(
    scorer: AnomalyScorer, split: Split, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Score and heat-map ((N, H, W) at model size, as the scorer sends them) of every image, in one pass."""
    scores, heatmaps = [], []
    for batch_scores, heat in _scored(scorer, split.images, batch_size):
        scores.append(batch_scores.float().numpy())
        heatmaps.append(heat[:, 0].float().numpy())
    if not scores:
        size = split.images.shape[1]
        return np.empty(0, dtype=np.float32), np.empty((0, size, size), dtype=np.float32)
    return np.concatenate(scores), np.concatenate(heatmaps)


@torch.inference_mode()
def score_images(scorer: AnomalyScorer, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Anomaly score of model-ready images (N, C, H, W) in [-1, 1], e.g. synthetically damaged ones."""
    scorer.eval()
    parts = [
        scorer(batch.contiguous(memory_format=torch.channels_last))[0].float().numpy()
        for batch in images.split(batch_size)
    ]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)


# A pixel is stuck when G misses it by at least half the [-1, 1] range on nearly every normal image.
STUCK_RESIDUAL = 1.0
STUCK_SHARE = 0.9


@torch.inference_mode()
def stuck_pixels(scorer: AnomalyScorer, split: Split, batch_size: int = 256) -> list[tuple[int, int]]:
    """(row, column) of every pixel that G reconstructs wrongly on the normal images of ``split``
    nearly always. Some seeds leave a few output pixels stuck at white: every heat-map then shows
    the same bright dots, and topk and maxpool score them instead of the part. Found before
    shipping, a retrain with another seed is cheap."""
    normal = split.images[split.labels == 0]
    if not len(normal):
        return []
    hits = torch.stack(
        [(heat[:, 0] >= STUCK_RESIDUAL).sum(dim=0) for _, heat in _scored(scorer, normal, batch_size)]
    ).sum(dim=0)
    rows, columns = torch.nonzero(hits >= STUCK_SHARE * len(normal), as_tuple=True)
    return list(zip(rows.tolist(), columns.tolist(), strict=True))


def evaluation_report(
    split: Split, scores: np.ndarray, threshold: float, hard_groups: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Headline metrics at ``threshold`` (``hard_groups`` left out), plus recall and AUROC per group.

    Each group's AUROC is against all normals of the split, so elpv's uncertain cells are reported
    apart from the clear defects, as the benchmark's protocol asks.
    """
    headline = ~np.isin(split.groups, list(hard_groups))
    report = score_report(split.labels[headline], scores[headline], threshold)
    report["hard_groups"] = list(hard_groups)
    normal = split.labels == 0
    groups: dict[str, dict[str, Any]] = {}
    for group in sorted(set(split.groups[~normal].tolist())):
        members = (split.groups == group) & ~normal
        entry: dict[str, Any] = {
            "n": int(members.sum()),
            "recall": float((scores[members] >= threshold).mean()),
        }
        if normal.any():
            keep = normal | members
            entry["auroc"] = auroc(split.labels[keep], scores[keep])
        groups[str(group)] = entry
    report["groups"] = groups
    return report


def write_plots(
    split: Split, scores: np.ndarray, threshold: float, directory: Path, title: str
) -> list[Path]:
    """ROC curve and normal-vs-anomalous score histograms as PNG files in ``directory``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    normal = split.labels == 0
    if normal.any() and (~normal).any():
        fpr, tpr, _ = roc_curve(split.labels, scores)
        figure, axis = plt.subplots(figsize=(5, 5))
        axis.plot(fpr, tpr, label=f"AUROC {auroc(split.labels, scores):.3f}")
        axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
        axis.set(xlabel="false-positive rate", ylabel="true-positive rate", title=f"ROC: {title}")
        axis.legend(loc="lower right")
        figure.tight_layout()
        written.append(directory / "roc.png")
        figure.savefig(written[-1], dpi=120)
        plt.close(figure)
    figure, axis = plt.subplots(figsize=(7, 4))
    bins = np.histogram_bin_edges(scores, bins=60).tolist()
    axis.hist(scores[normal], bins=bins, alpha=0.6, density=True, label=f"normal ({int(normal.sum())})")
    axis.hist(
        scores[~normal], bins=bins, alpha=0.6, density=True, label=f"anomalous ({int((~normal).sum())})"
    )
    axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    axis.set(xlabel="anomaly score", ylabel="density", title=f"Scores: {title}")
    axis.legend()
    figure.tight_layout()
    written.append(directory / "scores.png")
    figure.savefig(written[-1], dpi=120)
    plt.close(figure)
    return written
