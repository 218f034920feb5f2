"""Options and error handling shared by every subcommand."""

from __future__ import annotations

import errno
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from tsfm_cli.errors import EXIT_RUNTIME, QualityGateError, TsfmError
from tsfm_cli.ui import Reporter, stderr_console

SplitsArg = Annotated[Path, typer.Argument(help="An ood-split directory (splits/).")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML recipe (flat, or with a section per stage); CLI options override it.",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one machine-readable JSON summary to stdout.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success (cron).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", help="Seed for every random choice.", show_default=False)
]
RunsDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--runs-dir",
        help="Per-run state (checkpoints, rows) (default: OUTPUT.runs/ next to OUTPUT).",
        show_default=False,
    ),
]
WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait",
        help="Seconds to wait for another run writing the same output before giving up.",
    ),
]


def comma_list(text: str | None) -> list[str] | None:
    """`--archs encoder,decoder` → ["encoder", "decoder"]; None when the option was not given."""
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def emit_json(summary: Any) -> None:
    sys.stdout.write(json.dumps(summary, indent=None, default=str) + "\n")
    sys.stdout.flush()


def run_stage(
    work: Callable[[Reporter], Any],
    *,
    json_mode: bool,
    quiet: bool,
    debug: bool,
    render: Callable[[Any, Reporter], None],
) -> None:
    """Run a stage for the CLI: one clear line and the documented exit code on failure."""
    reporter = Reporter.for_cli(quiet=quiet or json_mode)
    try:
        result = work(reporter)
    except QualityGateError as exc:
        if json_mode and exc.summary is not None:
            emit_json(exc.summary)
        _fail(str(exc), exc.exit_code)
    except TsfmError as exc:
        if debug:
            traceback.print_exc()
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if debug:
            raise
        if isinstance(exc, OSError) or DISK_FULL in str(exc):
            _fail(os_error_line(exc), EXIT_RUNTIME)
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            EXIT_RUNTIME,
        )
    if json_mode:
        emit_json(result)
    elif not quiet:
        render(result, Reporter.for_cli(quiet=False))


DISK_FULL = os.strerror(errno.ENOSPC)  # "No space left on device"


def os_error_line(exc: BaseException) -> str:
    """One line for a failed read or write (disk full, permission, …): which file, what happened,
    and that the previous output is intact (stages write into a temporary sibling)."""
    where = getattr(exc, "filename", None)
    if getattr(exc, "errno", None) == errno.ENOSPC or DISK_FULL in str(exc):
        what = "disk full (no space left on device)"
    else:
        what = getattr(exc, "strerror", None) or str(exc)
    return (
        f"{where or 'writing the output'}: {what}; nothing was replaced (the previous output, "
        "if any, is intact); free space or fix the permission and rerun"
    )


def _fail(message: str, code: int) -> NoReturn:
    # Errors are printed even under --quiet: cron must still say why it failed.
    from rich.text import Text

    stderr_console().print(Text.assemble(("error: ", "red"), message), soft_wrap=True)
    raise typer.Exit(code)
