"""`kill -9` in the middle of a run: the next invocation resumes from the last checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import polars as pl
import torch

from tests.conftest import TSFM, tsfm_env
from tests.splits_fixture import make_splits
from tsfm_cli.recipe import build_config, load_section
from tsfm_cli.train import TrainConfig, run_train
from tsfm_cli.train.sweep import checkpoint_steps

torch.set_num_threads(1)

RECIPE = """train:
  schedule: steps
  archs: [decoder]
  sizes: [{d_model: 16, layers: 1}]
  patch_size: 16
  steps: 600
  batch_size: 4
  warmup_steps: 10
  checkpoints: 4
  eval_windows: 2
  eval_samples: 4
  cpu_threads: 1
"""


def test_kill_9_then_resume(tmp_path):
    splits = make_splits(tmp_path / "splits")
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "results"
    child = subprocess.Popen(
        [*TSFM, "train", str(splits), "-o", str(out), "-c", str(recipe)],
        env=tsfm_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = tmp_path / "results.runs"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and not list(runs.glob("*/last.ckpt")):
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    (ckpt,) = runs.glob("*/last.ckpt")
    run_dir = ckpt.parent
    assert not (run_dir / "done.json").exists()
    assert not out.exists()  # the results directory only appears complete

    values, source = load_section(recipe, "train")
    summary = run_train(splits, out, build_config(TrainConfig, values, source), command=["t"])
    assert summary["runs_ok"] == 1 and summary["runs_trained"] == 1
    done = json.loads((run_dir / "done.json").read_text())
    steps = checkpoint_steps(600, 4)
    assert done["resumed_from"] in steps[:-1] and done["steps"] == 600
    rows = pl.read_parquet(out / "results.parquet").filter(pl.col("arch") != "baseline")
    assert sorted(set(rows["step"])) == steps  # every checkpoint exactly once
    every = rows.filter(pl.col("group_key").is_null())  # rows over all windows, not per line
    assert every.group_by("step", "scenario", "horizon").len()["len"].max() == 1
    windows = pl.read_parquet(out / "window_metrics.parquet").filter(pl.col("arch") != "baseline")
    # resumed like the results
    assert sorted(set(windows["step"])) == steps
    per_window = windows.group_by("step", "scenario", "horizon", "series_id", "window_id").len()
    assert per_window["len"].max() == 1
