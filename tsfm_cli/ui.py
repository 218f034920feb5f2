"""Talking to people and pipelines (DESIGN §2).

Human output goes to stderr; progress bars only when stderr is a terminal; `--quiet` silences
everything on success; `--json` output is written by the CLI layer to stdout, never from here.
Stage code receives a `Reporter` and never prints directly, so library use stays silent.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from rich.console import Console


class ProgressTask(Protocol):
    def advance(self, amount: float = 1, **fields: Any) -> None: ...

    def update(self, **fields: Any) -> None: ...


class _SilentTask:
    def advance(self, amount: float = 1, **fields: Any) -> None:
        pass

    def update(self, **fields: Any) -> None:
        pass


class _RichTask:
    def __init__(self, progress: Any, task_id: Any) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, amount: float = 1, **fields: Any) -> None:
        self._progress.update(self._task_id, advance=amount, **fields)

    def update(self, **fields: Any) -> None:
        self._progress.update(self._task_id, **fields)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


@dataclass
class Reporter:
    """What a stage uses to tell the user about its work."""

    quiet: bool = True
    console: Console | None = None

    @classmethod
    def for_cli(cls, quiet: bool) -> Reporter:
        return cls(quiet=quiet, console=None if quiet else stderr_console())

    @property
    def interactive(self) -> bool:
        return not self.quiet and self.console is not None and sys.stderr.isatty()

    def info(self, message: str) -> None:
        if not self.quiet and self.console is not None:
            self.console.print(message)

    def warn(self, message: str) -> None:
        if not self.quiet and self.console is not None:
            self.console.print(f"[yellow]warning:[/yellow] {message}")

    def show(self, renderable: Any) -> None:
        """A Rich table or panel, for people only."""
        if not self.quiet and self.console is not None:
            self.console.print(renderable)

    @contextlib.contextmanager
    def progress(
        self, description: str, total: float | None, unit: str = ""
    ) -> Iterator[ProgressTask]:
        """A progress bar on a terminal; nothing at all in logs, pipes and cron."""
        if not self.interactive:
            yield _SilentTask()
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=self.console, transient=True) as progress:
            task_id = progress.add_task(description, total=total, status="")
            yield _RichTask(progress, task_id)
