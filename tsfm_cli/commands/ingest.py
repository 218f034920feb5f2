"""`tsfm ingest`: the CLI layer only parses options, calls `run_ingest` and renders."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tsfm_cli.commands.common import ConfigOpt, DebugOpt, JsonOpt, QuietOpt, WaitOpt, run_stage


def ingest_cmd(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="CSV/TSV/TXT files (optionally .gz), folders or globs of plant sensor exports.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output folder [default: clean/ next to the first source].",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    timezone: Annotated[
        str | None,
        typer.Option(
            help="Plant time zone of naive timestamps, e.g. Europe/Berlin [recipe; UTC].",
            show_default=False,
        ),
    ] = None,
    freq: Annotated[
        str | None,
        typer.Option(
            help="Grid step such as 10s, 1m, 1h [recipe; median spacing].", show_default=False
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="Time of the first row of files without timestamps (ISO).", show_default=False
        ),
    ] = None,
    interval: Annotated[
        str | None,
        typer.Option(
            help="Sampling interval of files without timestamps, e.g. 3m.", show_default=False
        ),
    ] = None,
    fill: Annotated[
        str | None,
        typer.Option(help="Gap filling: none, ffill or linear [recipe; none].", show_default=False),
    ] = None,
    max_gap: Annotated[
        int | None,
        typer.Option(
            help="Longest gap (grid points) that --fill fills [recipe; 3].", show_default=False
        ),
    ] = None,
    max_missing: Annotated[
        float | None,
        typer.Option(
            help="Quality gate: exit 3 (after writing) when a series is missing more than this "
            "fraction of its points.",
            show_default=False,
        ),
    ] = None,
    gate_on: Annotated[
        str | None,
        typer.Option(
            "--gate-on",
            help="What --max-missing gates on: absent (no reading), faults (flagged by spike, "
            "stuck, range or sentinel checks) or both [recipe; both].",
            show_default=False,
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Fail (exit 2, nothing written) if any source file is unusable."
        ),
    ] = False,
    shard: Annotated[
        str,
        typer.Option(
            help="i/n: parse only the i-th of n shares of the files (by content hash) into "
            "OUTPUT-shard-i-of-n/; a final run without --shard merges them.",
        ),
    ] = "0/1",
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = 0.0,
) -> None:
    """Messy sensor CSVs → clean/: series/ on a regular grid with observed mask and flags."""

    def work(reporter):
        from tsfm_cli.ingest import IngestConfig, run_ingest
        from tsfm_cli.ingest.config import validate
        from tsfm_cli.recipe import build_config, load_section
        from tsfm_cli.stagedir import default_output

        values, source = load_section(config, "ingest")
        overrides: dict[str, Any] = {
            "timezone": timezone,
            "freq": freq,
            "start": start,
            "interval": interval,
            "fill": fill,
            "max_gap": max_gap,
            "max_missing": max_missing,
            "gate_on": gate_on,
            "strict": True if strict else None,
        }
        cfg = build_config(IngestConfig, values, source, overrides=overrides)
        validate(cfg, source.where)
        out = output if output is not None else default_output(Path(sources[0]), "ingest")
        return run_ingest(
            sources, out, cfg, reporter=reporter, command=sys.argv, wait_s=wait, shard=shard
        )

    run_stage(work, json_mode=json_mode, quiet=quiet, debug=debug, render=_render)


def _render(summary: dict, reporter) -> None:
    from rich.table import Table

    if summary.get("skipped"):
        reporter.info(f"{summary['out_dir']}: already up to date (same files, same settings)")
        return
    if "series" not in summary:  # a --shard run: parts only
        reporter.info(
            f"{summary['out_dir']}: shard {summary.get('shard')}: {summary['files_parsed']} files "
            f"parsed, {summary['files_reused']} reused, {len(summary['failed_files'])} failed; "
            "run without --shard to merge"
        )
        return
    table = Table(title=f"tsfm ingest → {summary['out_dir']}", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        (
            "files (parsed / reused / failed)",
            f"{summary['files_parsed']} / {summary['files_reused']} / "
            f"{len(summary['failed_files'])}",
        ),
        ("series", f"{summary['series']:,}"),
        ("grid points", f"{summary['points']:,}"),
        ("observed", f"{summary['observed']:,} ({1 - summary['missing_frac']:.1%})"),
        (
            "data lines (used + rejected)",
            f"{summary['lines_data']:,} = {summary['lines_used']:,} + "
            f"{summary['lines_rejected']:,}",
        ),
        ("rejects rows", f"{summary['rejects']:,}"),
        (
            "worst series",
            f"{summary['worst_series']} ({summary['worst_missing_frac']:.1%} missing)",
        ),
        (
            "worst absent / faults",
            f"{summary.get('worst_absent_series')} ({summary.get('worst_absent_frac', 0):.1%}) / "
            f"{summary.get('worst_fault_series')} ({summary.get('worst_fault_frac', 0):.1%})",
        ),
    ]
    rows += [(f"flag {name}", f"{count:,}") for name, count in summary["flags"].items() if count]
    for what, count in rows:
        table.add_row(what, count)
    reporter.show(table)
    for item in summary["failed_files"]:
        reporter.warn(f"not ingested: {item['reason']}")
