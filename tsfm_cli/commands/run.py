"""`tsfm run RECIPE`: the whole chain, make-style."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tsfm_cli.commands.common import DebugOpt, JsonOpt, QuietOpt, WaitOpt, run_stage
from tsfm_cli.ui import Reporter


def run_cmd(
    recipe: Annotated[
        Path, typer.Argument(help="Recipe with a section per stage (see recipes/quickstart.yaml).")
    ],
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir", "-w", help="Where stages write (default: the recipe's run.workdir)."
        ),
    ] = None,
    from_stage: Annotated[
        str | None,
        typer.Option(
            "--from", help="Start at this stage; earlier stages' outputs must exist already."
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Run only this stage (repeat for several)."),
    ] = None,
    wait: WaitOpt = 0.0,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run ingest → ood-split → embed-bench → train → fit into WORKDIR/<stage>/.

    Stages whose inputs and settings are unchanged are skipped, so a nightly cron rerun is cheap;
    a change reruns that stage and every one after it.
    """
    from tsfm_cli.pipeline import run_pipeline

    run_stage(
        lambda reporter: run_pipeline(
            recipe,
            workdir=workdir,
            from_stage=from_stage,
            only=only,
            reporter=reporter,
            command=sys.argv,
            wait_s=wait,
        ),
        json_mode=json_mode,
        quiet=quiet,
        debug=debug,
        render=_render,
    )


def _render(result: dict[str, Any], reporter: Reporter) -> None:
    from rich.table import Table

    table = Table(title=f"tsfm run {result['recipe']} → {result['workdir']}")
    for column in ("stage", "status", "seconds", "output", "plots"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for stage in result["stages"]:
        style = "dim" if stage["status"] == "skipped" else ""
        table.add_row(
            stage["stage"],
            stage["status"],
            f"{stage['seconds']:.1f}",
            stage["out_dir"],
            "\n".join(Path(p).name for p in stage["plots"]),
            style=style,
        )
    reporter.show(table)
