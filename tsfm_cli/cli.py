"""`tsfm`: the command-line entry point. It only wires subcommands together."""

from __future__ import annotations

from typing import Annotated

import typer

from tsfm_cli import __version__
from tsfm_cli.commands.embed_bench import embed_bench_cmd
from tsfm_cli.commands.fit import fit_cmd
from tsfm_cli.commands.gc import gc_cmd
from tsfm_cli.commands.ingest import ingest_cmd
from tsfm_cli.commands.inspect import inspect_cmd
from tsfm_cli.commands.ood_split import ood_split_cmd
from tsfm_cli.commands.run import run_cmd
from tsfm_cli.commands.train import train_cmd

app = typer.Typer(
    name="tsfm",
    help=(
        "Scaling laws for time-series foundation models on your own sensors: "
        "ingest → ood-split → train / embed-bench → fit."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"tsfm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Scaling laws for time-series foundation models on your own sensors."""


# Subcommands register themselves here, one line each, once they work.
app.command("ingest")(ingest_cmd)
app.command("ood-split")(ood_split_cmd)
app.command("embed-bench")(embed_bench_cmd)
app.command("train")(train_cmd)
app.command("fit")(fit_cmd)
app.command("run")(run_cmd)
app.command("inspect")(inspect_cmd)
app.command("gc")(gc_cmd)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
