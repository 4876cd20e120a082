"""Does the heat-map point at the defect? Pixel AUROC and AUPRO against ground-truth masks.

Pixel AUROC ranks every pixel of every test image; large defects dominate it. AUPRO (Bergmann et
al., MVTec AD) weighs each connected defect region equally: for a threshold, the PRO is the mean
over regions of the share of the region's pixels at or above it; its area over the false-positive
rate of normal pixels from 0 to ``max_fpr`` (0.3 as MVTec AD reports it), divided by ``max_fpr``,
is 1 for a perfect heat-map and about ``max_fpr / 2`` for a random one.
"""

from __future__ import annotations

import cv2
import numpy as np

from trainer.metrics import UndefinedMetricError, auroc

MAX_FPR = 0.3
FPR_STEPS = 300


def pixel_auroc(masks: np.ndarray, heatmaps: np.ndarray) -> float:
    """AUROC of every pixel's heat against its mask (boolean (N, H, W) and float (N, H, W))."""
    return auroc(masks.reshape(-1).astype(np.int64), heatmaps.reshape(-1))


def aupro(masks: np.ndarray, heatmaps: np.ndarray, max_fpr: float = MAX_FPR) -> float:
    """Normalised area under the per-region overlap curve up to ``max_fpr`` (see the module doc)."""
    regions = [
        np.sort(heat[labels == k])
        for mask, heat in zip(masks, heatmaps, strict=True)
        for labels, count in [_components(mask)]
        for k in range(1, count)
    ]
    normal = np.sort(heatmaps[~masks])
    if not regions or not len(normal):
        raise UndefinedMetricError("AUPRO needs defect regions and normal pixels")
    # Thresholds where the normal pixels' false-positive rate steps evenly from 0 to max_fpr.
    wanted = np.linspace(0.0, max_fpr, FPR_STEPS + 1)
    thresholds = np.quantile(normal, 1.0 - wanted)
    thresholds[0] = np.nextafter(normal[-1], np.inf)  # nothing normal above the first
    fpr = 1.0 - np.searchsorted(normal, thresholds, side="left") / len(normal)
    pro = np.mean(
        [1.0 - np.searchsorted(region, thresholds, side="left") / len(region) for region in regions], axis=0
    )
    return float(_area_up_to(fpr, pro, max_fpr) / max_fpr)


def _area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under (x, y), x non-decreasing, cut at x = limit (y interpolated there).

    Tied heat values make the false-positive rate jump past ``limit`` between two thresholds."""
    inside = x <= limit
    if inside.all():
        return float(np.trapezoid(y, x))
    last = int(np.flatnonzero(inside)[-1])
    x0, x1, y0, y1 = x[last], x[last + 1], y[last], y[last + 1]
    y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
    return float(np.trapezoid(np.r_[y[inside], y_limit], np.r_[x[inside], limit]))


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected defect regions of one mask (8-connected): labels and their count plus one."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return labels, count
