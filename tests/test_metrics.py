"""trainer.metrics against scikit-learn (a test-only dependency), ties included."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from trainer.metrics import (
    UndefinedMetricError,
    auroc,
    auroc_standard_error,
    average_precision,
    balanced_threshold,
    binary_metrics,
    calibrate_threshold,
    f1_optimal_threshold,
    quantile_threshold,
    roc_curve,
    score_report,
)


def _cases() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    cases = []
    for n in (2, 5, 17, 200, 1000):
        for tie_levels in (None, 3, 10):
            y = rng.integers(0, 2, n)
            y[0], y[-1] = 0, 1  # both classes present
            s = rng.normal(size=n) + y
            if tie_levels is not None:
                s = np.round(s * tie_levels / 4) / tie_levels  # many tied scores
            cases.append((y, s))
    cases.append((np.array([0, 0, 1, 1]), np.array([0.5, 0.5, 0.5, 0.5])))  # all tied
    cases.append((np.array([0, 1] * 50), np.repeat([1.0, 2.0], 50)))
    return cases


@pytest.mark.parametrize(("y", "s"), _cases())
def test_ranking_metrics_match_sklearn(y: np.ndarray, s: np.ndarray) -> None:
    assert auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    for drop in (True, False):
        ours = roc_curve(y, s, drop_intermediate=drop)
        theirs = skm.roc_curve(y, s, drop_intermediate=drop)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b)


@pytest.mark.parametrize(("y", "s"), _cases()[::4])
def test_binary_metrics_match_sklearn(y: np.ndarray, s: np.ndarray) -> None:
    for threshold in (np.median(s), s.min(), s.max(), s.max() + 1):
        m = binary_metrics(y, s, threshold)
        pred = (s >= threshold).astype(int)
        tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
        assert (m.tp, m.fp, m.tn, m.fn) == (tp, fp, tn, fn)
        assert m.precision == pytest.approx(skm.precision_score(y, pred, zero_division=0))
        assert m.recall == pytest.approx(skm.recall_score(y, pred, zero_division=0))
        assert m.f1 == pytest.approx(skm.f1_score(y, pred, zero_division=0))
        assert m.accuracy == pytest.approx(skm.accuracy_score(y, pred))


def _best_f1(y: np.ndarray, s: np.ndarray) -> float:
    """The best F1 over all thresholds, from scikit-learn's precision-recall curve."""
    precision, recall, _ = skm.precision_recall_curve(y, s)
    with np.errstate(invalid="ignore"):
        return float(np.nanmax(2 * precision * recall / (precision + recall)))


@pytest.mark.parametrize(("y", "s"), _cases())
def test_f1_optimal_threshold_is_optimal(y: np.ndarray, s: np.ndarray) -> None:
    t = f1_optimal_threshold(y, s)
    assert binary_metrics(y, s, t).f1 == pytest.approx(_best_f1(y, s))


@pytest.mark.parametrize(("y", "s"), _cases())
def test_balanced_threshold_is_optimal(y: np.ndarray, s: np.ndarray) -> None:
    m = binary_metrics(y, s, balanced_threshold(y, s))
    fpr, tpr, _ = skm.roc_curve(y, s)
    assert m.recall - m.fpr == pytest.approx(float(np.max(tpr - fpr)))


def test_balanced_threshold_ignores_the_anomaly_share() -> None:
    """F1 moves its threshold when anomalies are rarer; balanced accuracy does not."""
    rng = np.random.default_rng(0)
    normal, anomalous = rng.normal(0, 1, 2000), rng.normal(2, 1, 2000)
    y_many, y_few = np.r_[np.zeros(2000), np.ones(2000)], np.r_[np.zeros(2000), np.ones(40)]
    s_many, s_few = np.r_[normal, anomalous], np.r_[normal, anomalous[:40]]
    assert abs(balanced_threshold(y_many, s_many) - balanced_threshold(y_few, s_few)) < 0.5
    assert f1_optimal_threshold(y_few, s_few) - f1_optimal_threshold(y_many, s_many) > 0.5


def test_f1_threshold_sits_between_classes_when_separable() -> None:
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.9, 1.0])
    assert f1_optimal_threshold(y, s) == pytest.approx(0.6)


def test_calibration_uses_f1_with_anomalies_and_quantile_without() -> None:
    rng = np.random.default_rng(1)
    normals = rng.normal(size=1000)
    t = calibrate_threshold(np.zeros(1000, dtype=int), normals, target_fpr=0.05)
    assert t.method == "normal_quantile" and t.target_fpr == 0.05 and t.val_f1 is None
    assert t.value == pytest.approx(np.quantile(normals, 0.95))
    assert t.val_fpr == pytest.approx(0.05, abs=0.002)
    assert t.n_normal == 1000 and t.n_anomalous == 0

    y = np.r_[np.zeros(1000, dtype=int), np.ones(20, dtype=int)]
    s = np.r_[normals, rng.normal(size=20) + 4]
    t = calibrate_threshold(y, s)
    assert t.method == "f1_optimal" and t.target_fpr is None and t.n_anomalous == 20
    assert t.val_f1 == pytest.approx(_best_f1(y, s))
    assert t.model_dump()["value"] == t.value

    b = calibrate_threshold(y, s, rule="balanced")
    assert b.method == "balanced" and b.value == pytest.approx(balanced_threshold(y, s))
    assert b.value < t.value  # 2 % anomalies: F1 keeps false alarms down, balanced accuracy catches more


def test_undefined_metrics_raise_clear_errors() -> None:
    y, s = np.zeros(5, dtype=int), np.arange(5.0)
    with pytest.raises(UndefinedMetricError, match="5 normal, 0 anomalous"):
        auroc(y, s)
    with pytest.raises(UndefinedMetricError):
        average_precision(np.ones(3, dtype=int), np.arange(3.0))
    with pytest.raises(UndefinedMetricError, match="normal validation"):
        quantile_threshold(np.array([]))
    with pytest.raises(ValueError, match="0 \\(normal\\) or 1"):
        auroc(np.array([0, 2]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="NaN"):
        auroc(np.array([0, 1]), np.array([0.0, np.nan]))


def test_score_report_schema() -> None:
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    r = score_report(y, s, 0.3)
    assert r["auroc"] == pytest.approx(0.75) and r["n_anomalous"] == 2
    assert {"average_precision", "precision", "recall", "f1", "accuracy", "tp", "fp", "tn", "fn"} <= set(r)
    assert score_report(np.zeros(2, dtype=int), np.array([0.1, 0.2]), 0.15)["auroc"] is None


@pytest.mark.parametrize(("n_anomalous", "shift"), [(8, 1.0), (32, 2.0)])
def test_auroc_standard_error_matches_the_spread_of_repeated_draws(n_anomalous: int, shift: float) -> None:
    rng = np.random.default_rng(1)
    n_normal = 150
    y = np.r_[np.zeros(n_normal, dtype=int), np.ones(n_anomalous, dtype=int)]
    draws = [auroc(y, rng.normal(size=y.size) + shift * y) for _ in range(2000)]
    predicted = auroc_standard_error(float(np.mean(draws)), n_anomalous, n_normal)
    # Hanley & McNeil assume exponential-shaped scores; on bell-shaped ones they err on the safe side.
    assert float(np.std(draws)) <= predicted <= 1.4 * float(np.std(draws))
    with pytest.raises(UndefinedMetricError, match="0 anomalous"):
        auroc_standard_error(0.9, 0, n_normal)
