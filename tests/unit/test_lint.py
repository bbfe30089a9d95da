"""The code base has no unused imports, undefined names or unsorted imports (ruff, configured in pyproject)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_ruff_finds_nothing() -> None:
    root = Path(__file__).parents[2]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", str(root)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
