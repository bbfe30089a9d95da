"""The short chaos run as part of the normal test run: a few faults, hostile payloads, a small fuzz
and the security checks against a private stack (tests/chaos/run.py --short, <= 3 min)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from infra.settings import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def test_short_chaos_run_loses_nothing_and_keeps_every_process_alive() -> None:
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.chaos.run", "--short"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=900)
    finally:   # the test suite leaves no private stack running behind it
        subprocess.run([sys.executable, "-m", "tests.chaos.run", "--down"], cwd=REPO_ROOT, capture_output=True,
                       timeout=300)
    report = REPO_ROOT / ".stack" / "chaos" / "report.md"
    assert proc.returncode == 0, (report.read_text() if report.is_file() else "") + proc.stderr[-3000:]
