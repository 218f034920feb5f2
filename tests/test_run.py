"""`tsfm run`: the whole chain on sample_data/ with a reduced quickstart recipe."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import REPO_ROOT, TSFM, run_tsfm, tsfm_env
from tests.ingest_helpers import read_series
from tsfm_cli import schema
from tsfm_cli.pipeline import STAGE_NAMES

RECIPE = REPO_ROOT / "tests" / "data" / "mini_chain.yaml"

DOCUMENTED = {
    ("ingest", "series/"): schema.SERIES_COLUMNS,  # the partitioned dataset, read as one
    ("ingest", "rejects.parquet"): schema.REJECT_COLUMNS,
    ("ood-split", "train.parquet"): schema.SERIES_COLUMNS,
    ("ood-split", "eval.parquet"): schema.EVAL_COLUMNS,
    ("ood-split", "scenarios.parquet"): schema.SCENARIO_COLUMNS,
    ("embed-bench", "bench.parquet"): schema.BENCH_COLUMNS,
    ("train", "results.parquet"): schema.RESULT_COLUMNS,
    ("fit", "laws.parquet"): schema.LAW_COLUMNS,
}


def _recipe(tmp_path: Path, **replace: str) -> Path:
    text = RECIPE.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "chain.yaml"
    path.write_text(text)
    return path


def _run(tmp_path: Path, recipe: Path, *args: str):
    result = run_tsfm("run", recipe, "-w", tmp_path / "work", "--json", *args, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _status(summary: dict) -> dict[str, str]:
    return {stage["stage"]: stage["status"] for stage in summary["stages"]}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("chain")
    recipe = _recipe(tmp_path)
    return tmp_path, recipe, _run(tmp_path, recipe)


def test_every_stage_runs_and_writes_its_documented_artifacts(chain):
    tmp_path, _, summary = chain
    assert _status(summary) == {name: "ran" for name in STAGE_NAMES}
    work = tmp_path / "work"
    for (stage, name), columns in DOCUMENTED.items():
        manifest = json.loads((work / stage / "manifest.json").read_text())
        assert manifest["stage"] == stage
        if name.endswith("/"):
            frame = read_series(work / stage)
            rows = sum(m["rows"] for n, m in manifest["outputs"].items() if n.startswith(name))
        else:
            frame = pl.read_parquet(work / stage / name)
            rows = manifest["outputs"][name]["rows"]
        assert rows == frame.height
        assert frame.height > 0, f"{stage}/{name} is empty"
        missing = set(columns) - set(frame.columns)
        assert not missing, f"{stage}/{name} lacks documented columns {missing}"
    for stage, plot in [
        ("ingest", "quality.png"),
        ("ood-split", "scenarios.png"),
        ("embed-bench", "bench.png"),
        ("fit", "horizon.png"),
    ]:
        assert (work / stage / plot).stat().st_size > 1000
    leftovers = [p.name for p in work.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_in_distribution_loss_falls_with_model_size(chain):
    tmp_path, _, _ = chain
    laws = pl.read_parquet(tmp_path / "work" / "fit" / "laws.parquet")
    alpha = laws.filter(
        (pl.col("scenario") == schema.ID_SCENARIO)
        & (pl.col("x") == "N")
        & (pl.col("law") == "power")
        & (pl.col("coef") == "alpha")
    )
    assert alpha.height == 4  # encoder, decoder × horizons 32, 64
    assert (alpha["value"] > 0).all(), alpha


def test_rerun_with_nothing_changed_skips_every_stage(chain):
    tmp_path, recipe, _ = chain
    started = time.monotonic()
    again = _run(tmp_path, recipe)
    assert _status(again) == {name: "skipped" for name in STAGE_NAMES}
    assert time.monotonic() - started < 60


def test_changed_setting_reruns_that_stage_and_later_ones_only(chain):
    tmp_path, _, _ = chain
    recipe = _recipe(tmp_path, **{"n_boot: 50": "n_boot: 40"})
    assert _status(_run(tmp_path, recipe)) == {
        "ingest": "skipped",
        "ood-split": "skipped",
        "embed-bench": "skipped",
        "train": "skipped",
        "fit": "ran",
    }
    only = _run(tmp_path, recipe, "--only", "fit")
    assert _status(only) == {"fit": "skipped"}
    from_train = _run(tmp_path, recipe, "--from", "train")
    assert list(_status(from_train)) == ["train", "fit"]


def test_bad_recipe_fails_before_any_stage_runs(tmp_path):
    recipe = _recipe(tmp_path, **{"n_boot: 50": "n_boot: 50\n  n_bootstrap: 10"})
    result = run_tsfm("run", recipe, "-w", tmp_path / "work", cwd=REPO_ROOT)
    assert result.returncode == 2
    assert "n_bootstrap" in result.stderr and "chain.yaml" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "work").exists()
    unknown = run_tsfm("run", recipe, "--only", "trian", cwd=REPO_ROOT)
    assert unknown.returncode == 2 and "unknown stage 'trian'" in unknown.stderr


@pytest.mark.parametrize(
    "old, new, key",
    [
        ("timezone: Europe/Berlin", "timezone: Mars/Base", "timezone"),
        ("context_length: 128", "context_length: 1", "context_length"),
    ],
)
def test_bad_recipe_value_fails_before_any_stage_runs(tmp_path, old, new, key):
    recipe = _recipe(tmp_path, **{old: new})
    result = run_tsfm("run", recipe, "-w", tmp_path / "work", cwd=REPO_ROOT)
    assert result.returncode == 2
    assert key in result.stderr and "chain.yaml" in result.stderr
    assert not (tmp_path / "work").exists()


def test_killed_mid_stage_then_rerun_finishes_without_redoing_finished_stages(tmp_path):
    recipe = _recipe(tmp_path)
    work = tmp_path / "work"
    proc = subprocess.Popen(
        [*TSFM, "run", str(recipe), "-w", str(work), "--quiet"],
        cwd=REPO_ROOT,
        env=tsfm_env(),
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    try:
        while not (work / "train.runs").exists():
            assert proc.poll() is None, "tsfm run ended before train started"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert not (work / "train" / "manifest.json").exists()

    summary = _run(tmp_path, recipe)
    assert _status(summary) == {
        "ingest": "skipped",
        "ood-split": "skipped",
        "embed-bench": "skipped",
        "train": "ran",
        "fit": "ran",
    }
    results = pl.read_parquet(work / "train" / "results.parquet")
    assert results.filter(pl.col("status") == "ok").height == results.height
    assert not [p.name for p in work.iterdir() if ".tmp-" in p.name]
    shutil.rmtree(work)
