"""`run_embed_bench`: the stage entry (BRIEF conventions): ood-split directory → bench directory.

The bench is a sweep over the embedding axis built on `train`'s sweep (no second training
implementation): one ``RunSpec`` per strategy × seed, same arch, size, data budget and steps,
trained and evaluated by ``tsfm_cli.train.sweep.run_sweep`` on every scenario × horizon of the
split. Runs live in ``<out>.runs/`` (resumable, finished ones are never redone), exactly as with
``tsfm train``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from tsfm_cli.embed_bench.config import EmbedBenchConfig, check_config
from tsfm_cli.embed_bench.protocol import Strategy, match_parameters, strategy_grid
from tsfm_cli.embed_bench.summary import (
    best_per_scenario,
    choose_strategy,
    headline,
    summarise,
)
from tsfm_cli.groupkeys import all_window_rows
from tsfm_cli.recipe import RecipeSource, config_dict
from tsfm_cli.stagedir import StageWriter, claim_output, fingerprint, open_stage, reuse_summary
from tsfm_cli.ui import Reporter

BENCH_COLUMNS = (
    "strategy",
    "embedding",
    "normalisation",
    "seed",
    "params",
    "params_total",
    "split",
    "scenario",
    "kind",
    "family",
    "severity",
    "horizon",
    "nll",
    "crps",
    "mse",
    "mae",
    "mase",
    "n_windows",
    "status",
    "reason",
    "embedding_options",
    "run_id",
    "step",
    "data_points",
    "tokens",
    "token_length",
    "chosen",
)


def train_config(cfg: EmbedBenchConfig):
    """The `train` settings every run of the bench shares."""
    from tsfm_cli.train.config import TrainConfig

    return TrainConfig(
        schedule="steps",  # the protocol: every strategy trains the same steps on the same data
        archs=[cfg.arch],
        sizes=[cfg.size],
        data_budgets=[cfg.data_budget],
        seeds=cfg.seeds,
        patch_size=cfg.patch_size,
        steps=cfg.scaled_steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        warmup_steps=min(cfg.warmup_steps, max(1, cfg.scaled_steps // 2)),
        checkpoints=1,
        eval_windows=cfg.scaled_eval_windows,
        eval_samples=cfg.eval_samples,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        precision=cfg.precision,
        cpu_threads=cfg.cpu_threads,
        seed=cfg.seed,
    )


def crop_context(data, length: int | None):
    """The sweep data with every context cut to its last `length` points (training windows too).

    The split's context (512 by default) makes one-token-per-step strategies cost 16× more than
    patches; the bench compares embeddings, so a shorter context, equal for all, keeps it cheap.
    """
    from dataclasses import replace

    from tsfm_cli.train.data import DataBudget

    if length is None or length >= data.context_length:
        return data
    cut = data.context_length - length
    groups = [replace(g, crop=g.crop + cut) for g in data.groups]  # cut as each batch is read
    budget = DataBudget.build(data.series, length + data.train_horizon, data.seed)
    return replace(data, groups=groups, context_length=length, budget=budget)


def plan(cfg: EmbedBenchConfig, freq_s: float | None) -> list[Strategy]:
    """The strategies with matched embedding options and their parameter counts."""
    import torch

    from tsfm_cli.models.config import ModelConfig
    from tsfm_cli.models.embeddings import EMBEDDINGS
    from tsfm_cli.models.forecaster import Forecaster

    model_cfg = ModelConfig.parse(cfg.size)

    def build(embedding: str, options: dict[str, Any]):
        with torch.device("meta"):  # counts without allocating (any size)
            return Forecaster(
                cfg.arch,
                model_cfg,
                patch_size=cfg.patch_size,
                embedding=embedding,
                freq_s=freq_s,
                embedding_options=options,
            )

    strategies = strategy_grid(cfg.strategies, cfg.normalisations, cfg.cross)
    matched = match_parameters(
        strategies,
        lambda embedding, options: build(embedding, options).num_params()[1],
        EMBEDDINGS,
        user_options=cfg.embedding_options,
        reference=cfg.strategies[0],
        tolerance=cfg.param_tolerance,
        max_spread=cfg.max_param_spread,
    )
    out = []
    for s in matched:
        model = build(s.embedding, s.options)
        n_params, total = model.num_params()
        out.append(
            Strategy(s.embedding, s.normalisation, s.options, total, n_params, model.token_length)
        )
    return out


def bench_rows(results: pl.DataFrame, strategies: list[Strategy], labels: dict[str, str]):
    """train's result rows (last evaluated step of each run) → `bench.parquet` rows."""
    if results.is_empty():
        return pl.DataFrame(schema={c: pl.String for c in BENCH_COLUMNS})
    results = all_window_rows(results)  # the bench compares strategies over all windows
    last = results.filter(pl.col("step") == pl.col("step").max().over("run_id"))
    mapping = pl.DataFrame(
        {
            "_variant": [labels[s.label] for s in strategies],
            "normalisation": [s.normalisation for s in strategies],
            "strategy": [s.label for s in strategies],
            "_embedding": [s.embedding for s in strategies],
            "embedding_options": [json.dumps(s.options, sort_keys=True) for s in strategies],
            "token_length": [s.token_length for s in strategies],
        }
    )
    rows = last.rename({"embedding": "_variant"}).join(
        mapping, on=["_variant", "normalisation"], how="inner"
    )
    rows = rows.with_columns(pl.col("_embedding").alias("embedding"))
    return rows.select([c for c in BENCH_COLUMNS if c in rows.columns]).sort(
        "strategy", "seed", "split", "scenario", "horizon"
    )


def run_embed_bench(
    inputs: Path | str,
    out_dir: Path | str,
    config: EmbedBenchConfig,
    *,
    reporter: Reporter | None = None,
    command: list[str] | None = None,
    wait_s: float = 0.0,
    source: RecipeSource | None = None,
    runs_dir: Path | str | None = None,
) -> dict[str, Any]:
    from tsfm_cli.embed_bench.plot import heatmap
    from tsfm_cli.models.embedding_strategies import with_options
    from tsfm_cli.train.config import RunSpec
    from tsfm_cli.train.stage import run_ids, run_outcomes, runs_dir_for
    from tsfm_cli.train.sweep import SPLITS_READ, load_sweep_data, run_sweep

    reporter = reporter or Reporter()
    check_config(config, source)
    out_dir = Path(out_dir)
    runs_dir = Path(runs_dir) if runs_dir is not None else runs_dir_for(out_dir)
    stage = open_stage(inputs, "ood-split")
    claim_output(out_dir, "embed-bench", [stage.path])
    cfg = config_dict(config)
    input_desc = [stage.describe(*SPLITS_READ)]
    fp = fingerprint(cfg, input_desc)
    reused = reuse_summary(out_dir, "embed-bench", fp, reporter)
    if reused is not None:
        return reused
    if config.n_seeds < 3:
        reporter.warn(f"embed-bench: {config.n_seeds} seeds; the protocol asks for 3 or more")

    tcfg = train_config(config)
    # the train and eval stores beside the runs directory, as `tsfm train` keeps them
    data = crop_context(
        load_sweep_data(stage, tcfg, store_root=runs_dir.parent), config.context_length
    )
    strategies = plan(config, data.freq_s)
    labels = {s.label: with_options(s.embedding, s.options) for s in strategies}
    specs = [
        RunSpec.make(
            arch=config.arch,
            size=config.size,
            data_budget=config.data_budget,
            seed=seed,
            embedding=labels[s.label],
            normalisation=s.normalisation,
        )
        for s in strategies
        for seed in config.seeds
    ]
    reporter.info(
        f"embed-bench: {len(strategies)} strategies × {config.n_seeds} seeds = {len(specs)} runs "
        f"of {tcfg.steps} steps; context {data.context_length}, horizons {data.horizons}, "
        f"{data.budget.points(config.data_budget):,} training points"
    )
    for note in data.notes:
        reporter.warn(f"embed-bench: {note}")
    results, runs = run_sweep(specs, data, tcfg, runs_dir, reporter=reporter)
    bench = bench_rows(results, strategies, labels)
    metric = config.metric
    # chosen on validation windows only; every reported figure comes from the test windows
    chosen = choose_strategy(bench, metric) if bench.height else None
    if bench.height:
        bench = bench.with_columns(chosen=pl.col("strategy") == pl.lit(chosen, dtype=pl.String))
        bench = bench.with_columns(pl.col("chosen").fill_null(False))
    test = bench.filter(pl.col("split") == "test") if bench.height else bench
    if chosen is None and bench.height:
        reporter.warn("embed-bench: no validation windows, so no strategy is chosen")
    summary_frame = summarise(test) if test.height else pl.DataFrame()

    totals = [s.params_total for s in strategies]
    summary: dict[str, Any] = {
        "runs": len(specs),
        **run_outcomes(runs),
        "strategies": len(strategies),
        "seeds": config.seeds,
        "metric": metric,
        "chosen": chosen,
        "chosen_on": "val",
        "steps": tcfg.steps,
        "context_length": data.context_length,
        "horizons": data.horizons,
        "training_points": data.budget.points(config.data_budget),
        "params_spread": (max(totals) / min(totals) - 1) if totals else None,
        "params": {
            s.label: {
                "params_total": s.params_total,
                "params": s.params,
                "token_length": s.token_length,
                "options": s.options,
            }
            for s in strategies
        },
        "runs_dir": str(runs_dir),
        "run_ids": run_ids(runs),  # what `tsfm gc` keeps in runs_dir
    }
    if summary_frame.height:
        summary["table"] = _json_rows(headline(summary_frame, metric))
        summary["best_per_scenario"] = _json_rows(best_per_scenario(summary_frame, metric))
    with StageWriter(
        out_dir, "embed-bench", config=cfg, inputs=input_desc, command=command, wait_s=wait_s
    ) as writer:
        writer.write_parquet("bench.parquet", bench)
        if summary_frame.height:
            writer.write_parquet("summary.parquet", summary_frame)
            heatmap(summary_frame, metric, writer.dir / "bench.png")
            writer.register("bench.png")
        writer.commit(summary=summary)
    return {**summary, "out_dir": str(out_dir), "skipped": False}


def _json_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.write_json())
