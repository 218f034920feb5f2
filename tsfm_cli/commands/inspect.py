"""`tsfm inspect DIR`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tsfm_cli.commands.common import DebugOpt, JsonOpt, run_stage
from tsfm_cli.ui import Reporter

WIDE_COLUMN = 14  # terminal characters a preview column needs to stay readable


def inspect_cmd(
    directory: Annotated[Path, typer.Argument(help="A stage directory (clean/, splits/, …).")],
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            help="Show only this output file (`series` for the series dataset).",
            show_default=False,
        ),
    ] = None,
    rows: Annotated[int, typer.Option("--rows", "-n", min=0, help="Preview rows per file.")] = 5,
    json_mode: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show a stage directory: its manifest, row counts, schemas and a preview of each file."""
    from tsfm_cli.inspect import inspect_dir

    run_stage(
        lambda reporter: inspect_dir(directory, rows=rows, only=file),
        json_mode=json_mode,
        quiet=False,
        debug=debug,
        render=_render,
    )


def _render(info: dict[str, Any], reporter: Reporter) -> None:
    from rich.table import Table

    head = Table(title=f"{info['path']} — stage {info['stage']}", show_header=False)
    for key in ("schema_version", "tsfm_version", "created_utc"):
        head.add_row(key, str(info[key]))
    head.add_row("command", " ".join(map(str, info["command"] or [])))
    for key, value in (info["summary"] or {}).items():
        head.add_row(f"summary.{key}", json.dumps(value, default=str)[:120])
    reporter.show(head)

    files = Table(title="outputs")
    for column in ("file", "rows", "bytes", "columns", "problem"):
        files.add_column(column, justify="right" if column in ("rows", "bytes") else "left")
    for name, entry in info["files"].items():
        files.add_row(
            name,
            str(entry.get("rows", "")),
            f"{entry.get('bytes', 0):,}",
            str(len(entry.get("schema", {})) or ""),
            entry.get("problem", ""),
        )
    reporter.show(files)

    width = reporter.console.width if reporter.console is not None else 100
    for name, entry in info["files"].items():
        if "schema" not in entry:
            continue
        title = f"{name}: first {len(entry['preview'])} of {entry['rows']} rows"
        cells = [
            [json.dumps(v, default=str, ensure_ascii=False) for v in row.values()]
            for row in entry["preview"]
        ]
        if len(entry["schema"]) <= max(3, width // WIDE_COLUMN):
            preview = Table(title=title)
            for column, dtype in entry["schema"].items():
                preview.add_column(f"{column}\n[dim]{dtype}[/dim]", overflow="fold")
            for row in cells:
                preview.add_row(*row)
        else:  # too many columns to fit side by side (results.parquet: 33): one line per column
            preview = Table(title=f"{title} (one line per column)")
            preview.add_column("column", no_wrap=True)
            preview.add_column("type", style="dim", no_wrap=True)
            for i in range(len(cells)):
                preview.add_column(f"row {i + 1}", overflow="fold")
            for j, (column, dtype) in enumerate(entry["schema"].items()):
                preview.add_row(column, dtype, *(row[j] for row in cells))
        reporter.show(preview)
