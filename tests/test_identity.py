"""Identity is content: the same data and settings give the same fingerprints, run ids and
results anywhere, at any time; a rebuilt identical upstream or an ingest rerun whose cleaned data
did not change reruns nothing downstream."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import REPO_ROOT, run_tsfm
from tests.ingest_helpers import read_series
from tsfm_cli.pipeline import STAGE_NAMES

RECIPE = """\
run:
  sources: [{sources}]
  workdir: {workdir}
ingest:
  timezone: Europe/Berlin
  exclude_sensors: ["debug_*"]
  files:
    "line2/machine2_*": {{timezone: UTC}}
    "line3/*.dat":
      start: "2024-10-21T00:00:00Z"
      interval: 3m
      columns: [temperature, vibration_rms, pressure, motor_current, flow]
ood-split:
  context_length: 64
  horizons: [32]
  heldout: ["line=line3"]
  families: [level_shift]
  severities: [2]
  max_windows: 4
  synthetic_windows: 2
embed-bench:
  strategies: [patch]
  normalisations: [std]
  n_seeds: 2
  steps: 4
  eval_windows: 2
  eval_samples: 4
train:
  archs: [encoder]
  sizes: [1K, {{d_model: 16, layers: 1}}, {{d_model: 24, layers: 1}}]
  data_budgets: [1.0]
  steps: 6
  batch_size: 8
  warmup_steps: 2
  checkpoints: 2
  eval_windows: 4
  eval_samples: 4
  cpu_threads: 1
fit:
  metrics: [crps]
  n_boot: 20
"""

# what a stage reads downstream, and what must come out the same
DATA = {
    "ingest": ["series/"],  # the dataset: every file, and the table they make
    "ood-split": ["train.parquet", "eval.parquet", "scenarios.parquet"],
    "embed-bench": ["bench.parquet"],
    "train": ["results.parquet"],
    "fit": ["laws.parquet", "curves.parquet"],
}


def _pipeline(root: Path, data_name: str) -> Path:
    data = root / data_name
    shutil.copytree(REPO_ROOT / "sample_data", data)
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE.format(sources=data, workdir=root / "work"))
    return recipe


def _run(recipe: Path, *args: str) -> dict[str, str]:
    result = run_tsfm("run", recipe, "--json", *args, cwd=recipe.parent)
    assert result.returncode == 0, result.stderr
    return {s["stage"]: s["status"] for s in json.loads(result.stdout)["stages"]}


def _run_ids(runs_dir: Path) -> list[str]:
    return sorted(p.name for p in runs_dir.iterdir() if p.is_dir())


def _manifest(work: Path, stage: str) -> dict:
    return json.loads((work / stage / "manifest.json").read_text())


@pytest.fixture(scope="module")
def two_places(tmp_path_factory):
    """The same pipeline in two folders (different paths), run one after the other."""
    a = tmp_path_factory.mktemp("plant_a")
    b = tmp_path_factory.mktemp("site_b") / "elsewhere"
    b.mkdir()
    recipe_a, recipe_b = _pipeline(a, "exports"), _pipeline(b, "data")
    assert _run(recipe_a) == {name: "ran" for name in STAGE_NAMES}
    assert _run(recipe_b) == {name: "ran" for name in STAGE_NAMES}
    return recipe_a, recipe_b


def test_same_data_in_two_folders_gives_same_ids_and_bit_identical_results(two_places):
    work_a, work_b = (r.parent / "work" for r in two_places)
    for stage in STAGE_NAMES:
        ma, mb = _manifest(work_a, stage), _manifest(work_b, stage)
        assert ma["inputs"] != mb["inputs"]  # paths differ: they are recorded...
        assert ma["created_utc"] != mb["created_utc"]  # two times (each run takes seconds)
        assert ma["fingerprint"] == mb["fingerprint"], stage  # ...never hashed
        for name in DATA[stage]:
            if name.endswith("/"):
                files = [n for n in ma["outputs"] if n.startswith(name)]
                assert files and files == [n for n in mb["outputs"] if n.startswith(name)]
                for n in files:
                    assert ma["outputs"][n]["sha256"] == mb["outputs"][n]["sha256"], (stage, n)
                assert read_series(work_a / stage).equals(read_series(work_b / stage))
                continue
            assert ma["outputs"][name]["sha256"] == mb["outputs"][name]["sha256"], (stage, name)
            assert pl.read_parquet(work_a / stage / name).equals(
                pl.read_parquet(work_b / stage / name)
            )
    for stage in ("train", "embed-bench"):
        ids_a, ids_b = _run_ids(work_a / f"{stage}.runs"), _run_ids(work_b / f"{stage}.runs")
        assert ids_a == ids_b and len(ids_a) >= 2
    results = pl.read_parquet(work_a / "train" / "results.parquet")
    trained = results.filter(pl.col("arch") != "baseline")  # baselines have no run folder
    assert sorted(trained["run_id"].unique()) == _run_ids(work_a / "train.runs")


def test_rebuilt_identical_upstream_keeps_ids_and_skips_downstream(two_places):
    recipe, _ = two_places
    work = recipe.parent / "work"
    before = {s: _manifest(work, s) for s in ("embed-bench", "train", "fit")}
    shutil.rmtree(work / "ood-split")
    assert _run(recipe) == {
        "ingest": "skipped",
        "ood-split": "ran",
        "embed-bench": "skipped",
        "train": "skipped",
        "fit": "skipped",
    }
    for stage, manifest in before.items():
        assert _manifest(work, stage) == manifest


def test_ingest_rerun_with_unchanged_cleaned_data_reruns_nothing_downstream(two_places):
    recipe, _ = two_places
    work = recipe.parent / "work"
    downstream = ("ood-split", "embed-bench", "train", "fit")
    before = {s: (work / s / "manifest.json").read_bytes() for s in downstream}
    # a new export whose only sensor is excluded: ingest parses it, the cleaned data is unchanged
    junk = recipe.parent / "exports" / "line1" / "machine9_2024-10.csv"
    junk.write_text("timestamp,debug_counter\n2024-10-21T00:00:00,1\n2024-10-21T00:01:00,2\n")
    statuses = _run(recipe)
    assert statuses == {"ingest": "ran", **{s: "skipped" for s in downstream}}
    assert _manifest(work, "ingest")["summary"]["files_parsed"] == 1
    for stage in downstream:
        assert (work / stage / "manifest.json").read_bytes() == before[stage]
