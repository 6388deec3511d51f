"""Strict CSV tables for the input files that came after ``orders.csv``.

The same house rules as :mod:`gridmatch.scenario_io.orders_csv`: a header row (row 1),
required and optional columns, no unknown or repeated column, blank lines skipped, and
every problem an :class:`~gridmatch.errors.InputError` that names the file, the row (the
file line, header = row 1, as a spreadsheet shows it) and the column. :class:`Cells`
reads one row's cells with the same id, number and time rules for every file.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gridmatch.errors import InputError
from gridmatch.scenario_io.orders_csv import MAX_ID_LENGTH
from gridmatch.units import WH_PER_KWH, exact_micro_eur, exact_wh
from gridmatch.user_files import TABLE_LIMIT_BYTES, parse_float, read_text

# A meter id names a file of the prepaid output (timelines/<meter_id>.csv): letters,
# digits, dot, dash and underscore only, not starting with a dot, as meter serials are.
METER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
# Money beyond a million EUR on one prepaid account is a typo, and stays exact in int64.
MAX_ABS_EUR = 1e6
MAX_KWH_PER_READING = 1e6
# A message quotes at most this much of a cell: a 10 MB cell must not become a 10 MB
# error line on the terminal (the row and field already say where it is).
MAX_SHOWN_CHARS = 60


def shown(value: str) -> str:
    """Return ``value`` as an error message quotes it: at most :data:`MAX_SHOWN_CHARS`.

    Parameters
    ----------
    value
        A cell's text.

    Returns
    -------
    str
        ``value`` itself when short, else its start and its length in characters.
    """
    if len(value) <= MAX_SHOWN_CHARS:
        return value
    return f"{value[:MAX_SHOWN_CHARS]}... ({len(value):,} characters)"


@dataclass(frozen=True)
class Table:
    """The rows of a validated CSV file as ``(file line, {column: stripped text})``."""

    path: Path
    header: tuple[str, ...]
    rows: tuple[tuple[int, dict[str, str]], ...]

    def cells(self) -> Iterator[Cells]:
        """Yield a :class:`Cells` reader for every non-blank row, in file order."""
        for line, record in self.rows:
            yield Cells(self.path, line, record)


def check_header(
    path: Path, header: Sequence[str], required: Sequence[str], optional: Sequence[str] = ()
) -> None:
    """Refuse a header with a missing, unknown or repeated column (row 1 of the file).

    Raises
    ------
    InputError
        Naming the columns and, for unknown ones, those allowed.
    """
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(path, f"missing column(s): {', '.join(missing)}", row=1)
    allowed = (*required, *optional)
    unknown = [c for c in header if c not in allowed]
    if unknown:
        raise InputError(
            path,
            f"unknown column(s): {', '.join(unknown)}; allowed: {', '.join(allowed)}",
            row=1,
        )
    repeated = sorted({c for c in header if list(header).count(c) > 1})
    if repeated:
        raise InputError(path, f"repeated column(s): {', '.join(repeated)}", row=1)


def read_table(
    path: Path,
    what: str,
    required: Sequence[str],
    optional: Sequence[str] = (),
    *,
    max_rows: int | None = None,
) -> Table:
    """Read a CSV file and check its header.

    Parameters
    ----------
    max_rows
        As for :func:`iter_cells`.

    Raises
    ------
    InputError
        Not a readable UTF-8 file, malformed CSV, a missing, unknown or repeated column,
        a row with the wrong number of fields, or more than ``max_rows`` rows.
    """
    header, rows = _split(path, what, required, optional, max_rows, TABLE_LIMIT_BYTES)
    return Table(path, header, tuple((cells.line, cells.record) for cells in rows))


def iter_cells(
    path: Path,
    what: str,
    required: Sequence[str],
    optional: Sequence[str] = (),
    *,
    max_rows: int | None = None,
    limit_bytes: int = TABLE_LIMIT_BYTES,
) -> Iterator[Cells]:
    """Read a CSV file, check its header and yield each non-blank row's cells in turn.

    Unlike :func:`read_table`, no row is kept once it is yielded: a caller that turns
    each row into a small record holds the records and the file's text, not a dict of
    strings per row (a 100 MB telemetry file as a :class:`Table` took 2 GB).

    Parameters
    ----------
    max_rows
        Refuse a file of more lines than this plus its header before any row is split
        (lines are counted in the text: blank lines and line breaks inside quoted cells
        count too, so the bound errs on refusing); ``None``: only the size limit.
    limit_bytes
        The largest file read (a tighter one than tables' refuses before the text of a
        file that ``max_rows`` would refuse is decoded).

    Raises
    ------
    InputError
        As :func:`read_table`, the header's problems before the first row is yielded.
    """
    _, rows = _split(path, what, required, optional, max_rows, limit_bytes)
    return rows


def _split(
    path: Path,
    what: str,
    required: Sequence[str],
    optional: Sequence[str],
    max_rows: int | None,
    limit_bytes: int,
) -> tuple[tuple[str, ...], Iterator[Cells]]:
    text = read_text(path, limit_bytes, what, bom=True)
    if max_rows is not None:
        lines = max(text.count("\n"), text.count("\r")) + (not text.endswith(("\n", "\r")))
        if lines - 1 > max_rows:
            raise InputError(
                path, f"{lines:,} lines: the {what} may have at most {max_rows:,} rows"
            )
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        first = next(reader, None)
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV: {exc}") from None
    if first is None:
        raise InputError(path, "the file is empty; expected a header row")
    header = tuple(name.strip() for name in first)
    check_header(path, header, required, optional)
    return header, _rows(path, header, reader)


def _rows(path: Path, header: tuple[str, ...], reader: Iterator[list[str]]) -> Iterator[Cells]:
    # The row of a record as a spreadsheet numbers it (header = row 1), not its last
    # file line: a quoted cell may hold a line break.
    line = 1
    while True:
        try:
            values = next(reader, None)
        except csv.Error as exc:
            raise InputError(path, f"malformed CSV: {exc}") from None
        if values is None:
            return
        line += 1
        if not any(v.strip() for v in values):
            continue  # blank lines at the end of hand-edited files
        if len(values) != len(header):
            raise InputError(path, f"expected {len(header)} fields, found {len(values)}", row=line)
        yield Cells(path, line, {n: v.strip() for n, v in zip(header, values, strict=True)})


@dataclass(frozen=True)
class Cells:
    """One row's cells, read by column with the house rules; errors name file, row, column."""

    path: Path
    line: int
    record: dict[str, str]

    def fail(self, field: str, message: str) -> InputError:
        """Return the error about ``field`` of this row."""
        return InputError(self.path, message, row=self.line, field=field)

    def has(self, field: str) -> bool:
        """Whether the file has the (optional) column ``field``."""
        return field in self.record

    def text(self, field: str) -> str:
        """Return the non-empty text of ``field``."""
        value = self.record[field]
        if not value:
            raise self.fail(field, "is empty")
        return value

    def identifier(self, field: str) -> str:
        """Read an id as orders.csv has them: printable, at most 200 characters, no leading '."""
        value = self.text(field)
        if len(value) > MAX_ID_LENGTH:
            raise self.fail(field, f"is {len(value)} characters long; at most {MAX_ID_LENGTH}")
        if not value.isprintable():
            raise self.fail(field, "holds a control character (only printable text is an id)")
        if value.startswith("'"):
            raise self.fail(field, "may not start with an apostrophe")
        return value

    def meter_id(self, field: str = "meter_id") -> str:
        """Read a meter id: it names an output file, so only ``[A-Za-z0-9._-]``, at most 100."""
        value = self.text(field)
        if not METER_ID_PATTERN.match(value):
            shown = value.encode("unicode_escape").decode("ascii")[:60]
            raise self.fail(
                field,
                f"'{shown}' is not a meter id: letters, digits, '.', '_' and '-' only "
                "(not starting with '.'), at most 100 characters",
            )
        return value

    def finite(self, field: str) -> float:
        """Read a finite number written in ASCII decimals (bounds are the caller's)."""
        value = self.text(field)
        try:
            parsed = parse_float(value)
        except ValueError:
            raise self.fail(field, f"'{shown(value)}' is not a number") from None
        if not math.isfinite(parsed):
            raise self.fail(field, f"'{shown(value)}' is not finite")
        return parsed

    def micro_eur(self, field: str, *, minimum_eur: float, positive: bool = False) -> int:
        """Read an amount in EUR (at most six decimals) as whole micro-EUR."""
        value = self.text(field)
        parsed = self.finite(field)
        if positive and parsed <= 0.0:
            raise self.fail(field, f"{shown(value)} must be greater than 0")
        if parsed < minimum_eur:
            raise self.fail(field, f"{shown(value)} is below {minimum_eur:g}")
        if abs(parsed) > MAX_ABS_EUR:
            raise self.fail(field, f"{shown(value)} is beyond {MAX_ABS_EUR:g} EUR")
        try:
            return exact_micro_eur(value)
        except ValueError as exc:
            raise self.fail(field, str(exc)) from None

    def wh(self, field: str) -> int:
        """Read an energy in kWh (>= 0, whole Wh: at most three decimals) as whole Wh."""
        value = self.text(field)
        try:
            kwh = parse_float(value)
        except ValueError:
            raise self.fail(field, f"'{shown(value)}' is not a number") from None
        if not math.isfinite(kwh):
            raise self.fail(field, f"'{shown(value)}' is not finite")
        if kwh < 0.0:
            raise self.fail(field, f"{shown(value)} is negative")
        if kwh > MAX_KWH_PER_READING:
            raise self.fail(field, f"{shown(value)} is larger than {MAX_KWH_PER_READING:g}")
        if abs(kwh * WH_PER_KWH - round(kwh * WH_PER_KWH)) > 1e-6:
            raise self.fail(field, f"{shown(value)} is finer than 1 Wh (0.001 kWh)")
        return int(exact_wh(kwh))

    def timestamp(self, field: str = "timestamp") -> datetime:
        """Read an ISO-8601 time with a UTC offset (``2026-03-02T07:15:00+01:00``, ``...Z``)."""
        value = self.text(field)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise self.fail(field, f"'{shown(value)}' is not an ISO-8601 time") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise self.fail(field, f"'{shown(value)}' has no UTC offset (e.g. +01:00 or Z)")
        return parsed
