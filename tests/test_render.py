"""The results tables: which run counts as today's default, and how the small-data rows average seeds."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from benchmarks.render import configuration, method, small_table
from trainer.agad.variant import PRESETS, preset


def _run(stretched: int, normals: int | None) -> dict[str, Any]:
    """A run file of the default in batches of 64 with ``stretched`` of each 256 stretched."""
    variant = replace(preset("default", batch_size=64), stretched_anomalies=stretched // 4)
    run: dict[str, Any] = {"variant": variant.to_dict()}
    if normals is not None:
        run["data_summary"] = {"splits": {"train": {"normal": normals}}}
    return run


def test_a_run_is_todays_default_only_where_it_trained_what_the_default_trains_at_its_size() -> None:
    line = PRESETS["default"].stretch_from_normals
    assert method(_run(32, line)) == "default"
    assert method(_run(0, line - 1)) == "default"
    assert method(_run(0, line)) == configuration(_run(0, None)["variant"])  # too large not to stretch
    assert method(_run(32, line - 1)) == configuration(_run(32, None)["variant"])
    assert method(_run(32, None)) != "default"  # a run that does not say its size


def _small(name: str, seed: int, auroc: float, finished: str = "2026-12-07T00:00:00") -> dict[str, Any]:
    """A small-data run file of method ``name`` on elpv with 301 good cells."""
    run = {"table": "small", "data": "elpv", "image_size": 64, "normals": 301, "method": name}
    run.update(seed=seed, auroc=auroc, finished_at=finished)
    if name == "default":
        run["training"] = {"seconds": 100.0, "steps": 1000}
    return run


def test_a_small_data_row_averages_each_seed_once_and_counts_them() -> None:
    runs = [
        _small("default", 0, 0.70), _small("knn", 0, 0.60),
        _small("default", 1, 0.80), _small("knn", 1, 0.70),
        _small("default", 1, 0.90, finished="2026-12-08T00:00:00"),  # a rerun replaces seed 1's
        _small("default", 2, 0.99),  # no 5-NN with this seed: not a complete pair, left out
    ]  # fmt: skip
    row = small_table(runs).splitlines()[2].split(" | ")
    assert row[:5] == ["| elpv 64 px", "301", "1", "2", "0.8000"]
    assert row[-3] == "+0.1500"
