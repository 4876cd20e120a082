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
