"""The one error type raised for bad user input."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A user-supplied file is missing, malformed or inconsistent.

    Parameters
    ----------
    path
        The file the problem is in.
    message
        What is wrong, in words a user can act on.
    row
        1-based data row (CSV rows count after the header), if the problem is in one row.
    field
        Column or key the problem is in, if any.
    """

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
