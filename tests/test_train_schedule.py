"""`tsfm train` schedules (D is a token budget), validation-only checkpoint selection."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch

from tests.splits_fixture import make_splits
from tests.test_train import TINY, tiny_config
from tsfm_cli.errors import BadInputError
from tsfm_cli.train import grid, run_sweep, run_train
from tsfm_cli.train.budget import plan_run, tokens_per_window
from tsfm_cli.train.config import RunSpec
from tsfm_cli.train.select import select_checkpoints
from tsfm_cli.train.sweep import load_sweep_data
from tsfm_cli.ui import Reporter

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return make_splits(tmp_path_factory.mktemp("schedule") / "splits")


def test_four_times_the_data_trains_at_least_twice_the_tokens(splits, tmp_path):
    cfg = tiny_config(
        schedule="epochs", epochs=2.0, archs=["decoder"], data_budgets=[0.25, 1.0], checkpoints=2
    )
    data = load_sweep_data(splits, cfg)
    rows, runs = run_sweep(grid(cfg), data, cfg, tmp_path / "runs")
    final = (
        rows.filter(pl.col("final"))
        .group_by("data_points")
        .agg(pl.col("tokens", "epochs", "step").first())
    )
    small, large = final.sort("data_points").to_dicts()
    assert large["data_points"] == 4800 and 1200 - 96 < small["data_points"] <= 1200  # ~4×
    assert large["tokens"] >= 2 * small["tokens"]
    # each run made its two passes (rounded up to whole batches) and stopped at its own end
    window, batch = 64 + 32, 8
    for run in (small, large):
        assert run["step"] == math.ceil(2.0 * run["data_points"] / window / batch)
        assert 2.0 <= run["epochs"] < 2.0 + batch * window / run["data_points"] + 1e-9
    # and the paper's fixed length is still there, explicitly: same tokens whatever the data
    fixed = tiny_config(schedule="steps", steps=5, archs=["decoder"], data_budgets=[0.25, 1.0])
    rows, _ = run_sweep(grid(fixed), data, fixed, tmp_path / "fixed")
    assert rows.filter(pl.col("final"))["tokens"].n_unique() == 1


def test_isoflop_runs_spend_their_compute_budget():
    cfg = tiny_config(schedule="isoflop", compute_budgets=[1e9, 4e9], sizes=["1K", TINY])
    specs = grid(cfg)
    assert len(specs) == 2 * 2 * 2  # archs × sizes × compute budgets (no data budgets)
    assert all(s.compute_budget in (1e9, 4e9) for s in specs)
    assert "C1e+09" in specs[0].label()
    window, tokens = 96, tokens_per_window(64, 32, 16)
    for spec in specs:
        n = spec.model_config.non_embedding_params()
        plan = plan_run(
            spec,
            cfg,
            data_points=0,
            total_points=10**9,
            window=window,
            window_tokens=tokens,
            n_params=n,
        )
        trained = plan.steps * cfg.batch_size * tokens
        assert 6 * n * trained >= spec.compute_budget  # C = 6·N·tokens, rounded up to a step
        assert 6 * n * (trained - cfg.batch_size * tokens) < spec.compute_budget
        assert plan.data_request == plan.steps * cfg.batch_size * window  # one pass over D
    # at the same C the bigger model trains fewer tokens on less data (approach 2's trade-off)
    at_c = [s for s in specs if s.compute_budget == 1e9 and s.arch == "decoder"]
    plans = [
        plan_run(
            s, cfg, data_points=0, total_points=10**9, window=window, window_tokens=tokens,
            n_params=s.model_config.non_embedding_params(),
        )
        for s in sorted(at_c, key=lambda s: s.model_config.non_embedding_params())
    ]  # fmt: skip
    assert plans[0].steps > plans[1].steps and plans[0].data_request > plans[1].data_request
    for key in ("schedule: isoflop without budgets", "budgets without isoflop"):
        bad = (
            tiny_config(schedule="isoflop")
            if "without budgets" in key
            else tiny_config(compute_budgets=[1e9])
        )
        with pytest.raises(BadInputError, match="compute_budgets"):
            run_train("unused", "unused", bad)


def test_selection_reads_validation_rows_only(splits, tmp_path):
    """An adversarial test metric (favouring every other checkpoint in turn) never changes the
    selected checkpoint; changing the validation metric does."""
    cfg = tiny_config(archs=["decoder"], checkpoints=3)
    out = tmp_path / "results"
    run_train(splits, out, cfg, command=["t"])
    rows = pl.read_parquet(out / "results.parquet").filter(pl.col("arch") != "baseline")
    chosen = rows.filter(pl.col("selected"))["step"].unique().to_list()
    assert len(chosen) == 1
    val = rows.filter(pl.col("split") == "val")
    best = val.group_by("step").agg(pl.col("crps").mean()).sort("crps", "step")["step"][0]
    assert chosen == [best]
    for favoured in rows["step"].unique().to_list():
        adversarial = rows.with_columns(
            crps=pl.when(pl.col("split") == "test")
            .then(pl.when(pl.col("step") == favoured).then(-1e9).otherwise(1e9))
            .otherwise(pl.col("crps"))
        ).drop("selected")
        again = select_checkpoints(adversarial, "crps")
        assert again.filter(pl.col("selected"))["step"].unique().to_list() == chosen
    # the validation metric is what decides: favour another step there and the choice moves
    other = next(s for s in rows["step"].unique().to_list() if s != chosen[0])
    moved = rows.with_columns(
        crps=pl.when((pl.col("split") == "val") & (pl.col("step") == other))
        .then(-1.0)
        .otherwise(pl.col("crps"))
    ).drop("selected")
    assert select_checkpoints(moved, "crps").filter(pl.col("selected"))[
        "step"
    ].unique().to_list() == [other]


class Notes(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def test_an_eval_without_split_is_all_test_with_one_warning(tmp_path):
    old = make_splits(tmp_path / "old", val=False)
    reporter = Notes()
    cfg = tiny_config(archs=["encoder"], steps=4, checkpoints=2)
    run_train(old, tmp_path / "results", cfg, command=["t"], reporter=reporter)
    rows = pl.read_parquet(tmp_path / "results" / "results.parquet")
    assert set(rows["split"]) == {"test"}
    rows = rows.filter(pl.col("arch") != "baseline")  # baselines have one "checkpoint", step 0
    assert len([w for w in reporter.warnings if "split" in w]) == 1
    # no validation rows: the selected checkpoint is the schedule's end, not a test minimum
    assert rows.filter(pl.col("selected"))["step"].unique().to_list() == [4]


def test_spec_with_compute_budget_has_its_own_id():
    a = RunSpec.make(arch="decoder", size="1K", data_budget=1.0, seed=0, compute_budget=1e9)
    b = RunSpec.make(arch="decoder", size="1K", data_budget=1.0, seed=0, compute_budget=2e9)
    assert a.run_id({}) != b.run_id({})


def test_an_isoflop_run_trains_its_budget_end_to_end(splits, tmp_path):
    cfg = tiny_config(schedule="isoflop", compute_budgets=[3e6], archs=["decoder"], checkpoints=2)
    data = load_sweep_data(splits, cfg)
    rows, _ = run_sweep(grid(cfg), data, cfg, tmp_path / "runs")
    final = rows.filter(pl.col("final"))
    n, tokens = final["params"][0], final["tokens"][0]
    per_step = cfg.batch_size * tokens_per_window(64, 32, 16)
    assert 3e6 <= 6 * n * tokens < 3e6 + 6 * n * per_step  # C = 6·N·tokens, to one step
    assert set(rows["schedule"]) == {"isoflop"} and set(rows["compute_budget"]) == {3e6}
    # D = the points those steps cover once (epochs 1), so about one pass at the end
    assert final["data_points"][0] < data.budget.total_points
    assert final["epochs"][0] == pytest.approx(1.0, rel=0.05)
    # a budget beyond the data trains on all of it, seeing it more often (recorded)
    big = tiny_config(schedule="isoflop", compute_budgets=[3e7], archs=["decoder"], checkpoints=1)
    rows, _ = run_sweep(grid(big), data, big, tmp_path / "big")
    assert rows["data_points"][0] == data.budget.total_points and rows["epochs"][0] > 1.5
