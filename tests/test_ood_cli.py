"""`tsfm ood-split` through the real CLI: --list, recipes, --json, exit codes, nothing written."""

from __future__ import annotations

import json

import polars as pl
import pytest
from ood_plant import make_ingest_dir

from tsfm_cli.drift import FAMILIES


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return make_ingest_dir(root / "clean", lines=1, machines=2, sensors=("temperature",))


def test_list_prints_every_family(tsfm):
    result = tsfm("ood-split", "--list")
    assert result.returncode == 0, result.stderr
    for name, family in FAMILIES.items():
        assert name in result.stdout
        for param in family.params:
            assert param in result.stdout


def test_recipe_and_options_with_json(tsfm, clean, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "ood-split:\n"
        "  context_length: 256\n"
        "  horizons: [32, 64]\n"
        "  families: [level_shift, missing_bursts]\n"
        "  heldout: [machine]\n"
        "  custom:\n"
        '    late: "hour(timestamp) >= 12"\n'
    )
    out = tmp_path / "splits"
    args = ["ood-split", clean, "-o", out, "--config", recipe, "--seed", "3"]
    args += ["--severity", "1", "--severity", "4"]
    result = tsfm(*args, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["out_dir"] == str(out) and summary["context_length"] == 256
    names = [row["scenario"] for row in summary["scenarios"]]
    assert names[:2] == ["id", "future"] and names[2].startswith("heldout:machine=m")
    assert names[3:] == [
        "custom:late",
        "level_shift:1",
        "level_shift:4",
        "missing_bursts:1",
        "missing_bursts:4",
        "val",
    ]
    evals = pl.read_parquet(out / "eval.parquet")
    assert sorted(evals["horizon"].unique()) == [32, 64]
    assert (evals["context"].list.len() == 256).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 3 and manifest["config"]["severities"] == [1.0, 4.0]
    again = tsfm(*args, "--quiet")
    assert again.returncode == 0 and again.stdout == "" and again.stderr == ""


def test_default_output_is_splits_next_to_input(tsfm, clean):
    result = tsfm("ood-split", clean, "--family", "ramp", "--horizon", "32", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (clean.parent / "splits" / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "meltdown"], "unknown drift family 'meltdown'"),
        (["--severity", "20"], "out of range"),
        (["--heldout", "site"], "group key 'site' is not a column"),
        (["--onset", "later"], "onset"),
        (["--val-fraction", "1.5"], "val_fraction"),
    ],
)
def test_bad_options_exit_2_and_write_nothing(tsfm, clean, tmp_path, args, message):
    out = tmp_path / "bad"
    result = tsfm("ood-split", clean, "-o", out, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()


def test_val_fraction_option(tsfm, clean, tmp_path):
    out = tmp_path / "noval"
    args = ["--val-fraction", "0", "--family", "ramp", "--horizon", "32", "--json"]
    result = tsfm("ood-split", clean, "-o", out, *args)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["val_windows"] == 0
    assert set(pl.read_parquet(out / "eval.parquet")["split"]) == {"test"}


def test_not_an_ingest_dir_exits_2(tsfm, tmp_path):
    (tmp_path / "raw").mkdir()
    result = tsfm("ood-split", tmp_path / "raw", "-o", tmp_path / "out")
    assert result.returncode == 2
    assert "not a tsfm stage directory" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_recipe_key_exits_2(tsfm, clean, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("context_len: 64\n")
    result = tsfm("ood-split", clean, "-o", tmp_path / "o", "--config", recipe)
    assert result.returncode == 2 and "context_len" in result.stderr
    assert f"{recipe}:1" in result.stderr
