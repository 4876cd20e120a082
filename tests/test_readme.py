"""The README's configuration table is generated from the settings and must not drift from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_configuration_table_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "config_table.py"), "--check", str(REPO / "README.md")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _table_names(heading: str) -> set[str]:
    """The backticked names in the first column of the README table right after ``heading``."""
    text = (REPO / "README.md").read_text()
    table = text[text.index(heading) :].split("\n\n", 2)[1]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        first = row.split("|")[1]
        names |= {part.split("{")[0] for part in first.split("`")[1::2]}
    return names


def test_metrics_table_names_every_metric() -> None:
    from agad_stream.stream.metrics import Metrics

    families = Metrics().registry.collect()
    exposed = {f"{f.name}_total" if f.type == "counter" else f.name for f in families}
    assert _table_names("Metrics (`AGAD_SCORER__METRICS_PORT`") == exposed


def test_review_table_names_every_field() -> None:
    import numpy as np

    from agad_stream.review.queue import ReviewItem, _fields

    item = ReviewItem("f", "c", 1, 0.5, 0.4, "v", b"x", "image/png", np.zeros((4, 4), np.float32))
    assert _table_names("per flagged frame the hash") == {*_fields(item), "entry_id"}  # entry_id: by Redis


def test_results_tables_are_generated_from_the_run_files() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "render.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
