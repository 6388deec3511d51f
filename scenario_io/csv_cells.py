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
    path: Path, what: str, required: Sequence[str], optional: Sequence[str] = ()
) -> Table:
    """Read a CSV file and check its header.

    Raises
    ------
    InputError
        Not a readable UTF-8 file, malformed CSV, a missing, unknown or repeated column,
        or a row with the wrong number of fields.
    """
    text = read_text(path, TABLE_LIMIT_BYTES, what, bom=True)
    try:
        lines = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV: {exc}") from None
    if not lines:
        raise InputError(path, "the file is empty; expected a header row")
    header = tuple(name.strip() for name in lines[0])
    check_header(path, header, required, optional)
    rows = []
    for line, values in enumerate(lines[1:], start=2):
        if not any(v.strip() for v in values):
            continue  # blank lines at the end of hand-edited files
        if len(values) != len(header):
            raise InputError(path, f"expected {len(header)} fields, found {len(values)}", row=line)
        rows.append((line, {n: v.strip() for n, v in zip(header, values, strict=True)}))
    return Table(path, header, tuple(rows))


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
            raise self.fail(field, f"'{value}' is not a number") from None
        if not math.isfinite(parsed):
            raise self.fail(field, f"'{value}' is not finite")
        return parsed

    def micro_eur(self, field: str, *, minimum_eur: float, positive: bool = False) -> int:
        """Read an amount in EUR (at most six decimals) as whole micro-EUR."""
        value = self.text(field)
        parsed = self.finite(field)
        if positive and parsed <= 0.0:
            raise self.fail(field, f"{value} must be greater than 0")
        if parsed < minimum_eur:
            raise self.fail(field, f"{value} is below {minimum_eur:g}")
        if abs(parsed) > MAX_ABS_EUR:
            raise self.fail(field, f"{value} is beyond {MAX_ABS_EUR:g} EUR")
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
            raise self.fail(field, f"'{value}' is not a number") from None
        if not math.isfinite(kwh):
            raise self.fail(field, f"'{value}' is not finite")
        if kwh < 0.0:
            raise self.fail(field, f"{value} is negative")
        if kwh > MAX_KWH_PER_READING:
            raise self.fail(field, f"{value} is larger than {MAX_KWH_PER_READING:g}")
        if abs(kwh * WH_PER_KWH - round(kwh * WH_PER_KWH)) > 1e-6:
            raise self.fail(field, f"{value} is finer than 1 Wh (0.001 kWh)")
        return int(exact_wh(kwh))

    def timestamp(self, field: str = "timestamp") -> datetime:
        """Read an ISO-8601 time with a UTC offset (``2026-03-02T07:15:00+01:00``, ``...Z``)."""
        value = self.text(field)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise self.fail(field, f"'{value}' is not an ISO-8601 time") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise self.fail(field, f"'{value}' has no UTC offset (e.g. +01:00 or Z)")
        return parsed
