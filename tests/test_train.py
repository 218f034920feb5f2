"""`tsfm train`: grid and shards, nested data budgets, a tiny sweep end to end, resume, NaNs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch

from tests.splits_fixture import make_splits
from tsfm_cli.errors import BadInputError
from tsfm_cli.schema import RESULT_COLUMNS
from tsfm_cli.stagedir import open_stage
from tsfm_cli.train import TrainConfig, grid, parse_shard, run_sweep, run_train, shard
from tsfm_cli.train import sweep as sweep_mod
from tsfm_cli.train.config import RunSpec
from tsfm_cli.train.data import BatchSampler, DataBudget, degrade, load_train
from tsfm_cli.train.sweep import checkpoint_steps, load_sweep_data

torch.set_num_threads(1)

EXTRA_COLUMNS = (
    "horizon", "train_quality", "kind", "family", "severity", "size", "d_model", "layers",
    "context_length", "patch_size", "reason", "normalisation", "flops_fwd_batch",
)  # fmt: skip

TINY = {"d_model": 16, "layers": 1}


def tiny_config(**overrides) -> TrainConfig:
    """Fixed-length runs (schedule "steps"): the grid, resume and shard tests count checkpoints
    of 12-step runs; the default "epochs" schedule has its own tests below."""
    values = dict(
        schedule="steps",
        archs=["encoder", "decoder"],
        sizes=[TINY],
        patch_size=16,
        steps=12,
        batch_size=8,
        warmup_steps=2,
        checkpoints=3,
        eval_windows=4,
        eval_samples=8,
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return make_splits(tmp_path_factory.mktemp("train") / "splits")


def test_shards_cover_the_grid_exactly_once():
    cfg = TrainConfig(
        archs=["encoder", "decoder"], sizes=["1K", "10K", "100K"], data_budgets=[0.25, 1.0],
        seeds=[0, 1], train_quality=["clean", "missing_bursts:3"],
    )  # fmt: skip
    specs = grid(cfg)
    assert len(specs) == 2 * 3 * 2 * 2 * 2 == len(set(specs))
    for n in (1, 3, 5, 48):
        parts = [shard(specs, i, n) for i in range(n)]
        flat = [s for part in parts for s in part]
        assert sorted(map(repr, flat)) == sorted(map(repr, specs))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    ids = {s.run_id({"a": 1}) for s in specs}
    assert len(ids) == len(specs)


def test_checkpoints_are_log_spaced_and_end_at_the_last_step():
    assert checkpoint_steps(1000, 4) == [125, 250, 500, 1000]
    assert checkpoint_steps(12, 3)[-1] == 12
    assert checkpoint_steps(5, 1) == [5]


def test_data_budgets_are_nested(splits):
    series = load_train(splits / "train.parquet")
    budget = DataBudget.build(series, window=96, seed=0)
    assert budget.total_points == 4 * 1200
    previous: set[tuple[int, int]] = set()
    for d in (200, 500, 1000, 2400, 4800):
        segments = budget.take(d)
        points = {(s.series, s.start + k) for s in segments for k in range(s.length)}
        # D distinct time points: as requested, less at most a window's worth (recorded as is)
        assert d - 96 < len(points) == sum(s.length for s in segments) <= d
        assert previous <= points  # nested: bigger D contains smaller
        previous = points
    assert sum(s.length for s in budget.take(1.0)) == budget.total_points
    sampler = BatchSampler(series, budget.take(500), 96, batch_size=5, seed=3)
    a, b = sampler.batch(7), sampler.batch(7)
    assert a["values"].shape == (5, 96)
    assert np.array_equal(a["values"], b["values"])  # batch k is a function of (seed, k)
    assert not np.array_equal(a["values"], sampler.batch(8)["values"])
    assert not np.array_equal(a["values"], sampler.batch(7, rank=1)["values"])  # DDP ranks differ
    assert not np.isnan(a["values"]).any()


def test_degraded_training_data_keeps_masks_honest(splits):
    series = load_train(splits / "train.parquet")
    worse = degrade(series, "missing_bursts:3", seed=0)
    for before, after in zip(series.observed, worse.observed, strict=True):
        assert not (after & ~before).any()  # never observed where it was not
    rate = lambda s: 1 - np.mean(np.concatenate(s.observed))  # noqa: E731
    assert rate(worse) > rate(series) + 0.1
    for severity in (1, 3, 5):  # bursts remove 0.1 × severity of the points, independently
        degraded = degrade(series, f"missing_bursts:{severity}", seed=0)
        for before, after in zip(series.observed, degraded.observed, strict=True):
            stated = 1 - (1 - 0.1 * severity) * np.mean(before)
            assert abs((1 - np.mean(after)) - stated) < 0.02
    noisy = degrade(series, "noise_increase:2", seed=0)
    assert not np.allclose(np.nan_to_num(noisy.values[0]), np.nan_to_num(series.values[0]))
    assert degrade(series, "clean", seed=0) is series
    with pytest.raises(ValueError, match="train_quality"):
        degrade(series, "gremlins:2", seed=0)


def test_tiny_sweep_end_to_end_writes_the_documented_columns(splits, tmp_path):
    out = tmp_path / "results"
    cfg = tiny_config(train_quality=["clean", "missing_bursts:3"], data_budgets=[0.5, 1.0])
    summary = run_train(splits, out, cfg, command=["test"])
    assert summary["runs"] == summary["runs_ok"] == summary["runs_trained"] == 8
    stage = open_stage(out, "train")
    rows = pl.read_parquet(stage.file("results.parquet"))
    for column in (*RESULT_COLUMNS, *EXTRA_COLUMNS):
        assert column in rows.columns, column
    assert rows["horizon"].dtype == pl.Int32
    # the baselines: scored once on the same scenarios × horizons (tsfm_cli/baselines.py)
    baselines = rows.filter(pl.col("arch") == "baseline")
    assert set(baselines["model"]) == {"seasonal_naive", "naive", "auto_ets"}
    assert baselines.filter(pl.col("group_key").is_null()).height == 3 * 3 * 2
    assert (baselines["params"] == 0).all() and (baselines["step"] == 0).all()
    rows = rows.filter(pl.col("arch") != "baseline")
    # one row per run × checkpoint × scenario × horizon over all windows (group_key null) …
    every = rows.filter(pl.col("group_key").is_null())
    assert every.height == 8 * len(checkpoint_steps(12, 3)) * 3 * 2
    assert set(rows["scenario"]) == {"id", "level_shift:2", "val"}
    assert every.filter(pl.col("scenario") == "val")["kind"].unique().to_list() == ["val"]
    # … plus one per value of each group key from eval.parquet (line, machine); their windows
    # add up to the all-window row's
    per_line = rows.filter(pl.col("group_key") == "line")
    assert set(per_line["line"]) == {"line1", "line2"} and per_line["machine"].is_null().all()
    assert every["line"].is_null().all() and every["machine"].is_null().all()
    line_key = ["run_id", "step", "scenario", "horizon"]
    sums = per_line.group_by(line_key).agg(pl.col("n_windows").sum().alias("in_lines"))
    joined = every.join(sums, on=line_key)
    assert joined.height > 0 and (joined["n_windows"] == joined["in_lines"]).all()
    # the validation scenario is marked, and the run columns describe the schedule
    assert set(rows["scenario"]) == {"id", "level_shift:2", "val"}
    assert set(rows.filter(pl.col("scenario") == "val")["split"]) == {"val"}
    assert set(rows.filter(pl.col("scenario") != "val")["split"]) == {"test"}
    assert set(rows["model"]) == {"transformer"} and set(rows["schedule"]) == {"steps"}
    assert (rows["final"] == (rows["step"] == 12)).all()
    assert (rows["unique_points"] == rows["data_points"]).all()
    assert (rows["flops_attn"] > rows["flops"]).all()
    # epochs = windows seen / windows in D: the half-data runs made twice the passes
    last = rows.filter(pl.col("final")).group_by("data_points").agg(pl.col("epochs").first())
    by_d = dict(zip(last["data_points"], last["epochs"], strict=True))
    assert by_d[2400] == pytest.approx(12 * 8 * 96 / 2400) == pytest.approx(2 * by_d[4800])
    # each run has exactly one selected checkpoint (chosen on its validation rows)
    per_run = rows.filter(pl.col("selected")).group_by("run_id").agg(pl.col("step").n_unique())
    assert per_run.height == 8 and (per_run["step"] == 1).all()
    # one window_metrics row per run × checkpoint × split × scenario × horizon × window, whose
    # means are the results' metrics
    windows = pl.read_parquet(stage.file("window_metrics.parquet"))
    base_windows = windows.filter(pl.col("arch") == "baseline")  # the same windows, per model
    assert base_windows.height == 3 * 3 * 2 * 4
    windows = windows.filter(pl.col("arch") != "baseline")
    assert windows.height == 8 * len(checkpoint_steps(12, 3)) * 3 * 2 * 4
    assert {"series_id", "window_id", "seed", "split", "line", "machine"} <= set(windows.columns)
    key = ["run_id", "step", "split", "scenario", "horizon"]
    means = windows.group_by(key).agg(pl.col("crps").mean().alias("mean_crps"))
    joined = every.join(means, on=key)
    assert joined.height == every.height
    np.testing.assert_allclose(joined["crps"].to_numpy(), joined["mean_crps"].to_numpy())
    assert set(rows["horizon"]) == {16, 32}
    assert set(rows["train_quality"]) == {"clean", "missing_bursts:3"}
    assert set(rows["status"]) == {"ok"}
    assert rows.filter(pl.col("scenario") == "level_shift:2")["kind"].unique().to_list() == [
        "synthetic"
    ]
    for metric in ("nll", "crps", "mse", "mae", "mase"):
        assert rows[metric].is_finite().all(), metric
    assert (rows["flops"] == 6.0 * rows["params"] * rows["tokens"]).all()
    assert (rows["flops_fwd_batch"] > 0).all()
    assert (rows["params"] == 16 * 16 * 4 + 3 * 16 * 48 + 2 * 16 + 2 * 16 + 16).all()
    half = rows.filter(pl.col("data_points") < 4800)["data_points"].unique().to_list()
    assert half == [2400]
    # nll is the scaled NLL: finite, and the crps of a distribution is below its median's mae
    assert (rows["crps"] <= rows["mae"] + 1e-9).all()
    # rerun: nothing to redo
    again = run_train(splits, out, cfg, command=["test"])
    assert again["skipped"] is True


class Interrupt(Exception):
    pass


def test_killed_run_resumes_from_its_last_checkpoint(splits, tmp_path, monkeypatch):
    cfg = tiny_config(archs=["decoder"], steps=16, checkpoints=3)
    data = load_sweep_data(splits, cfg)
    spec = grid(cfg)[0]
    # reference: the same run uninterrupted
    reference, _ = run_sweep([spec], data, cfg, tmp_path / "ref")

    real = sweep_mod.evaluate
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupt  # the process "dies" during the second checkpoint
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_mod, "evaluate", dying)
    with pytest.raises(Interrupt):
        run_sweep([spec], data, cfg, tmp_path / "runs")
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert (run_dir / "last.ckpt").is_file() and not (run_dir / "done.json").exists()
    monkeypatch.setattr(sweep_mod, "evaluate", real)
    rows, runs = run_sweep([spec], data, cfg, tmp_path / "runs")
    done = json.loads((run_dir / "done.json").read_text())
    assert done["resumed_from"] == checkpoint_steps(16, 3)[0] > 0
    assert sorted(set(rows["step"])) == checkpoint_steps(16, 3)
    cols = ["step", "scenario", "horizon", "tokens", "nll", "crps", "mae"]
    every = [r.filter(pl.col("group_key").is_null()) for r in (rows, reference)]
    left = every[0].sort("step", "scenario", "horizon").select(cols)
    right = every[1].sort("step", "scenario", "horizon").select(cols)
    assert left["tokens"].to_list() == right["tokens"].to_list()
    np.testing.assert_allclose(left["nll"].to_numpy(), right["nll"].to_numpy(), rtol=1e-4)
    # a finished run is skipped
    again, runs = run_sweep([spec], data, cfg, tmp_path / "runs")
    assert runs["trained_now"].to_list() == [False] and again.height == rows.height


def test_divergence_is_recorded_and_the_sweep_goes_on(splits, tmp_path, monkeypatch):
    from tsfm_cli.models.forecaster import Forecaster

    cfg = tiny_config(sizes=[TINY, {"d_model": 32, "layers": 1}], archs=["encoder"])
    data = load_sweep_data(splits, cfg)
    real = Forecaster.loss

    def loss(self, window):
        value, count = real(self, window)
        if self.cfg.d_model == 16 and self.training:
            value = value * float("nan")
        return value, count

    monkeypatch.setattr(Forecaster, "loss", loss)
    rows, runs = run_sweep(grid(cfg), data, cfg, tmp_path / "runs")
    assert runs.sort("params")["status"].to_list() == ["failed", "ok"]
    failed = rows.filter(pl.col("status") == "failed")
    assert failed.height == 3 * 2 and failed["reason"].str.contains("nan").all()
    assert failed["nll"].is_null().all()


def test_bad_settings_are_bad_input(splits, tmp_path):
    data = load_sweep_data(splits, tiny_config())
    for spec in (
        RunSpec.make(arch="sideways", size="1K", data_budget=1.0, seed=0),
        RunSpec.make(arch="encoder", size="7Q", data_budget=1.0, seed=0),
        RunSpec.make(arch="encoder", size="1K", data_budget=1.0, seed=0, embedding="nope"),
        RunSpec.make(arch="encoder", size="1K", data_budget=1.0, seed=0, train_quality="bad:1"),
    ):
        with pytest.raises(BadInputError):
            run_sweep([spec], data, tiny_config(), tmp_path / "runs")
    with pytest.raises(BadInputError, match="context_length"):
        load_sweep_data(splits, tiny_config(context_length=48))
    for bad, key in (
        ({"steps": 0}, "steps"),
        ({"min_lr": 1.0}, "min_lr"),
        ({"seeds": []}, "seeds"),
    ):
        with pytest.raises(BadInputError, match=key):
            run_train(splits, tmp_path / "r", tiny_config(**bad))


def test_shards_merge_into_the_full_grid(splits, tmp_path, tsfm):
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(
        "train:\n  schedule: steps\n  archs: [encoder, decoder]\n"
        "  sizes: [{d_model: 16, layers: 1}]\n"
        "  patch_size: 16\n  steps: 6\n  batch_size: 4\n  checkpoints: 2\n"
        "  eval_windows: 2\n  eval_samples: 4\n  warmup_steps: 2\n"
    )
    out = tmp_path / "results"
    cfg = tiny_config(steps=6, batch_size=4, checkpoints=2, eval_windows=2, eval_samples=4)
    for i in range(2):
        summary = run_train(splits, out, replace(cfg, shard=f"{i}/2"), command=["test"])
        assert summary["runs"] == summary["runs_trained"] == 1
        assert summary["out_dir"].endswith(f"results-shard-{i}-of-2")
    # the merge through the real CLI: every run is finished, nothing retrains
    merged = tsfm("train", splits, "-o", out, "-c", recipe, "--json")
    assert merged.returncode == 0, merged.stderr
    summary = json.loads(merged.stdout)
    assert summary["runs"] == 2 and summary["runs_trained"] == 0
    rows = pl.read_parquet(out / "results.parquet")
    shards = pl.concat(  # diagonal: shard 0 also holds the baseline rows (and their columns)
        [pl.read_parquet(tmp_path / f"results-shard-{i}-of-2" / "results.parquet") for i in (0, 1)],
        how="diagonal_relaxed",
    ).select(rows.columns)
    key = ["run_id", "step", "scenario", "horizon", "group_key", "line", "machine"]
    assert rows.sort(key).equals(shards.sort(key))
    assert rows.filter(pl.col("arch") != "baseline")["run_id"].n_unique() == 2


def test_cli_bad_input_fails_fast_with_exit_2(splits, tmp_path, tsfm):
    recipe = tmp_path / "bad.yaml"
    bad = tsfm("train", splits, "-o", tmp_path / "r", "--shard", "2/2")
    assert bad.returncode == 2 and "shard" in bad.stderr
    recipe.write_text("train:\n  stepz: 3\n")
    bad = tsfm("train", splits, "-o", tmp_path / "r", "-c", recipe)
    assert bad.returncode == 2 and "stepz" in bad.stderr and "bad.yaml:2" in bad.stderr
