"""Shared test helpers. Tests never read ../shared: they use sample_data/ or generated fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


TSFM = [sys.executable, "-m", "tsfm_cli"]  # the real CLI, as a child process


def tsfm_env() -> dict[str, str]:
    """The environment in which a child process imports this checkout's tsfm_cli."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("COLUMNS", "200")
    return env


def run_tsfm(*args: str, cwd: Path | None = None, timeout: float = 600, **kwargs):
    """Run the real CLI in a subprocess (`python -m tsfm_cli`) against this checkout."""
    return subprocess.run(
        [*TSFM, *map(str, args)],
        cwd=cwd,
        env=tsfm_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


@pytest.fixture
def tsfm():
    return run_tsfm
