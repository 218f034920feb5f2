"""Errors that map to the documented exit codes (DESIGN §2).

Stage code raises these; the CLI layer turns them into one line on stderr and the exit code.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2
EXIT_QUALITY_GATE = 3


class TsfmError(Exception):
    """A failure the user should read as one line; exit code 1 (runtime failure)."""

    exit_code = EXIT_RUNTIME


class BadInputError(TsfmError):
    """Usage or bad input: a missing path, a wrong stage directory, an unknown recipe key."""

    exit_code = EXIT_BAD_INPUT


class QualityGateError(TsfmError):
    """A quality gate failed (e.g. `ingest --max-missing`); outputs were still written."""

    exit_code = EXIT_QUALITY_GATE

    def __init__(self, message: str, summary: object | None = None) -> None:
        super().__init__(message)
        self.summary = summary


class LockedError(TsfmError):
    """Another run holds the lock on the output directory."""

    exit_code = EXIT_RUNTIME
