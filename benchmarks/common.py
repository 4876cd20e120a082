"""What every benchmark run records beside its numbers: command, code version, machine, time."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.data import DataSet, load_dataset
from trainer.evaluate import evaluation_report
from trainer.metrics import balanced_threshold

RESULTS = Path(__file__).resolve().parent / "results"
DEV_GAMMA = 0.05


VECTOR_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
"""CPU flags that decide how fast ONNX Runtime's kernels run, INT8 above all: without a VNNI flag,
8-bit products are summed in 16 bits (slower, and they can saturate)."""


def machine() -> dict[str, Any]:
    """CPU model and vector features, core count, torch threads and versions: enough to compare
    runs across days (one model name can stand for CPUs of several generations)."""
    model, flags = "unknown", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu_features": [f for f in VECTOR_FEATURES if f in flags],
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_parser(description: str | None) -> argparse.ArgumentParser:
    """A run script's parser with the two arguments every run file needs: its table and its name."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--table", required=True, help="results table (a folder of benchmarks/results)")
    parser.add_argument("--name", required=True, help="run file name within the table")
    return parser


def write_result(table: str, name: str, record: dict[str, Any]) -> Path:
    """One JSON file per run, so a table can be completed run by run over several days."""
    path = RESULTS / table / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "table": table,
        "name": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": git_commit(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **record,
    }
    path.write_text(json.dumps(record, indent=1, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))


def dev_set(dataset: DataSet) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels variants are chosen on: the validation split when it holds labelled
    anomalies, else its normals plus :func:`dev_anomalies`."""
    val = dataset.val
    if (val.labels == 1).any():
        return val.images, val.labels
    extra = dev_anomalies(dataset.spec, dataset.image_size, dataset.seed, dataset.channels)
    normals = val.images[val.labels == 0]
    labels = np.r_[np.zeros(len(normals), dtype=np.int64), np.ones(len(extra), dtype=np.int64)]
    return np.concatenate([normals, extra]), labels


def dev_anomalies(spec: str, image_size: int, seed: int, channels: int | None = None) -> np.ndarray:
    """Labelled anomalies for choosing among variants at gamma = 0, never from the test split.

    They are the train and validation anomalies the same data set would label at gamma = 0.05: a
    gamma = 0 model never trains on them, and the test split is disjoint from that pool.
    """
    labelled: DataSet = load_dataset(spec, image_size, gamma=DEV_GAMMA, seed=seed, channels=channels)
    images = [split.images[split.labels == 1] for split in (labelled.train, labelled.val)]
    return np.concatenate(images)


def at_balanced_threshold(
    dataset: DataSet, val_scores: np.ndarray, test_scores: np.ndarray
) -> dict[str, Any] | None:
    """Test metrics at the validation threshold of best balanced accuracy (None without val anomalies).

    The F1-optimal threshold depends on validation's anomaly share (5 % at gamma 0.05), the test
    split's differs (elpv: about 60 %); this prior-free threshold compares fairly with accuracies
    published on other splits.
    """
    if not (dataset.val.labels == 1).any():
        return None
    threshold = balanced_threshold(dataset.val.labels, val_scores)
    report = evaluation_report(dataset.test, test_scores, threshold, dataset.hard_groups)
    return {"threshold": threshold, **{k: report[k] for k in ("accuracy", "recall", "fpr", "f1")}}
