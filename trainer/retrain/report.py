"""What one retrain did, written into the candidate's directory: numbers, and both ROC curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from trainer.metrics import auroc, binary_metrics, roc_curve


def compare(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """AUROC (None without both classes) and the flags' precision and recall at ``threshold``."""
    both = bool((labels == 1).any() and (labels == 0).any())
    at = binary_metrics(labels, scores, threshold)
    return {
        "auroc": auroc(labels, scores) if both else None,
        "threshold": threshold,
        "precision": at.precision,
        "recall": at.recall,
        "flagged": int((scores >= threshold).sum()),
        "n_normal": int((labels == 0).sum()),
        "n_anomalous": int((labels == 1).sum()),
    }


def write_report(
    directory: Path, report: dict[str, Any], curves: dict[str, tuple[np.ndarray, np.ndarray]]
) -> list[Path]:
    """``report.json``, ``report.md`` and ``roc.png`` (one curve per model) under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    before, after = report["current"], report["candidate"]
    lines = [
        f"# Retrain {report['candidate_version']} (from {report['current_version']})",
        "",
        f"Decision: **{report['decision']}**: {report['reason']}",
        "",
        f"Labels read: {report['labels']['total']} ({report['labels']['new']} new); "
        + ", ".join(f"{k} {v}" for k, v in report["labels"]["counts"].items()),
        "",
        "| on the holdout | current | candidate |",
        "|---|---|---|",
    ]
    for key in ("auroc", "precision", "recall", "flagged", "threshold"):
        lines.append(f"| {key} | {_cell(before[key])} | {_cell(after[key])} |")
    (directory / "report.md").write_text("\n".join(lines) + "\n")
    written = [directory / "report.json", directory / "report.md"]
    if all(len(np.unique(labels)) == 2 for labels, _ in curves.values()):
        written.append(_plot(directory / "roc.png", curves, report))
    return written


def _plot(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], report: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 5))
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        axis.plot(fpr, tpr, label=f"{name} (AUROC {auroc(labels, scores):.3f})")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(
        xlabel="false-positive rate",
        ylabel="true-positive rate",
        title=f"Holdout: {report['candidate_version']}",
    )
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
