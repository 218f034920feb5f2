"""`tsfm gc WORKDIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tsfm_cli.commands.common import DebugOpt, JsonOpt, QuietOpt, run_stage
from tsfm_cli.ui import Reporter


def gc_cmd(
    target: Annotated[
        Path, typer.Argument(help="A `tsfm run` workdir, or a train / embed-bench output folder.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="List what would be removed; remove nothing.")
    ] = False,
    unfinished: Annotated[
        bool,
        typer.Option(
            "--unfinished", help="Also remove unused runs that never finished (no resume later)."
        ),
    ] = False,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Remove old run folders that no current train or embed-bench output uses; print what was
    removed and the bytes freed. Only tsfm's own run folders are ever removed."""
    from tsfm_cli.gc import collect

    run_stage(
        lambda reporter: collect(target, dry_run=dry_run, unfinished=unfinished),
        json_mode=json_mode,
        quiet=quiet,
        debug=debug,
        render=_render,
    )


def _render(result: dict[str, Any], reporter: Reporter) -> None:
    verb = "would be removed" if result["dry_run"] else "removed"
    for run in result["removed"]:
        reporter.info(f"{run['path']} {verb} ({run['bytes']:,} bytes)")
    for item in result["not_removed"]:
        reporter.info(f"kept {item['path']}: {item['why']}")
    freed = "would be freed" if result["dry_run"] else "freed"
    reporter.info(
        f"{len(result['removed'])} run folders {verb}, {result['bytes_freed']:,} bytes {freed}; "
        f"{result['runs_in_use']} runs in use kept"
    )
