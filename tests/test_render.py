"""The results tables count a run as today's default by what the default trains at the run's size."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from benchmarks.render import configuration, method
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
