"""Group keys travel: eval.parquet line/machine columns → per-group results rows → laws."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from tests.splits_fixture import make_splits
from tsfm_cli.fit import FitConfig, run_fit
from tsfm_cli.groupkeys import (
    GROUP_KEY,
    all_window_rows,
    breakdown,
    eval_group_keys,
    rows_for_grouping,
)
from tsfm_cli.train import TrainConfig, run_train

torch.set_num_threads(1)


def test_eval_group_keys_are_the_other_string_columns(tmp_path):
    evals = pl.read_parquet(make_splits(tmp_path / "s", n_series=2, windows=1) / "eval.parquet")
    assert eval_group_keys(evals) == ["line", "machine"]


def test_breakdown_averages_each_group_over_its_own_windows():
    keys = {
        "line": np.array(["a", "a", "b", "b"], dtype=object),
        "machine": np.array(["m1"] * 4, dtype=object),  # one value: nothing to break down
    }
    rows = breakdown(keys, {"crps": np.array([1.0, 3.0, 10.0, np.nan])})
    assert rows == [
        {GROUP_KEY: "line", "line": "a", "n_windows": 2, "crps": 2.0},
        {GROUP_KEY: "line", "line": "b", "n_windows": 2, "crps": 10.0},  # non-finite left out
    ]


def test_rows_for_grouping_keeps_one_layer():
    frame = pl.DataFrame(
        {
            "scenario": ["id"] * 5,
            GROUP_KEY: [None, "line", "line", "machine", "machine"],
            "line": [None, "a", "b", None, None],
            "machine": [None, None, None, "m1", "m2"],
        }
    )
    assert rows_for_grouping(frame, None).height == 1
    assert rows_for_grouping(frame, ["scenario"]).height == 1
    assert rows_for_grouping(frame, ["scenario", "line"])["line"].to_list() == ["a", "b"]
    assert rows_for_grouping(frame, ["machine"])["machine"].to_list() == ["m1", "m2"]
    assert all_window_rows(frame).height == 1
    plain = frame.drop(GROUP_KEY)
    assert rows_for_grouping(plain, ["line"]).equals(plain)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("groups")
    splits = make_splits(root / "splits", n_series=4, windows=3)
    cfg = TrainConfig(
        archs=["encoder"],
        sizes=[{"d_model": 16, "layers": 1}],
        data_budgets=[0.25, 0.5, 1.0],
        patch_size=16,
        steps=6,
        batch_size=4,
        warmup_steps=2,
        checkpoints=1,
        eval_windows=64,
        eval_samples=4,
    )
    run_train(splits, root / "results", cfg, command=["test"])
    return root / "results"


def test_results_carry_the_group_keys(results):
    rows = pl.read_parquet(results / "results.parquet")
    assert {GROUP_KEY, "line", "machine"} <= set(rows.columns)
    baselines = rows.filter(pl.col("arch") == "baseline")
    assert set(baselines.filter(pl.col(GROUP_KEY) == "line")["line"]) == {"line1", "line2"}
    rows = rows.filter(pl.col("arch") != "baseline")
    every = rows.filter(pl.col(GROUP_KEY).is_null())
    assert every.height == 3 * 3 * 2  # runs × scenarios (id, level_shift:2, val) × horizons
    lines = rows.filter(pl.col(GROUP_KEY) == "line")
    assert lines.height == 3 * 3 * 2 * 2 and set(lines["line"]) == {"line1", "line2"}
    machines = rows.filter(pl.col(GROUP_KEY) == "machine")
    assert set(machines["machine"]) == {"m0", "m1", "m2", "m3"}
    # 4 series on 2 lines: each line holds half of every scenario's windows
    joined = lines.join(every, on=["run_id", "step", "scenario", "horizon"], suffix="_all")
    assert (joined["n_windows"] * 2 == joined["n_windows_all"]).all()
    # the all-window metric is the window-weighted mean of the per-line ones
    both = joined.group_by("run_id", "step", "scenario", "horizon").agg(
        (pl.col("mae") * pl.col("n_windows")).sum() / pl.col("n_windows").sum(),
        pl.col("mae_all").first(),
    )
    np.testing.assert_allclose(both["mae"].to_numpy(), both["mae_all"].to_numpy(), rtol=1e-6)


def test_fit_by_line_answers_per_line(results, tmp_path, tsfm):
    fast = {"xs": ["D"], "laws": ["power"], "n_boot": 20, "plots": False}
    by_line = run_fit(
        [results], tmp_path / "by_line", FitConfig(group_by=["scenario", "line"], **fast)
    )
    laws = pl.read_parquet(tmp_path / "by_line" / "laws.parquet")
    assert by_line["group_by"] == ["scenario", "line"]
    assert set(laws["line"]) == {"line1", "line2"}
    # test scenarios (id, level_shift:2) × lines: validation rows choose checkpoints, they are
    # not a scenario of their own in the laws
    assert by_line["groups"] == 2 * 2
    # `--group-by line` alone: per line within the default groups (scenario, horizon, …)
    only_line = run_fit([results], tmp_path / "only_line", FitConfig(group_by=["line"], **fast))
    assert only_line["group_by"][-1] == "line" and "scenario" in only_line["group_by"]
    assert only_line["groups"] == by_line["groups"] * 2  # × the fixture's 2 horizons
    # without a group key the fit reads the all-window rows only (one group per scenario)
    plain = run_fit([results], tmp_path / "plain", FitConfig(group_by=["scenario"], **fast))
    # the same through the real CLI
    recipe = tmp_path / "fit.yaml"
    recipe.write_text("fit:\n  xs: [D]\n  laws: [power]\n  n_boot: 20\n  plots: false\n")
    out = tmp_path / "cli"
    args = ["-o", out, "-c", recipe, "--group-by", "arch,scenario,line", "--json"]
    result = tsfm("fit", results, *args)
    assert result.returncode == 0, result.stderr
    cli_laws = pl.read_parquet(out / "laws.parquet").filter(pl.col("arch") == "encoder")
    assert set(cli_laws["line"]) == {"line1", "line2"}
    # one group per test scenario; the laws' rows are the 3 runs' test rows (baselines and
    # validation rows are not points of a law)
    assert plain["groups"] == 2 and plain["rows"] == 3 * 2 * 2
