"""`run_train`: the stage entry (BRIEF conventions): ood-split directory → results directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.recipe import config_dict
from tsfm_cli.stagedir import (
    StageWriter,
    claim_output,
    fingerprint,
    open_stage,
    reuse_summary,
    shard_dir,
)
from tsfm_cli.train.config import (
    TrainConfig,
    check_settings,
    grid,
    is_global_zero,
    parse_shard,
    shard,
)
from tsfm_cli.train.select import select_checkpoints
from tsfm_cli.train.sweep import SPLITS_READ, load_sweep_data, read_window_metrics, run_sweep
from tsfm_cli.ui import Reporter


def runs_dir_for(out_dir: Path) -> Path:
    """The runs directory of a sweep writing ``out_dir``: ``<out_dir>.runs/`` beside it."""
    return out_dir.parent / f"{out_dir.name}.runs"


def run_outcomes(runs: pl.DataFrame) -> dict[str, int]:
    """``runs_ok`` and ``runs_failed`` of run_sweep's per-run table (which has no columns when
    no run finished in this process)."""
    ok = runs.filter(pl.col("status") == "ok").height if runs.height else 0
    return {"runs_ok": ok, "runs_failed": runs.height - ok}


def run_ids(runs: pl.DataFrame) -> list[str]:
    """The run ids of run_sweep's per-run table (every run this output uses)."""
    return sorted(runs["run_id"].to_list()) if runs.height else []


def shard_paths(out_dir: Path, shard_text: str) -> tuple[Path, Path]:
    """(where this invocation writes, the shared runs directory).

    ``-o results`` writes ``results/`` and keeps runs in ``results.runs/``; with ``--shard i/n``
    (n > 1) it writes ``results-shard-i-of-n/`` and shares ``results.runs/`` with the other shards,
    so a final run without ``--shard`` merges them (every run is finished: nothing retrains).
    """
    out_dir = Path(out_dir)
    index, count = parse_shard(shard_text)
    runs_dir = runs_dir_for(out_dir)
    return shard_dir(out_dir, index, count), runs_dir


def baseline_results(stage, config: TrainConfig, data) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(results rows, window rows) of the baselines on the windows the models are scored on,
    read from the sweep's eval store ``eval_batch_size`` windows at a time."""
    from tsfm_cli.baselines import score_windows

    scenarios_path = stage.path / "scenarios.parquet"
    scenarios = pl.read_parquet(scenarios_path) if scenarios_path.is_file() else None
    return score_windows(
        data.eval_meta,
        data.eval_arrays,
        None,
        models=config.baselines,
        scenarios=scenarios,
        batch_size=config.eval_batch_size,
    )


def run_train(
    inputs: Path | str,
    out_dir: Path | str,
    config: TrainConfig,
    *,
    reporter: Reporter | None = None,
    command: list[str] | None = None,
    wait_s: float = 0.0,
    runs_dir: Path | str | None = None,
) -> dict[str, Any]:
    reporter = reporter or Reporter()
    check_settings(config)
    try:
        index, count = parse_shard(config.shard)
    except ValueError as exc:
        raise BadInputError(f"shard: {exc}") from None
    out_dir, default_runs = shard_paths(Path(out_dir), config.shard)
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs
    stage = open_stage(inputs, "ood-split")
    claim_output(out_dir, "train", [stage.path])
    cfg = config_dict(config)
    input_desc = [stage.describe(*SPLITS_READ)]
    fp = fingerprint(cfg, input_desc)
    reused = reuse_summary(out_dir, "train", fp, reporter)
    if reused is not None:
        return reused
    specs = shard(grid(config), index, count)
    if not specs:
        raise BadInputError(f"train: shard {index}/{count} of {len(grid(config))} runs is empty")
    # beside the runs directory: shared by every sweep there on the same train.parquet
    data = load_sweep_data(stage, config, store_root=runs_dir.parent)
    reporter.info(
        f"train: {len(specs)} runs (shard {index}/{count}), context {data.context_length}, "
        f"horizons {data.horizons}, {data.budget.total_points:,} training points"
    )
    for note in data.notes:
        reporter.warn(f"train: {note}")
    rows, runs = run_sweep(specs, data, config, runs_dir, reporter=reporter)
    if not is_global_zero(config):
        return {"out_dir": str(out_dir), "rank": "non-zero", "skipped": False}
    windows = read_window_metrics(runs_dir, runs["run_id"].to_list() if runs.height else [])
    rows = select_checkpoints(rows, config.select_metric)
    if config.baselines and index == 0:  # one shard carries them: shards concatenate
        base, base_windows = baseline_results(stage, config, data)
        rows = pl.concat([rows, base], how="diagonal_relaxed")
        windows = pl.concat([windows, base_windows], how="diagonal_relaxed")
    rows = rows.sort("run_id", "step", "split", "scenario", "horizon", maintain_order=True)
    windows = windows.sort(
        "run_id", "step", "split", "scenario", "horizon", "series_id", "window_id"
    )
    summary = {
        "runs": len(specs),
        **run_outcomes(runs),
        "runs_trained": int(runs["trained_now"].sum()) if runs.height else 0,
        "rows": rows.height,
        "window_rows": windows.height,
        "val_rows": rows.filter(pl.col("split") == "val").height if rows.height else 0,
        "scenarios": sorted(set(rows["scenario"].to_list())) if rows.height else [],
        "horizons": data.horizons,
        "context_length": data.context_length,
        "training_points": data.budget.total_points,
        "shard": f"{index}/{count}",
        "runs_dir": str(runs_dir),
        "run_ids": run_ids(runs),  # what `tsfm gc` keeps in runs_dir
    }
    with StageWriter(
        out_dir, "train", config=cfg, inputs=input_desc, command=command, wait_s=wait_s
    ) as writer:
        writer.write_parquet("results.parquet", rows)
        writer.write_parquet("window_metrics.parquet", windows)
        writer.write_parquet("runs.parquet", runs)
        writer.commit(summary=summary)
    return {**summary, "out_dir": str(out_dir), "skipped": False}
