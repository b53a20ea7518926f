"""README's speed tables are the last ``make bench`` run's results, not numbers typed by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_speed_tables_match_the_results_files() -> None:
    process = subprocess.run(
        [sys.executable, "benchmarks/readme_table.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode == 0, process.stderr
