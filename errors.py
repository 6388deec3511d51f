"""The one exception root of gridmatch, its families, and the exit code of each.

Every error gridmatch raises on purpose derives from :class:`GridmatchError` and carries
the exit code the command line ends with. Families, not individual errors, own the
codes; :func:`exit_code_for` is the one place that maps any exception to one, and
``cli.py`` the one place that turns it into a message. Nothing below the command line
catches anything broader than these classes, so a bug surfaces as a bug.
"""

from __future__ import annotations

import sqlite3
from enum import IntEnum
from pathlib import Path
from typing import Any, ClassVar


class ExitCode(IntEnum):
    """Exit codes of the ``gridmatch`` command (also listed in the README)."""

    OK = 0
    # `rounds rerun`: the command worked, and the trades are not byte-identical.
    DIFFERENT = 1
    # Invalid input or usage: a file, an option, an output folder; nothing was written.
    INPUT = 2
    # A solver failed or is missing, or an allocation failed the consistency check.
    SOLVER = 3
    # The chain: a reverted or refused transaction, an unreachable node, forge or anvil.
    CHAIN = 4
    # A compute cluster (Dask) that cannot be started or reached.
    CLUSTER = 5
    # A bug in gridmatch (an exception nobody expected); the message asks for a report.
    INTERNAL = 6
    # Stopped by Ctrl-C (SIGINT), as shells report it.
    INTERRUPTED = 130
    # Stopped by SIGTERM (a service manager, a CI timeout, `kill`), as shells report it.
    TERMINATED = 143


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C, so anvil is stopped and staged output dropped.

    A ``BaseException`` like :class:`KeyboardInterrupt`: no ``except Exception`` on the
    way out may swallow it.
    """


class GridmatchError(Exception):
    """Root of every error gridmatch raises on purpose.

    Subclasses set :attr:`exit_code`; the command line prints ``label: message``.
    """

    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL
    label: ClassVar[str] = "error"

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other arguments than their message: a worker process's error
        # crosses back to the parent whole (path, row, field), not rebuilt from args.
        return (_restore_error, (type(self), self.args, dict(self.__dict__)))


def _restore_error(
    cls: type[GridmatchError], args: tuple[Any, ...], state: dict[str, Any]
) -> GridmatchError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class InputError(GridmatchError):
    """A user-supplied file is missing, malformed or inconsistent.

    Parameters
    ----------
    path
        The file the problem is in.
    message
        What is wrong, in words a user can act on.
    row
        The file line the problem is on (a CSV header is row 1), if it is in one row.
    field
        Column or key the problem is in, if any.
    """

    exit_code = ExitCode.INPUT

    def __init__(
        self, path: Path | str, message: str, *, row: int | None = None, field: str | None = None
    ) -> None:
        self.path = Path(path)
        self.row = row
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = str(self.path)
        if self.row is not None:
            where += f", row {self.row}"
        if self.field is not None:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


class UsageError(GridmatchError):
    """Options or arguments that cannot work together, or a command given at the wrong time."""

    exit_code = ExitCode.INPUT


class OutputFolderError(GridmatchError):
    """An output folder that cannot be written without losing someone's files."""

    exit_code = ExitCode.INPUT


class SolverError(GridmatchError):
    """A solver failed, is not installed, or returned an allocation that breaks the rules."""

    exit_code = ExitCode.SOLVER
    label = "solver failure"


class ChainError(GridmatchError):
    """A transaction reverted or was refused, or the node cannot be reached."""

    exit_code = ExitCode.CHAIN
    label = "chain"


class ToolchainError(ChainError):
    """forge or anvil is missing or failed."""


class ClusterError(GridmatchError):
    """A compute cluster cannot be started or reached."""

    exit_code = ExitCode.CLUSTER
    label = "cluster"


def exit_code_for(exc: BaseException) -> ExitCode:
    """Return the exit code an exception ends the command with.

    Our own errors carry theirs. A file system or database failure (a folder that cannot
    be written, a full disk, a locked ledger) is a problem with what the user pointed us
    at; nothing half-written stays behind (atomic folders, one transaction per round).
    Ctrl-C and SIGTERM are interruptions; anything else is a bug.
    """
    if isinstance(exc, GridmatchError):
        return exc.exit_code
    if isinstance(exc, OSError | sqlite3.Error):
        return ExitCode.INPUT
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, Terminated):
        return ExitCode.TERMINATED
    return ExitCode.INTERNAL
