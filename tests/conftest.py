"""Shared test helpers. Tests never read ../shared: they use sample_data/ or generated fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_tsfm(*args: str, cwd: Path | None = None, timeout: float = 600, **kwargs):
    """Run the real CLI in a subprocess (`python -m tsfm_cli`) against this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("COLUMNS", "200")
    return subprocess.run(
        [sys.executable, "-m", "tsfm_cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


@pytest.fixture
def tsfm():
    return run_tsfm
