"""Evaluate a trained scorer on a labelled split: the numbers ``agad evaluate`` prints, and its plots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agad_stream.model.score import AnomalyScorer, residual_map
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
    generator = scorer.generator.eval()
    hits = torch.zeros(normal.shape[1:3], dtype=torch.long)
    for start in range(0, len(normal), batch_size):
        x = torch.from_numpy(to_model_input(normal[start : start + batch_size]))
        residual = residual_map(x, generator(x).float())  # per pixel: the heat-map blurs a lone one
        hits += (residual[:, 0] >= STUCK_RESIDUAL).sum(dim=0)
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


def write_heatmap_picture(
    split: Split, scores: np.ndarray, heatmaps: np.ndarray, masks: np.ndarray, path: Path, per_group: int = 2
) -> Path:
    """Test images beside their heat-maps and defect masks: ``per_group`` of each defect and of the
    normals, the first in the split's order, so that one look says whether the heat points at the
    defect. Heat-maps share one colour scale (0 to the 99.5th percentile of all heat)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = [
        int(i)
        for group in sorted({str(g) for g in split.groups}, key=lambda g: (g == "good", g))
        for i in np.flatnonzero(split.groups == group)[:per_group]
    ]
    top = float(np.quantile(heatmaps, 0.995)) or 1.0
    figure, axes = plt.subplots(len(rows), 3, figsize=(6, 2 * len(rows)), squeeze=False)
    for axis, title in zip(axes[0], ("image", "heat-map", "defect mask"), strict=True):
        axis.set_title(title)
    for row, index in zip(axes, rows, strict=True):
        image = split.images[index]
        row[0].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
        row[0].set_ylabel(f"{split.groups[index]}\nscore {scores[index]:.3g}", fontsize=8)
        row[1].imshow(heatmaps[index], cmap="inferno", vmin=0, vmax=top)
        row[2].imshow(masks[index], cmap="gray", vmin=0, vmax=1)
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
