"""Image-level detection metrics and threshold calibration, in numpy only.

Conventions: ``labels`` are 0 (normal) / 1 (anomalous); a higher score means more anomalous; a
frame is flagged when ``score >= threshold``. AUROC, average precision and the ROC curve follow
scikit-learn's definitions exactly, ties included (the tests compare against it), so our numbers
are comparable with published ones without making scikit-learn a runtime dependency.

Threshold calibration never sees test data. With labelled anomalies in the validation split the
threshold maximises F1 there (or balanced accuracy, on request); with normal images only it is the
(1 − target FPR) quantile of their scores, so about ``target_fpr`` of normal frames get flagged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from agad_stream.errors import AgadError
from agad_stream.model.card import Threshold

MIN_ANOMALIES = 5
"""Fewest labelled anomalies a validation split needs before choices (epochs, scores) are made on its
AUROC: below it the AUROC is mostly chance (its standard error is around 0.1 or more)."""


class UndefinedMetricError(AgadError, ValueError):
    """A metric that needs both classes (or some normals) was asked of data that lacks them."""


def _as_arrays(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (anomalous)")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y.astype(np.int64), s


def _need_both(y: np.ndarray, what: str) -> None:
    positives = int(y.sum())
    if positives == 0 or positives == y.size:
        raise UndefinedMetricError(
            f"{what} needs normal and anomalous images; "
            f"got {y.size - positives} normal, {positives} anomalous"
        )


def _cumulative_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positives when flagging at each distinct score, highest threshold first."""
    order = np.argsort(s, kind="mergesort")[::-1]
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s_sorted)), y.size - 1]
    tps = np.cumsum(y_sorted)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return fps, tps, s_sorted[last_of_tie]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; tied scores count one half, as in ``sklearn.metrics.roc_auc_score``."""
    y, s = _as_arrays(labels, scores)
    _need_both(y, "AUROC")
    fps, tps, _ = _cumulative_counts(y, s)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2)  # trapezoids: ties count one half


def auroc_standard_error(value: float, n_anomalous: int, n_normal: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUROC measured on this many images.

    Why: on a handful of labelled anomalies two scores' AUROCs differ by chance more than by merit;
    this says by how much, from the AUROC and the counts alone. It errs on the large side for
    bell-shaped score distributions, which suits a rule that should change its mind reluctantly.
    """
    if n_anomalous < 1 or n_normal < 1:
        raise UndefinedMetricError(
            f"an AUROC's standard error needs normal and anomalous images; "
            f"got {n_normal} normal, {n_anomalous} anomalous"
        )
    q1, q2 = value / (2 - value), 2 * value**2 / (1 + value)
    variance = (
        value * (1 - value) + (n_anomalous - 1) * (q1 - value**2) + (n_normal - 1) * (q2 - value**2)
    ) / (n_anomalous * n_normal)
    return float(np.sqrt(max(variance, 0.0)))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Σ (R_k − R_{k−1}) P_k over distinct thresholds: scikit-learn's definition, no interpolation."""
    y, s = _as_arrays(labels, scores)
    _need_both(y, "average precision")
    fps, tps, _ = _cumulative_counts(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(
    labels: np.ndarray, scores: np.ndarray, *, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) as ``sklearn.metrics.roc_curve``: the first threshold is +inf.

    ``drop_intermediate`` removes points on straight segments, which changes nothing in a plot.
    """
    y, s = _as_arrays(labels, scores)
    _need_both(y, "a ROC curve")
    fps, tps, thresholds = _cumulative_counts(y, s)
    if drop_intermediate and fps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fpr = np.r_[0.0, fps] / fps[-1]
    tpr = np.r_[0.0, tps] / tps[-1]
    return fpr, tpr, np.r_[np.inf, thresholds]


@dataclass(frozen=True)
class BinaryMetrics:
    """Confusion counts and the usual rates at one threshold (score >= threshold = anomalous)."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    precision: float  # 0 when nothing is flagged
    recall: float  # 0 when there are no anomalies
    f1: float
    accuracy: float
    fpr: float  # false alarms among normals; 0 when there are no normals

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> BinaryMetrics:
    """Precision, recall, F1, accuracy and confusion counts of flagging ``score >= threshold``."""
    y, s = _as_arrays(labels, scores)
    flagged = s >= threshold
    tp = int(np.sum(flagged & (y == 1)))
    fp = int(np.sum(flagged & (y == 0)))
    fn = int(np.sum(~flagged & (y == 1)))
    tn = int(np.sum(~flagged & (y == 0)))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return BinaryMetrics(
        threshold=float(threshold),
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        precision=precision,
        recall=recall,
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        accuracy=_ratio(tp + tn, y.size),
        fpr=_ratio(fp, fp + tn),
    )


def f1_optimal_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold with the best F1 on labelled data; among equal F1 the higher one (fewer alarms).

    It lies halfway between the lowest flagged score and the next lower score, so that a new
    anomaly scoring a hair below the weakest validation anomaly is still caught.
    """
    y, s = _as_arrays(labels, scores)
    _need_both(y, "an F1-optimal threshold")
    fps, tps, thresholds = _cumulative_counts(y, s)
    positives = tps[-1]
    f1 = 2 * tps / (tps + fps + positives)
    return _halfway_below(thresholds, int(np.argmax(f1)))  # first maximum = highest threshold


def balanced_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold with the best balanced accuracy (TPR + TNR) / 2, i.e. Youden's J, on labelled data.

    Unlike F1 it does not depend on the share of anomalies in the calibration set, so it carries
    over to a line (or a test set) whose defect rate differs from validation's. Placed halfway to
    the next lower score, like ``f1_optimal_threshold``.
    """
    y, s = _as_arrays(labels, scores)
    _need_both(y, "a balanced-accuracy threshold")
    fps, tps, thresholds = _cumulative_counts(y, s)
    youden = tps / tps[-1] - fps / fps[-1]
    return _halfway_below(thresholds, int(np.argmax(youden)))


def _halfway_below(thresholds: np.ndarray, best: int) -> float:
    """Halfway between the chosen score and the next lower one (``thresholds`` run high to low)."""
    if best + 1 < thresholds.size:
        return float((thresholds[best] + thresholds[best + 1]) / 2)
    return float(thresholds[best])


def quantile_threshold(normal_scores: np.ndarray, target_fpr: float = 0.01) -> float:
    """The (1 − target_fpr) quantile (linear interpolation) of normal validation scores."""
    if not 0.0 < target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in (0, 1), not {target_fpr}")
    s = np.asarray(normal_scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise UndefinedMetricError("threshold calibration needs normal validation images; got none")
    return float(np.quantile(s, 1.0 - target_fpr))


ThresholdRule = Literal["f1", "balanced"]


def calibrate_threshold(
    labels: np.ndarray, scores: np.ndarray, *, target_fpr: float = 0.01, rule: ThresholdRule = "f1"
) -> Threshold:
    """With anomalies in the validation set the best F1 (``rule="f1"``, right when validation's
    defect share matches the line's) or the best balanced accuracy (``"balanced"``, independent of
    that share); with normal images only, a normal-score quantile at ``target_fpr``."""
    y, s = _as_arrays(labels, scores)
    n_anomalous = int(y.sum())
    n_normal = y.size - n_anomalous
    target: float | None = None
    if n_anomalous and n_normal:
        method = "balanced" if rule == "balanced" else "f1_optimal"
        value = balanced_threshold(y, s) if rule == "balanced" else f1_optimal_threshold(y, s)
    else:
        method, target = "normal_quantile", target_fpr
        value = quantile_threshold(s[y == 0], target_fpr)
    return threshold_record(y, s, value, method, target)


def fixed_threshold(labels: np.ndarray, scores: np.ndarray, value: float) -> Threshold:
    """A threshold someone chose (``agad calibrate --threshold``), with what it means on validation."""
    y, s = _as_arrays(labels, scores)
    return threshold_record(y, s, value, "given", None)


def threshold_record(
    y: np.ndarray, s: np.ndarray, value: float, method: str, target: float | None
) -> Threshold:
    n_anomalous = int(y.sum())
    n_normal = y.size - n_anomalous
    at = binary_metrics(y, s, value)
    return Threshold(
        value=value,
        method=method,
        target_fpr=target,
        n_normal=n_normal,
        n_anomalous=n_anomalous,
        val_f1=at.f1 if n_anomalous and n_normal else None,
        val_fpr=at.fpr,
        val_fpr_interval=wilson_interval(at.fp, n_normal),
    )


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a rate ``hits / n`` (95 % by default); (0, 1) when ``n`` is 0.

    A false-positive rate measured on 80 validation normals is 1 % give or take 2 %: the interval
    says so, where the point estimate alone would not."""
    if n <= 0:
        return 0.0, 1.0
    rate = hits / n
    middle = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(middle - half)), min(1.0, float(middle + half))


def score_report(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Everything ``agad evaluate`` prints: AUROC, AP (None when a class is missing), counts, rates."""
    y, s = _as_arrays(labels, scores)
    both = 0 < int(y.sum()) < y.size
    report: dict[str, Any] = {
        "n": int(y.size),
        "n_normal": int(y.size - y.sum()),
        "n_anomalous": int(y.sum()),
        "auroc": auroc(y, s) if both else None,
        "average_precision": average_precision(y, s) if both else None,
    }
    report.update(binary_metrics(y, s, threshold).as_dict())
    return report
