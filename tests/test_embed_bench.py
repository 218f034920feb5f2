"""`tsfm embed-bench` end to end on a tiny budget, its protocol and its bad-input errors."""

from __future__ import annotations

import io
import json

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from rich.console import Console

from tests.splits_fixture import make_splits
from tsfm_cli.commands.embed_bench import _render
from tsfm_cli.embed_bench import EmbedBenchConfig, run_embed_bench
from tsfm_cli.embed_bench.config import check_config
from tsfm_cli.embed_bench.protocol import match_parameters, strategy_grid
from tsfm_cli.embed_bench.summary import t_interval
from tsfm_cli.errors import BadInputError
from tsfm_cli.models.config import ModelConfig
from tsfm_cli.models.embeddings import EMBEDDINGS
from tsfm_cli.models.forecaster import Forecaster, Window
from tsfm_cli.recipe import build_config, load_section
from tsfm_cli.ui import Reporter

DESIGN_COLUMNS = {"strategy", "seed", "params", "scenario", "nll", "crps", "mse", "mae", "mase"}
BRIEF_COLUMNS = {"horizon", "normalisation", "embedding", "kind", "family", "params_total"}
TINY = dict(
    strategies=["patch", "pointwise"],
    normalisations=["std", "meanabs"],
    n_seeds=2,
    steps=3,
    batch_size=8,
    eval_windows=2,
    eval_samples=4,
    context_length=48,
    size={"d_model": 16, "layers": 1},
)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    splits = make_splits(root / "splits", n_series=2, train_length=600, windows=2)
    out = root / "bench"
    summary = run_embed_bench(splits, out, EmbedBenchConfig(**TINY), command=["test"])
    return splits, out, summary


def test_bench_writes_documented_artifacts(bench):
    _, out, summary = bench
    assert not summary["skipped"] and summary["runs_ok"] == summary["runs"] == 3 * 2
    frame = pl.read_parquet(out / "bench.parquet")
    assert set(frame.columns) >= DESIGN_COLUMNS | BRIEF_COLUMNS
    # 3 strategies (2 embeddings + patch/meanabs) × 2 seeds × 3 scenarios (val too) × 2 horizons
    assert frame.height == 3 * 2 * 3 * 2
    assert set(frame.filter(pl.col("scenario") == "val")["split"]) == {"val"}
    assert frame.filter(pl.col("chosen"))["strategy"].unique().to_list() == [summary["chosen"]]
    assert set(frame["strategy"]) == {"patch/std", "pointwise/std", "patch/meanabs"}
    assert set(frame["embedding"]) == {"patch", "pointwise"}
    assert frame["crps"].is_not_null().all() and (frame["status"] == "ok").all()
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "embed-bench"
    assert {"bench.parquet", "summary.parquet", "bench.png"} <= set(manifest["outputs"])


def test_bench_reads_train_and_eval_stores_beside_its_runs(bench):
    """No in-memory copy of the data: the same memory-mapped stores as `tsfm train`."""
    _, out, summary = bench
    assert summary["runs_dir"] == str(out.parent / "bench.runs")
    assert len(list(out.parent.glob("train-store-*/values.npy"))) == 1
    assert len(list(out.parent.glob("eval-store-*/context.npy"))) == 1


def test_the_chosen_strategy_reads_validation_rows_only(bench):
    """Adversarial test metrics (each other strategy made best on test in turn) never change the
    choice; the validation metric does, and the summary reports test rows only."""
    from tsfm_cli.embed_bench.summary import choose_strategy

    _, out, summary = bench
    frame = pl.read_parquet(out / "bench.parquet")
    chosen = choose_strategy(frame, "crps")
    assert chosen == summary["chosen"] is not None
    for favoured in frame["strategy"].unique().to_list():
        adversarial = frame.with_columns(
            crps=pl.when(pl.col("split") == "test")
            .then(pl.when(pl.col("strategy") == favoured).then(0.0).otherwise(1e9))
            .otherwise(pl.col("crps"))
        )
        assert choose_strategy(adversarial, "crps") == chosen
    other = next(s for s in frame["strategy"].unique().to_list() if s != chosen)
    moved = frame.with_columns(
        crps=pl.when((pl.col("split") == "val") & (pl.col("strategy") == other))
        .then(-1.0)
        .otherwise(pl.col("crps"))
    )
    assert choose_strategy(moved, "crps") == other
    table = pl.read_parquet(out / "summary.parquet")
    assert "val" not in set(table.filter(pl.col("level") == "scenario")["group"])


def test_parameters_are_matched_within_ten_percent(bench):
    _, out, summary = bench
    totals = (
        pl.read_parquet(out / "bench.parquet")
        .group_by("strategy")
        .agg(pl.col("params_total").first(), pl.col("params").first())
    )
    assert totals["params"].n_unique() == 1  # same backbone
    assert totals["params_total"].max() <= 1.10 * totals["params_total"].min()
    assert summary["params"]["pointwise/std"]["options"].get("hidden", 0) > 0


def test_summary_intervals_are_those_of_the_seeds(bench):
    _, out, _ = bench
    frame = pl.read_parquet(out / "bench.parquet")
    summary = pl.read_parquet(out / "summary.parquet")
    for strategy in ("patch/std", "pointwise/std"):
        per_seed = (
            frame.filter((pl.col("strategy") == strategy) & (pl.col("scenario") == "id"))
            .group_by("seed")
            .agg(pl.col("crps").mean())
            .sort("seed")["crps"]
            .to_numpy()
        )
        assert per_seed.size == 2
        mean, _, low, high = t_interval(per_seed)
        row = summary.filter(
            (pl.col("strategy") == strategy)
            & (pl.col("metric") == "crps")
            & (pl.col("level") == "id")
        ).row(0, named=True)
        assert row["n_seeds"] == 2
        assert np.isclose(row["mean"], mean) and np.isclose(row["ci_low"], low)
        assert np.isclose(row["ci_high"], high) and low < mean < high
    levels = set(summary["level"])
    assert levels == {"id", "ood", "family", "robustness", "scenario"}


def test_rerun_is_skipped(bench):
    splits, out, _ = bench
    again = run_embed_bench(splits, out, EmbedBenchConfig(**TINY), command=["test"])
    assert again["skipped"]


def test_unknown_strategy_lists_known_ones(bench):
    splits, out, _ = bench
    with pytest.raises(BadInputError, match=r"unknown strategy 'nope'.*known: .*lag_features"):
        run_embed_bench(splits, out, EmbedBenchConfig(strategies=["patch", "nope"]))


def test_cli_unknown_strategy_exits_2(tsfm, tmp_path):
    result = tsfm("embed-bench", tmp_path, "--strategies", "patch,nope")
    assert result.returncode == 2
    assert "unknown strategy 'nope'" in result.stderr and "quantised" in result.stderr


def test_recipe_errors_name_file_line_and_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("embed-bench:\n  normalisations: [std, zscore]\n")
    values, source = load_section(recipe, "embed-bench")
    cfg = build_config(EmbedBenchConfig, values, source)
    with pytest.raises(BadInputError, match=r"r.yaml:2: key 'embed-bench.normalisations'.*zscore"):
        check_config(cfg, source)


def test_cli_json_and_table(tsfm, bench, tmp_path):
    """The CLI on the fixture's bench with the same recipe: nothing to redo, one JSON line."""
    splits, out, _ = bench
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"embed-bench": TINY}))
    result = tsfm("embed-bench", splits, "-o", out, "--config", recipe, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped"] and summary["out_dir"] == str(out)
    # the best per scenario is a test result: validation windows only choose the strategy
    assert {row["scenario"] for row in summary["best_per_scenario"]} == {"id", "level_shift:2"}
    bench = pl.read_parquet(out / "bench.parquet")
    assert bench.filter(pl.col("chosen"))["strategy"].unique().to_list() == [summary["chosen"]]
    console = Console(file=io.StringIO(), width=160)
    _render(summary, Reporter(quiet=False, console=console))
    text = console.file.getvalue()
    assert "best strategy per scenario" in text and "level_shift:2" in text
    assert "pointwise/std" in text and "OOD÷ID" in text


def test_default_protocol_matches_all_eight_strategies():
    """The default size and patch keep every strategy within 10% (minute and hourly data)."""
    cfg = EmbedBenchConfig()
    model_cfg = ModelConfig.parse(cfg.size)
    for freq_s in (60.0, 900.0, 3600.0):

        def count(embedding, options, freq_s=freq_s):
            with torch.device("meta"):
                model = Forecaster(
                    "encoder", model_cfg, cfg.patch_size, embedding, freq_s=freq_s,
                    embedding_options=options,
                )  # fmt: skip
            return model.num_params()[1]

        grid = strategy_grid(cfg.strategies, cfg.normalisations)
        matched = match_parameters(grid, count, EMBEDDINGS)
        assert len(matched) == 10
        totals = [s.params_total for s in matched]
        assert max(totals) <= 1.10 * min(totals)


def test_protocol_refuses_an_unfair_comparison():
    def count(embedding, options):
        return {"patch": 1000, "pointwise": 2000}[embedding]

    with pytest.raises(BadInputError, match="differ by more than 10%"):
        match_parameters(strategy_grid(["patch", "pointwise"], ["std"]), count, EMBEDDINGS)


@pytest.mark.parametrize("name", sorted(n for n in EMBEDDINGS if "[" not in n))
@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_every_strategy_trains_and_forecasts_through_the_forecaster(name, arch):
    torch.manual_seed(0)
    model = Forecaster(arch, ModelConfig(d_model=16, layers=1), 8, name, freq_s=900)
    batch, context, horizon = 2, 32, 8
    values = torch.randn(batch, context + horizon).cumsum(1)
    observed = torch.rand(batch, context + horizon) > 0.2
    stamps = (1.7e9 + 900 * torch.arange(context + horizon, dtype=torch.float64)).expand(batch, -1)
    window = Window(values, observed, context, stamps.clone())
    loss, _ = model.loss(window)
    loss.backward()
    assert torch.isfinite(loss)
    out = model.forecast(window, n_samples=3)
    assert out["samples"].shape == (3, batch, horizon)
