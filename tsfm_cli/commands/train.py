"""`tsfm train`: parse options, call `tsfm_cli.train.run_train`, render the summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tsfm_cli.commands.common import (
    ConfigOpt,
    DebugOpt,
    JsonOpt,
    QuietOpt,
    RunsDirOpt,
    SeedOpt,
    SplitsArg,
    WaitOpt,
    comma_list,
    run_stage,
)


def train_cmd(
    splits: SplitsArg,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Results directory (default: results/ next to INPUT).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    archs: Annotated[
        str | None,
        typer.Option(help="Comma-separated archs (default: encoder,decoder).", show_default=False),
    ] = None,
    sizes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated size presets (default: 1K,10K,100K; ladder 1K…1B).",
            show_default=False,
        ),
    ] = None,
    schedule: Annotated[
        str | None,
        typer.Option(
            help="Run length: epochs (steps follow each run's data), steps (fixed, the paper's) "
            "or isoflop (compute_budgets) (default: epochs).",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        float | None,
        typer.Option(help="Passes over each run's data D (default: 1).", show_default=False),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            help="Training steps per run with --schedule steps (default: 1000).",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Windows per batch (default: 64).", show_default=False)
    ] = None,
    devices: Annotated[
        str | None,
        typer.Option(help="Lightning devices: a count or 'auto' (default: 1).", show_default=False),
    ] = None,
    num_nodes: Annotated[
        int | None, typer.Option(help="Nodes for multi-node DDP (default: 1).", show_default=False)
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(help="Lightning strategy: auto, ddp, … (default: auto).", show_default=False),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="Lightning precision (default: bf16-mixed on GPU, 32-true on CPU).",
            show_default=False,
        ),
    ] = None,
    compile_model: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile", help="torch.compile the backbone.", show_default=False
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            help="Run the i-th of n shares of the grid, e.g. 0/4 (writes OUTPUT-shard-0-of-4/; "
            "rerun without --shard to merge).",
            show_default=False,
        ),
    ] = None,
    runs_dir: RunsDirOpt = None,
    seed: SeedOpt = None,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = 0.0,
) -> None:
    """Train a sweep of forecasters and evaluate them on every scenario → results.parquet.

    The grid is arch × size × data budget × seed × training-data quality; every run is
    evaluated at log-spaced checkpoints on every scenario × horizon of SPLITS.
    """

    def work(reporter) -> dict[str, Any]:
        from tsfm_cli.errors import BadInputError
        from tsfm_cli.recipe import build_config, load_section
        from tsfm_cli.stagedir import default_output
        from tsfm_cli.train.config import TrainConfig, parse_shard

        values, source = load_section(config, "train")
        device_value: int | str | None = devices
        if devices is not None and devices.isdigit():
            device_value = int(devices)
        cfg = build_config(
            TrainConfig,
            values,
            source,
            overrides={
                "archs": comma_list(archs),
                "sizes": comma_list(sizes),
                "schedule": schedule,
                "epochs": epochs,
                "steps": steps,
                "batch_size": batch_size,
                "devices": device_value,
                "num_nodes": num_nodes,
                "strategy": strategy,
                "precision": precision,
                "compile": compile_model,
                "shard": shard,
                "seed": seed,
            },
        )
        try:
            parse_shard(cfg.shard)  # before torch is imported: a typo fails fast
        except ValueError as exc:
            raise BadInputError(f"shard: {exc}") from None
        from tsfm_cli.train.stage import run_train  # imports torch and Lightning

        out = output if output is not None else default_output(splits, "train")
        return run_train(
            splits, out, cfg, reporter=reporter, command=sys.argv, wait_s=wait, runs_dir=runs_dir
        )

    from tsfm_cli.train.config import is_global_zero

    if not is_global_zero():  # a DDP worker process: rank 0 speaks for the run
        json_mode, quiet = False, True
    run_stage(work, json_mode=json_mode, quiet=quiet, debug=debug, render=_render)


def _render(summary: dict[str, Any], reporter) -> None:
    from rich.table import Table

    table = Table(title="tsfm train", show_header=False)
    if summary.get("skipped"):
        table.add_row("status", "nothing to redo (same inputs and settings)")
    for key in ("runs", "runs_ok", "runs_failed", "rows", "horizons", "shard", "out_dir"):
        if key in summary:
            table.add_row(key, str(summary[key]))
    reporter.show(table)
