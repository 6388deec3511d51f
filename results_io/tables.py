"""Typed CSV tables: a frozen dataclass is a row, its fields are the columns.

Columns are derived from the fields, in order; a field that is itself a dataclass
contributes its own columns in its place (``OrderRow.order`` gives the input columns
of an order). Values are written so that reading gives the same value back:

* ``float`` with ``repr`` (full precision, exact round trip), ``int`` and ``str`` as
  they are, ``bool`` as ``true``/``false``, an enum by its value.

Reading checks every cell and names the file, the row (its file line, header = row 1,
as a spreadsheet shows it) and the column of the first bad one. Constraints beyond the
type sit in each field's metadata: ``{"min": 0}`` (number >= 0), ``{"nonfinite": True}``
(NaN and infinities allowed; otherwise a float must be finite), ``{"nonempty": True}``.
Columns a reader does not know are ignored, so an older reader reads a newer file.

Text that a spreadsheet would run as a formula (a cell starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return, as OWASP lists them) is written with a leading
apostrophe, and the apostrophe is removed again on reading: ``=HYPERLINK(...)`` as an
order id stays an id in every file and never becomes a link or a command in Excel or
LibreOffice. (Input ids cannot start with an apostrophe, so nothing is ambiguous.)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import operator
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import pandas as pd

from gridmatch.errors import InputError
from gridmatch.user_files import parse_float, parse_int

Row = TypeVar("Row")
Parser = Callable[[str], Any]

NON_NEGATIVE = {"min": 0}
NONEMPTY = {"nonempty": True}
ANY_FLOAT = {"nonfinite": True}


@dataclasses.dataclass(frozen=True)
class _Column:
    name: str
    kind: type
    metadata: Any


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How a dataclass maps to columns: the flat columns, and how to rebuild it."""

    columns: tuple[_Column, ...]
    # Per field: (name, nested layout or None); nested fields take several columns.
    build: tuple[tuple[str, type | None], ...]


_LAYOUTS: dict[type, _Layout] = {}


def _layout(cls: type) -> _Layout:
    if cls not in _LAYOUTS:
        _LAYOUTS[cls] = _derive_layout(cls)
    return _LAYOUTS[cls]


def _derive_layout(cls: type) -> _Layout:
    hints = get_type_hints(cls)
    columns: list[_Column] = []
    build: list[tuple[str, type | None]] = []
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            assert isinstance(kind, type)
            columns.extend(_layout(kind).columns)
            build.append((field.name, kind))
        else:
            columns.append(_Column(field.name, kind, field.metadata))
            build.append((field.name, None))
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise TypeError(f"{cls.__name__}: two fields give the same column")
    return _Layout(tuple(columns), tuple(build))


def columns(cls: type) -> tuple[str, ...]:
    """Return the column names of a row class, in order."""
    return tuple(c.name for c in _layout(cls).columns)


_VALUES: dict[type, Callable[[object], list[object]]] = {}


def _values_of(cls: type) -> Callable[[object], list[object]]:
    """Return a function giving a row's cell values, in column order.

    Built once per class from its layout (one ``attrgetter``, nested rows spread in
    their place) rather than walking ``dataclasses.fields`` for every row: a DER
    result writes some 60,000 event rows per meter-year.
    """
    if cls not in _VALUES:
        build = _layout(cls).build
        if not build:  # attrgetter needs a name; a row of no columns is empty
            _VALUES[cls] = lambda row: []
            return _VALUES[cls]
        getter = operator.attrgetter(*(name for name, _ in build))
        # attrgetter of one name gives the bare value, of several a tuple.
        get: Callable[[object], tuple[object, ...]] = (
            getter if len(build) > 1 else lambda row: (getter(row),)
        )
        nested = {k: _values_of(kind) for k, (_, kind) in enumerate(build) if kind is not None}
        if not nested:
            _VALUES[cls] = lambda row: list(get(row))
        else:

            def values(row: object) -> list[object]:
                out: list[object] = []
                for k, value in enumerate(get(row)):
                    if k in nested:
                        out.extend(nested[k](value))
                    else:
                        out.append(value)
                return out

            _VALUES[cls] = values
    return _VALUES[cls]


_FRAME_DTYPES = {int: "int64", float: "float64", bool: "bool"}


def to_frame(cls: type[Row], rows: Iterable[Row]) -> pd.DataFrame:
    """Rows as a pandas frame: one column per column of the class, enums as their text.

    Columns keep their type even with no rows (numbers stay numbers).
    """
    layout = _layout(cls)
    values = _values_of(cls)
    records = [
        [value.value if isinstance(value, Enum) else value for value in values(row)] for row in rows
    ]
    frame = pd.DataFrame.from_records(records, columns=[c.name for c in layout.columns])
    dtypes = {c.name: _FRAME_DTYPES.get(c.kind, "object") for c in layout.columns}
    return frame.astype(dtypes)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """Prefix a formula-like text with an apostrophe, as OWASP recommends for CSV files."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def restore(text: str) -> str:
    """Undo :func:`neutralise`."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


def _text(value: object) -> str:
    # The common types by identity first (bool is not int here): rows have many cells.
    kind = type(value)
    if kind is float:
        return repr(value)
    if kind is str:
        return neutralise(value)  # type: ignore[arg-type]
    if kind is int:
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return neutralise(value)
    return str(value)


def to_csv(cls: type[Row], rows: Iterable[Row]) -> str:
    """Return the CSV text of ``rows`` (header first, one line per row)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns(cls))
    values = _values_of(cls)
    writer.writerows([_text(value) for value in values(row)] for row in rows)
    return text.getvalue()


def from_csv(cls: type[Row], text: str, path: Path) -> list[Row]:
    """Read the rows of a CSV text written by :func:`to_csv` (or by hand), checking every cell.

    Raises
    ------
    InputError
        Naming ``path``, the row and the column of the first problem.
    """
    return [row for _, row in numbered_from_csv(cls, text, path)]


def numbered_from_csv(cls: type[Row], text: str, path: Path) -> list[tuple[int, Row]]:
    """:func:`from_csv`, each row with its file line (header = 1), for later checks."""
    layout = _layout(cls)
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(path, "the file is empty; expected a header row") from None
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV: {exc}", row=1) from None
    header = [name.strip() for name in header]
    missing = [c.name for c in layout.columns if c.name not in header]
    if missing:
        raise InputError(path, "column missing from the header", row=1, field=missing[0])
    positions = [header.index(c.name) for c in layout.columns]
    parsers = [_parser(c) for c in layout.columns]
    rows: list[tuple[int, Row]] = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InputError(path, f"malformed CSV: {exc}", row=reader.line_num) from None
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # a blank line (a hand-edited file's last line)
        if len(cells) != len(header):
            raise InputError(path, f"expected {len(header)} fields, found {len(cells)}", row=line)
        values: list[Any] = []
        for column, position, parse in zip(layout.columns, positions, parsers, strict=True):
            try:
                values.append(parse(cells[position].strip()))
            except ValueError as exc:
                raise InputError(path, str(exc), row=line, field=column.name) from None
        rows.append((line, _build(cls, layout, iter(values))))
    return rows


def _build(cls: type[Row], layout: _Layout, values: Iterator[Any]) -> Row:
    arguments = {}
    for name, nested in layout.build:
        if nested is None:
            arguments[name] = next(values)
        else:
            arguments[name] = _build(nested, _layout(nested), values)
    return cls(**arguments)


def _parser(column: _Column) -> Parser:
    kind, metadata = column.kind, column.metadata
    if kind is bool:
        return _parse_bool
    if isinstance(kind, type) and issubclass(kind, Enum):
        return _enum_parser(kind)
    if kind is int:
        return _number_parser(_parse_int, metadata)
    if kind is float:
        return _number_parser(_parse_float, metadata)
    if kind is str:
        return _parse_nonempty if metadata.get("nonempty") else restore
    raise TypeError(f"no CSV form for column {column.name} of type {kind}")


def _parse_bool(text: str) -> bool:
    if text in ("true", "false"):
        return text == "true"
    raise ValueError(f"expected true or false, got '{text}'")


def _enum_parser(kind: type[Enum]) -> Parser:
    choices = ", ".join(str(member.value) for member in kind)

    def parse(text: str) -> Enum:
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"'{text}' is not one of: {choices}") from None

    return parse


def _parse_int(text: str) -> int:
    try:
        return parse_int(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a whole number") from None


def _parse_float(text: str) -> float:
    try:
        return parse_float(text)
    except ValueError:
        raise ValueError(f"not a number: '{text}'") from None


def _parse_nonempty(text: str) -> str:
    if not text:
        raise ValueError("is empty")
    return restore(text)


def _number_parser(parse: Callable[[str], float], metadata: Any) -> Parser:
    minimum = metadata.get("min")
    finite_only = not metadata.get("nonfinite", False)

    def checked(text: str) -> float:
        value = parse(text)
        if finite_only and not math.isfinite(value):
            raise ValueError(f"'{text}' is not finite")
        if minimum is not None and value < minimum:
            raise ValueError(f"{text} is below {minimum}")
        return value

    return checked
