"""`tsfm ood-split`: the CLI layer only parses options, calls `run_ood_split` and renders."""

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
    SeedOpt,
    WaitOpt,
    run_stage,
)
from tsfm_cli.ui import Reporter


def _list_families() -> None:
    from rich.console import Console
    from rich.table import Table

    from tsfm_cli.drift import FAMILIES

    table = Table(title="drift families (severity in (0, 10], scaled to each window's spread)")
    table.add_column("family")
    table.add_column("parameters")
    table.add_column("description")
    for family in FAMILIES.values():
        params = "; ".join(f"{k} = {v}" for k, v in family.params.items())
        table.add_row(family.name, params, family.description)
    Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 160).print(
        table
    )


def _render(summary: dict[str, Any], reporter: Reporter) -> None:
    from rich.table import Table

    if summary.get("skipped"):
        reporter.info(f"{summary['out_dir']}: up to date (same input and settings); nothing redone")
        return
    if "shard" in summary:
        reporter.info(
            f"ood-split shard {summary['shard']} → {summary['out_dir']}: {summary['windows']} "
            f"windows of {summary['series']} series; rerun without --shard to merge"
        )
        return
    table = Table(title=f"ood-split → {summary['out_dir']}")
    for column in ("scenario", "kind", "windows", "KS", "Wasserstein"):
        table.add_column(column, justify="left" if column in ("scenario", "kind") else "right")
    for row in summary["scenarios"]:
        ks, w = row["ks"], row["wasserstein"]
        table.add_row(
            row["scenario"],
            row["kind"],
            str(row["n_windows"]),
            "-" if ks is None else f"{ks:.3f}",
            "-" if w is None else f"{w:.3f}",
        )
    reporter.show(table)
    reporter.info(
        f"{summary['series']} series ({summary['series_too_short']} too short, "
        f"{summary['heldout_series']} held out); train rows {summary['train_rows']}; "
        f"eval windows {summary['eval_windows']}; context {summary['context_length']}, "
        f"horizons {summary['horizons']}"
    )


def ood_split_cmd(
    input_dir: Annotated[
        Path | None,
        typer.Argument(
            help="An ingest output directory (holding the series/ dataset).", show_default=False
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output directory (default: splits/ next to INPUT)."),
    ] = None,
    config: ConfigOpt = None,
    context_length: Annotated[
        int | None, typer.Option(help="Context points per window (default: 512).")
    ] = None,
    horizon: Annotated[
        list[int] | None,
        typer.Option(
            "--horizon", help="Target length in time points; repeat for several (default: 32, 128)."
        ),
    ] = None,
    stride: Annotated[
        int | None, typer.Option(help="Points between window starts (default: the horizon).")
    ] = None,
    max_windows: Annotated[
        int | None, typer.Option(help="Windows per series, scenario and horizon (default: 64).")
    ] = None,
    synthetic_windows: Annotated[
        int | None,
        typer.Option(help="ID windows per series and horizon that get each drift (default: 8)."),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(
            help="Share of each series' training period, at its end, whose windows validate "
            "(scenario val; default: 0.1; 0 = none)."
        ),
    ] = None,
    heldout: Annotated[
        list[str] | None,
        typer.Option(
            "--heldout",
            help="Hold out a group: KEY=VALUE, or KEY (one value picked by the seed). Repeatable.",
        ),
    ] = None,
    family: Annotated[
        list[str] | None,
        typer.Option("--family", help="Drift family to apply; repeatable (default: all)."),
    ] = None,
    severity: Annotated[
        list[float] | None,
        typer.Option("--severity", help="Drift severity; repeatable (default: 1, 2, 3)."),
    ] = None,
    onset: Annotated[
        str | None,
        typer.Option(help="Drift onset: 'context' (visible) or 'target' (default: context)."),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            help="Cut the windows of the i-th of n shares of the series, e.g. 0/4 (writes "
            "OUTPUT-shard-0-of-4/; rerun without --shard to merge).",
        ),
    ] = None,
    list_families: Annotated[
        bool, typer.Option("--list", help="List the drift families and exit.")
    ] = False,
    seed: SeedOpt = None,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = 0.0,
) -> None:
    """Build train.parquet plus ID, natural and synthetic-drift evaluation scenarios."""
    if list_families:
        _list_families()
        return

    def work(reporter: Reporter) -> dict[str, Any]:
        from tsfm_cli.errors import BadInputError
        from tsfm_cli.ood import OodConfig, run_ood_split
        from tsfm_cli.recipe import build_config, load_section
        from tsfm_cli.stagedir import default_output

        if input_dir is None:
            raise BadInputError("missing INPUT: the ingest directory to split (or use --list)")
        values, source = load_section(config, "ood-split")
        overrides = {
            "context_length": context_length,
            "horizons": horizon or None,
            "stride": stride,
            "max_windows": max_windows,
            "synthetic_windows": synthetic_windows,
            "val_fraction": val_fraction,
            "heldout": heldout or None,
            "families": family or None,
            "severities": severity or None,
            "onset": onset,
            "seed": seed,
        }
        cfg = build_config(OodConfig, values, source, overrides=overrides)
        out = output or default_output(input_dir, "ood-split")
        return run_ood_split(
            input_dir,
            out,
            cfg,
            reporter=reporter,
            command=sys.argv,
            wait_s=wait,
            source=source,
            shard=shard or "0/1",
        )

    run_stage(work, json_mode=json_mode, quiet=quiet, debug=debug, render=_render)
