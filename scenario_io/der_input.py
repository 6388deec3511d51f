"""Read a DER validation folder (``gridmatch validate-commitments DIR``), validated at the edge.

The folder holds::

    meter_data.csv     meter_id, timestamp, p_kw [, q_kvar]
      or meter_data/   *.csv files of that format, each meter in one file only
    commitments.csv    commitment_id, meter_id, device_type, operation, start, end, kw
                       [, tolerance] [, participant_id]
    sites.csv          meter_id, latitude_deg, longitude_deg [, altitude_m]
                       [, participant_id]                                       (optional)
    event_models.yaml  overrides and extensions of the event-model library   (optional)

Sign convention: ``p_kw > 0`` is import from the grid (the meter's net consumption),
``p_kw < 0`` export; ``q_kvar > 0`` is inductive (the load draws reactive power). A
meter row's timestamp is the **start** of the interval whose mean power it gives. Each
meter keeps one resolution between 1 s and 15 min (the most common spacing of its
rows); every row lies on that grid from the meter's first row, gaps are allowed and
counted, a row given twice is an error. Times are ISO-8601 with a UTC offset and whole
seconds. ``meter_data.csv`` may be large (a year of 1-minute data for several meters):
its cells are checked column by column, and the first bad cell is reported with the
same file, row and field as every other table of gridmatch. A ``meter_data/`` folder
holds what one file cannot (a year of 1-minute data of a thousand meters is ~20 GB): its
files are read one at a time by whoever judges their meters, so memory holds one file.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridmatch.errors import InputError
from gridmatch.scenario_io.csv_cells import (
    METER_ID_PATTERN,
    Cells,
    check_header,
    iter_cells,
    read_table,
    shown,
)
from gridmatch.scenario_io.der_models import (
    OPERATIONS,
    EventModelLibrary,
    SiteSpec,
    load_event_models,
)
from gridmatch.units import FloatArray, IntArray
from gridmatch.user_files import TABLE_LIMIT_BYTES, is_given, parse_float, read_bytes, read_text

if TYPE_CHECKING:
    import pyarrow as pa

METER_DATA_FILE = "meter_data.csv"
METER_DATA_DIR = "meter_data"
MAX_METER_FILES = 100_000
COMMITMENTS_FILE = "commitments.csv"
SITES_FILE = "sites.csv"
EVENT_MODELS_FILE = "event_models.yaml"
METER_COLUMNS = ("meter_id", "timestamp", "p_kw")
COMMITMENT_COLUMNS = (
    "commitment_id",
    "meter_id",
    "device_type",
    "operation",
    "start",
    "end",
    "kw",
)
MIN_RESOLUTION_S = 1
MAX_RESOLUTION_S = 900
# A feeder meter stays far below this; a typo (kW for W) does not.
MAX_ABS_KW = 100_000.0
MAX_COMMITMENT_S = 7 * 86_400
MIN_COMMITMENT_S = 60
# The regular grid of one meter, and of all meters together (float64 samples).
MAX_GRID_SAMPLES = 1 << 25
MAX_TOTAL_SAMPLES = 1 << 27
# Gaps are allowed, but the grids of a file's meters hold at most this many samples per
# row of the file beyond the slack: otherwise three rows a meter, the last a year after
# the first at 1 s, made a 415-byte file take 2.3 GB (long outages still fit: a meter
# with data on 1 day in 16 is read).
MAX_GRID_SAMPLES_PER_ROW = 16
GRID_SLACK_SAMPLES = 1 << 20
# Meters in one file: a feeder's worth and more (a meter_data/ folder holds the rest).
# Each costs ~5 KB to read and judge however few its rows: a 20 MB file of 300,000
# meters with two rows each took 1.4 GB.
MAX_METERS_PER_FILE = 50_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What a datetime can hold in UTC: an offset can move a written time past either end
# (0001-01-01T00:00:00+14:00), and nothing after reading could show it as a time.
_FIRST_UNIX_S = int((datetime(1, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds())
_LAST_UNIX_S = int((datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH).total_seconds())
# The cells of row ``index`` (a bad cell is reported through them, with the house words).
_CellsAt = Callable[[int], Cells]


@dataclass(frozen=True)
class MeterSeries:
    """One meter's data on its regular grid (``NaN`` where a row is missing).

    Attributes
    ----------
    start_s
        Unix time (s) of the first row: sample ``i`` starts at ``start_s + i * resolution_s``.
    p_kw, q_kvar
        Mean power of each interval (``q_kvar`` is ``None`` when the file has no column).
    rows
        Rows the file had for this meter.
    gaps, missing_samples
        Runs of missing samples between the first and the last row, and their samples.
    """

    meter_id: str
    start_s: int
    resolution_s: int
    p_kw: FloatArray
    q_kvar: FloatArray | None
    rows: int
    gaps: int
    missing_samples: int

    @property
    def end_s(self) -> int:
        """Unix time (s) just after the last sample."""
        return self.start_s + len(self.p_kw) * self.resolution_s


@dataclass(frozen=True)
class Commitment:
    """One validated row of commitments.csv (times as given, and as Unix seconds)."""

    row: int
    commitment_id: str
    meter_id: str
    participant_id: str
    device_type: str
    operation: str
    start: datetime
    end: datetime
    kw: float
    tolerance: float | None

    # Cached: asked for many times per commitment while it is judged (the instance is
    # frozen, its fields never change; the cache is the instance's own dict).
    @cached_property
    def start_s(self) -> int:
        """Unix time (s) of the committed start."""
        return _unix_s(self.start)

    @cached_property
    def end_s(self) -> int:
        """Unix time (s) of the committed end (exclusive)."""
        return _unix_s(self.end)

    @property
    def energy_kwh(self) -> float:
        """Committed energy: ``kw`` held over the window."""
        return self.kw * (self.end_s - self.start_s) / 3600.0


@dataclass(frozen=True)
class DerInputs:
    """A validated DER validation folder.

    Attributes
    ----------
    meters
        The meters of ``meter_data.csv``, read; empty for a ``meter_data/`` folder.
    meter_files
        The files of a ``meter_data/`` folder, by name, not yet read (each is read and
        validated by whoever judges its meters); empty for ``meter_data.csv``.
    """

    directory: Path
    meters: dict[str, MeterSeries]
    commitments: tuple[Commitment, ...]
    sites: dict[str, SiteSpec]
    library: EventModelLibrary
    input_files: tuple[Path, ...]
    meter_files: tuple[Path, ...] = ()

    def site(self, meter_id: str) -> SiteSpec:
        """Return the site of a meter (sites.csv, else the library's default site)."""
        return self.sites.get(meter_id, self.library.spec.default_site)


def load_der_inputs(directory: Path, default_models: Path) -> DerInputs:
    """Validate a DER validation folder before anything is detected.

    Everything is validated here except the files of a ``meter_data/`` folder, which
    are listed and read later, one at a time (:func:`read_meter_data`).

    Parameters
    ----------
    default_models
        The library every scenario starts from (``der_validation/models/default.yaml``).

    Raises
    ------
    InputError
        On the first problem, naming the file, row and field.
    """
    if not directory.is_dir():
        raise InputError(directory, f"not a folder; expected a folder with {METER_DATA_FILE}")
    files: list[Path] = []
    models_path = directory / EVENT_MODELS_FILE
    library = load_event_models(default_models, models_path)
    if len(library.sources) > 1:
        files.append(models_path)
    meter_files = meter_data_files(directory)
    meters: dict[str, MeterSeries] = {}
    if meter_files:
        files[:0] = meter_files
    else:
        meter_path = directory / METER_DATA_FILE
        meters = read_meter_data(meter_path)
        files.insert(0, meter_path)
    sites: dict[str, SiteSpec] = {}
    owners: dict[str, MeterOwner] | None = None
    sites_path = directory / SITES_FILE
    if is_given(sites_path):
        sites, owners = read_sites(sites_path)
    commitments_path = directory / COMMITMENTS_FILE
    commitments = read_commitments(commitments_path, library, owners)
    files.insert(len(meter_files) or 1, commitments_path)
    if is_given(sites_path):
        files.append(sites_path)
    return DerInputs(directory, meters, commitments, sites, library, tuple(files), meter_files)


def meter_data_files(directory: Path) -> tuple[Path, ...]:
    """List the ``*.csv`` files of ``directory/meter_data/`` by name; ``()`` without it.

    Raises
    ------
    InputError
        Both ``meter_data.csv`` and ``meter_data/`` are there, or the folder holds no
        CSV file or more than :data:`MAX_METER_FILES`.
    """
    folder = directory / METER_DATA_DIR
    if not is_given(folder):
        return ()
    single = directory / METER_DATA_FILE
    if is_given(single):
        raise InputError(folder, f"give the meter data once: {METER_DATA_FILE} or this folder")
    if not folder.is_dir():
        raise InputError(folder, "not a folder (a folder of meter data CSV files expected)")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv")
    if not found:
        raise InputError(folder, "no *.csv file of meter data in it")
    if len(found) > MAX_METER_FILES:
        raise InputError(folder, f"{len(found):,} files; at most {MAX_METER_FILES:,}")
    # Each file is checked to be a regular one of bounded size when it is read.
    return tuple(found)


# Python reads an offset with seconds (+01:00:30), which ISO 8601 does not have: every
# row of such a meter moved 30 s off the minute, and a commitment with it 30 s late.
_ODD_OFFSET = "has a UTC offset with seconds; ISO 8601 offsets are +HH:MM"


def _odd_offset(moment: datetime) -> bool:
    offset = moment.utcoffset()
    return offset is not None and offset.total_seconds() % 60 != 0


def _unix_s(moment: datetime) -> int:
    return int((moment - _EPOCH).total_seconds())


# ---------------------------------------------------------------------------------------
# meter_data.csv


def read_meter_data(path: Path) -> dict[str, MeterSeries]:
    """Read ``meter_data.csv`` into one regular series per meter, in order of appearance.

    Raises
    ------
    InputError
        Naming the file, row and field of the first bad cell; a meter whose rows are
        not on one grid of 1 s to 15 min, or a row given twice.
    """
    data = read_bytes(path, TABLE_LIMIT_BYTES, "meter data file")
    fast = _fast_columns(path, data)
    if fast is not None:
        return _series(path, *fast)
    # Anything but a plain file: read again as text (UTF-8 checked there, with its
    # message) and cell by cell, which names the first problem.
    text = read_text(path, TABLE_LIMIT_BYTES, "meter data file", bom=True)
    header, columns, line_list = _columns(path, text)
    check_header(path, header, METER_COLUMNS, ("q_kvar",))
    if not line_list:
        raise InputError(path, "no readings: the file has a header and no rows")
    by_name = dict(zip(header, columns, strict=True))
    lines = np.asarray(line_list, dtype=np.int64)

    def cells(index: int) -> Cells:
        record = {name: str(column[index]) for name, column in by_name.items()}
        return Cells(path, line_list[index], record)

    names, codes = _meter_ids(by_name["meter_id"], cells)
    times_s = _timestamps(by_name["timestamp"], cells)
    p_kw = _numbers(by_name["p_kw"], "p_kw", cells)
    q_kvar = _numbers(by_name["q_kvar"], "q_kvar", cells) if "q_kvar" in by_name else None
    return _series(path, names, codes, times_s, p_kw, q_kvar, lines)


# What the reader in bulk hands to ``_series``: meter names in order of appearance, each
# row's index into them, its Unix time, p_kw, q_kvar (or None) and file line.
_Parsed = tuple[list[str], IntArray, IntArray, FloatArray, FloatArray | None, IntArray]
_NUMBER_COLUMNS = ("p_kw", "q_kvar")


def _fast_columns(path: Path, data: bytes) -> _Parsed | None:
    """Read a plain meter file in bulk with pyarrow's CSV reader, or ``None``.

    Meters export plain files: no quotes, no padding, one timestamp shape, numbers that
    need no Python to read. Such a file is split, decoded and checked in C (pyarrow's
    multi-threaded tokenizer, UTF-8 check and float parser, the fixed-width timestamp
    parser on the column's bytes), without one Python object per cell. It accepts only
    what the cell-by-cell reader accepts, with the same values (pyarrow's float grammar
    is a subset of Python's, both correctly rounded); anything else, a bad cell
    included, returns ``None`` and the cell-by-cell reader finds and names the problem.
    """
    if b'"' in data or b" " in data or b"\t" in data:
        return None  # quoted or padded cells: the cell-by-cell reader strips them
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    body_at = data.find(b"\n", skip)
    if body_at < 0:
        return None
    try:
        header = data[skip:body_at].decode("utf-8").rstrip("\r").split(",")
        check_header(path, header, METER_COLUMNS, ("q_kvar",))
    except (UnicodeDecodeError, InputError):
        return None
    body = memoryview(data)[body_at + 1 :]
    table = _arrow_table(body, header)
    if table is None or table.num_rows == 0:
        return None
    # The file line of every row: counted from the line breaks, blank lines skipped.
    n_lines = data.count(b"\n", body_at + 1) + (not data.endswith(b"\n"))
    if b"\n\n" in data or b"\n\r\n" in data:
        commas, blank = _line_counts(bytes(body))
        if np.any((commas != len(header) - 1) & ~blank):
            return None
        lines = np.flatnonzero(~blank) + 2
    else:
        lines = np.arange(2, n_lines + 2, dtype=np.int64)
    if table.num_rows != len(lines):
        return None  # a line break pyarrow reads differently (a lone CR): cell by cell
    names, codes = _bulk_meter_ids(table.column("meter_id"))
    if not all(name and METER_ID_PATTERN.match(name) for name in names):
        return None
    times_s = _bulk_timestamps(table.column("timestamp"))
    numbers = {
        name: _bulk_numbers(table.column(name)) for name in header if name in _NUMBER_COLUMNS
    }
    if times_s is None or any(values is None for values in numbers.values()):
        return None
    p_kw = numbers["p_kw"]
    assert p_kw is not None
    return names, codes, times_s, p_kw, numbers.get("q_kvar"), lines


def _arrow_table(body: memoryview, header: list[str]) -> pa.Table | None:
    """Parse ``body``: numbers as float64, the rest as strings; ``None`` if it is not that."""
    import pyarrow as pa  # only this reader needs it: not loaded with the module
    from pyarrow import csv as pa_csv

    types = {name: pa.float64() if name in _NUMBER_COLUMNS else pa.string() for name in header}
    try:
        return pa_csv.read_csv(
            pa.py_buffer(body),
            read_options=pa_csv.ReadOptions(column_names=header),
            parse_options=pa_csv.ParseOptions(
                quote_char=False, double_quote=False, escape_char=False, ignore_empty_lines=True
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=types,
                strings_can_be_null=False,
                null_values=[],
                check_utf8=True,
            ),
        )
    except pa.ArrowInvalid:
        return None


def _bulk_meter_ids(column: pa.ChunkedArray) -> tuple[list[str], IntArray]:
    """Meter ids in order of appearance and each row's index, chunk by chunk."""
    codes = np.empty(len(column), dtype=np.int64)
    known: dict[str, int] = {}
    at = 0
    for chunk in column.chunks:
        encoded = chunk.dictionary_encode()
        local = np.array(
            [known.setdefault(str(name), len(known)) for name in encoded.dictionary.to_pylist()],
            dtype=np.int64,
        )
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        codes[at : at + len(chunk)] = local[indices] if len(local) else 0
        at += len(chunk)
    return list(known), codes


def _bulk_timestamps(column: pa.ChunkedArray) -> IntArray | None:
    """Unix seconds of a string column in the fixed-width shapes, or ``None``."""
    parts = [_chunk_timestamps(chunk) for chunk in column.chunks]
    if any(part is None for part in parts):
        return None
    return np.concatenate([part for part in parts if part is not None] or [np.zeros(0, np.int64)])


def _chunk_timestamps(chunk: pa.Array) -> IntArray | None:
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)
    offsets = offsets[chunk.offset : chunk.offset + len(chunk) + 1]
    data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)
    lengths = np.diff(offsets)
    for width in (_LONG, _SHORT):
        if np.all(lengths == width):  # one shape: the bytes are a (rows, width) matrix
            chars = data[offsets[0] : offsets[-1]].reshape(-1, width)
            seconds, ok = _parse_fixed(chars, width)
            return seconds if np.all(ok) else None
    seconds = np.zeros(len(chunk), dtype=np.int64)
    done = 0
    for width in (_LONG, _SHORT):
        chosen = np.flatnonzero(lengths == width)
        parsed, ok = _parse_fixed(data[offsets[chosen, None] + np.arange(width)], width)
        if not np.all(ok):
            return None
        seconds[chosen] = parsed
        done += chosen.size
    return seconds if done == len(chunk) else None


def _bulk_numbers(column: pa.ChunkedArray) -> FloatArray | None:
    """Return the float64 column as an array; ``None`` if a value is not finite or too large."""
    array = np.asarray(column.to_numpy(), dtype=np.float64)
    if np.all(np.isfinite(array)) and np.all(np.abs(array) <= MAX_ABS_KW):
        return array
    return None


_Column = npt.NDArray[np.object_]


def _columns(path: Path, text: str) -> tuple[list[str], list[_Column], list[int]]:
    """Split a CSV text into its header, its columns (stripped) and each row's file line.

    Blank lines are skipped; a row with another number of fields than the header is an
    error naming its line. Without quotes (what meters export) pandas' C tokenizer
    reads the columns, with their lines counted from the line breaks; a file with
    quotes goes through the csv module, whose line count follows quoted line breaks, as
    does one with a NUL character (the C tokenizer would end the cell there and read
    ``0.2<NUL>47`` as 0.2) or a lone carriage return as line break (the lines here are
    counted from newlines only).
    """
    if '"' in text or "\x00" in text or text.count("\r") != text.count("\r\n"):
        header, records, lines = _records(path, text)
        columns = [np.asarray([r[i] for r in records], dtype=object) for i in range(len(header))]
        return header, columns, lines
    body_at = text.find("\n")
    first_line = text if body_at < 0 else text[:body_at]
    header = [name.strip() for name in first_line.rstrip("\r").split(",")]
    if not first_line.strip():
        raise InputError(path, "the file is empty; expected a header row")
    width = len(header)
    if body_at < 0 or not text[body_at + 1 :].strip():
        return header, [np.asarray([], dtype=object) for _ in header], []
    commas, blank = _line_counts(text[body_at + 1 :].encode("utf-8"))
    wrong = np.flatnonzero((commas != width - 1) & ~blank)
    if wrong.size:
        raise InputError(
            path,
            f"expected {width} fields, found {int(commas[wrong[0]]) + 1}",
            row=int(wrong[0]) + 2,
        )
    frame = pd.read_csv(
        io.StringIO(text),
        header=None,
        skiprows=1,
        names=list(range(width)),
        dtype=str,
        na_filter=False,
        skip_blank_lines=True,
        engine="c",
    )
    kept = np.flatnonzero(~blank)
    lines = (kept + 2).tolist()
    if len(frame) != len(lines):  # pragma: no cover - tokenizer and line count disagree
        raise InputError(path, "malformed CSV: rows could not be counted")
    padded = " " in text or "\t" in text  # cells are stripped only if they can need it
    columns = [
        (frame[k].str.strip() if padded else frame[k]).to_numpy(dtype=object) for k in range(width)
    ]
    return header, columns, lines


def _line_counts(body: bytes) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Commas of every line of ``body`` (UTF-8), and whether it is blank (whitespace only)."""
    data = np.frombuffer(body, dtype=np.uint8)
    breaks = np.flatnonzero(data == ord("\n"))
    n_lines = len(breaks) + 1
    comma_lines = np.searchsorted(breaks, np.flatnonzero(data == ord(",")))
    commas = np.bincount(comma_lines, minlength=n_lines).astype(np.int64)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(data)]))
    blank = ends - starts == 0
    # Lines of whitespace only have no comma: look at those few one by one.
    lines = body.split(b"\n") if np.any((commas == 0) & ~blank) else []
    for k in np.flatnonzero((commas == 0) & ~blank):
        blank[k] = not lines[k].decode("utf-8").strip()
    return commas, blank


def _records(path: Path, text: str) -> tuple[list[str], list[list[str]], list[int]]:
    """Split a CSV text with quotes into its header and non-blank rows with their lines."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows, lines = [], []
    try:
        for row in reader:
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV: {exc}", row=reader.line_num + 1) from None
    if not rows:
        raise InputError(path, "the file is empty; expected a header row")
    header = [name.strip() for name in rows[0]]
    width = len(header)
    records: list[list[str]] = []
    kept: list[int] = []
    for row, line in zip(rows[1:], lines[1:], strict=True):
        if len(row) != width:
            if not any(v.strip() for v in row):
                continue  # blank lines at the end of hand-edited files
            raise InputError(path, f"expected {width} fields, found {len(row)}", row=line)
        records.append([v.strip() for v in row])
        kept.append(line)
    return header, records, kept


def _meter_ids(values: _Column, cells: _CellsAt) -> tuple[list[str], IntArray]:
    """Meter ids in order of appearance, and each row's index into them."""
    distinct, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    appearance = np.argsort(first, kind="stable")
    for index in first[appearance]:
        meter = values[index]
        if not meter or not METER_ID_PATTERN.match(meter):
            cells(int(index)).meter_id()  # raises with the house message
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[appearance] = np.arange(len(distinct))
    return [str(distinct[k]) for k in appearance], rank[np.ravel(inverse)]


# ISO-8601 in the two shapes meters export: ...T07:15:00+01:00 and ...T07:15:00Z.
_LONG = 25
_SHORT = 20
_DIGITS_LONG = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24)
_SEPARATORS = ((4, b"-"), (7, b"-"), (10, b"T"), (13, b":"), (16, b":"))
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _timestamps(values: _Column, cells: _CellsAt) -> IntArray:
    """Unix seconds of every timestamp: fixed-width ISO-8601 in bulk, the rest one by one."""
    n = len(values)
    seconds = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
    for width in (_LONG, _SHORT):
        chosen = np.flatnonzero(lengths == width)
        if chosen.size == 0:
            continue
        subset = values if chosen.size == n else values[chosen]
        try:
            raw = "".join(subset).encode("ascii")  # one buffer, a row every width bytes
        except UnicodeEncodeError:
            continue  # not ASCII: every row of this width one by one
        chars = np.frombuffer(raw, dtype=np.uint8).reshape(-1, width)
        parsed, ok = _parse_fixed(chars, width)
        seconds[chosen[ok]] = parsed[ok]
        done[chosen[ok]] = True
    for index in np.flatnonzero(~done):
        row = cells(int(index))
        moment = row.timestamp()  # raises with the house message when it is no time
        if moment.microsecond:
            raise row.fail("timestamp", f"'{shown(values[index])}' is finer than a whole second")
        if _odd_offset(moment):
            raise row.fail("timestamp", f"'{shown(values[index])}' {_ODD_OFFSET}")
        seconds[index] = _unix_s(moment)
    return seconds


def _parse_fixed(
    chars: npt.NDArray[np.uint8], width: int
) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Parse rows of ASCII ``YYYY-MM-DDTHH:MM:SS(+HH:MM|Z)``; ``ok`` marks the valid ones.

    Works through the rows in chunks, so that a file of millions of rows needs a few
    small arrays per chunk, not one integer matrix of all its characters.
    """
    n = len(chars)
    seconds = np.empty(n, dtype=np.int64)
    ok = np.empty(n, dtype=bool)
    for begin in range(0, n, _PARSE_CHUNK_ROWS):
        part = slice(begin, min(begin + _PARSE_CHUNK_ROWS, n))
        seconds[part], ok[part] = _parse_fixed_chunk(chars[part], width)
    return seconds, ok


# Rows parsed at a time: 25 small int32 vectors of this length stay in the CPU's cache.
_PARSE_CHUNK_ROWS = 1 << 16


def _parse_fixed_chunk(
    chars: npt.NDArray[np.uint8], width: int
) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    positions = list(_DIGITS_LONG[: 14 if width == _SHORT else 18])
    # A character below '0' wraps around in uint8, so ``<= 9`` alone checks a digit.
    digit_rows = chars[:, positions] - np.uint8(ord("0"))
    ok = np.all(digit_rows <= 9, axis=1)
    for position, char in _SEPARATORS:
        ok &= chars[:, position] == ord(char)
    # One contiguous int32 vector per digit position (a digit's column, transposed).
    digits = np.ascontiguousarray(digit_rows.T, dtype=np.int32)
    column = {position: k for k, position in enumerate(positions)}

    def number(a: int, b: int) -> npt.NDArray[np.int32]:
        value: npt.NDArray[np.int32] = digits[column[a]].copy()
        for k in range(a + 1, b):
            value *= 10
            value += digits[column[k]]
        return value

    year, month, day = number(0, 4), number(5, 7), number(8, 10)
    hour, minute, second = number(11, 13), number(14, 16), number(17, 19)
    if width == _SHORT:
        ok &= chars[:, 19] == ord("Z")
        offset_s = np.zeros(len(chars), dtype=np.int32)
    else:
        sign = np.where(chars[:, 19] == ord("-"), -1, 1).astype(np.int32)
        ok &= (chars[:, 19] == ord("+")) | (chars[:, 19] == ord("-"))
        ok &= chars[:, 22] == ord(":")
        off_h, off_m = number(20, 22), number(23, 25)
        ok &= (off_h <= 23) & (off_m <= 59)
        offset_s = sign * (off_h * 3600 + off_m * 60)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_ok = (month >= 1) & (month <= 12)
    days = np.where(month_ok, _DAYS_IN_MONTH[np.clip(month, 0, 12)], 0) + (leap & (month == 2))
    ok &= month_ok & (day >= 1) & (day <= days) & (year >= 1)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    # Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil);
    # years below 10,000 keep every term within int32.
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    epoch_days = (era * 146097 + doe - 719468).astype(np.int64)
    seconds = epoch_days * 86400 + (hour * 3600 + minute * 60 + second - offset_s)
    return seconds, ok


def _numbers(values: _Column, field: str, cells: _CellsAt) -> FloatArray:
    # numpy's conversion, like float(), reads '5_0' as 50 and other scripts' digits.
    joined = "".join(values)
    array = None
    if joined.isascii() and "_" not in joined:
        with contextlib.suppress(ValueError):
            array = values.astype(np.float64)
    if array is not None and np.all(np.isfinite(array)) and np.all(np.abs(array) <= MAX_ABS_KW):
        return array
    for index, value in enumerate(values):
        row = cells(index)
        number = row.finite(field)
        if abs(number) > MAX_ABS_KW:
            raise row.fail(field, f"{shown(value)} is beyond +-{MAX_ABS_KW:g}")
    raise AssertionError("a bad cell was not found")  # pragma: no cover


def _series(
    path: Path,
    names: list[str],
    codes: IntArray,
    times_s: IntArray,
    p_kw: FloatArray,
    q_kvar: FloatArray | None,
    lines: IntArray,
) -> dict[str, MeterSeries]:
    """One regular series per meter (``names`` in order of appearance, ``codes`` per row)."""
    outside = np.flatnonzero((times_s < _FIRST_UNIX_S) | (times_s > _LAST_UNIX_S))
    if outside.size:
        raise InputError(
            path,
            "is outside the years 1 to 9999 once its UTC offset is applied",
            row=int(lines[int(outside[0])]),
            field="timestamp",
        )
    if len(names) > MAX_METERS_PER_FILE:
        first_row = int(np.argmax(codes == MAX_METERS_PER_FILE))
        raise InputError(
            path,
            f"meter '{names[MAX_METERS_PER_FILE]}' is the file's meter number "
            f"{MAX_METERS_PER_FILE + 1:,}; a file holds at most {MAX_METERS_PER_FILE:,} "
            f"meters (give more as files of a {METER_DATA_DIR}/ folder)",
            row=int(lines[first_row]),
            field="meter_id",
        )
    series: dict[str, MeterSeries] = {}
    code_steps = np.diff(codes)
    if np.all(code_steps >= 0) and np.all((np.diff(times_s) > 0) | (code_steps != 0)):
        order = np.arange(len(codes))  # meter by meter, in time: what meters export
    else:
        order = np.lexsort((times_s, codes))
    total = 0
    sparse_limit = MAX_GRID_SAMPLES_PER_ROW * len(times_s) + GRID_SLACK_SAMPLES
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    for code, meter in enumerate(names):
        rows = order[bounds[code] : bounds[code + 1]]
        times = times_s[rows]
        steps = np.diff(times)
        if steps.size and steps.min() == 0:
            twice = int(np.flatnonzero(steps == 0)[0])
            first, second = sorted((int(rows[twice]), int(rows[twice + 1])))
            raise InputError(
                path,
                f"meter '{meter}' has a second row at this time (first on row {int(lines[first])})",
                row=int(lines[second]),
                field="timestamp",
            )
        resolution = _resolution(path, meter, steps, int(lines[int(rows[0])]))
        off_grid = np.flatnonzero(steps % resolution)
        if off_grid.size:
            bad = int(rows[off_grid[0] + 1])
            raise InputError(
                path,
                f"not on the {resolution}-second grid of meter '{meter}' (its most common "
                f"spacing), counted from its first row",
                row=int(lines[bad]),
                field="timestamp",
            )
        slots = (times - times[0]) // resolution
        n_grid = int(slots[-1]) + 1
        total += n_grid
        if n_grid > MAX_GRID_SAMPLES or total > MAX_TOTAL_SAMPLES:
            raise InputError(
                path,
                f"meter '{meter}' spans {n_grid} samples of {resolution} s from its first to "
                f"its last row; at most {MAX_GRID_SAMPLES} per meter and "
                f"{MAX_TOTAL_SAMPLES} in all",
                row=int(lines[int(rows[-1])]),
                field="timestamp",
            )
        if total > sparse_limit:
            raise InputError(
                path,
                f"meter '{meter}' spans {n_grid} samples of {resolution} s for its "
                f"{len(rows)} rows: the file's meters may span at most "
                f"{MAX_GRID_SAMPLES_PER_ROW} samples per row of the file, plus "
                f"{GRID_SLACK_SAMPLES}, between their first and last rows (gaps too long)",
                row=int(lines[int(rows[-1])]),
                field="timestamp",
            )
        grid_p = np.full(n_grid, np.nan)
        grid_p[slots] = p_kw[rows]
        grid_q = None
        if q_kvar is not None:
            grid_q = np.full(n_grid, np.nan)
            grid_q[slots] = q_kvar[rows]
        gaps = steps // resolution - 1
        series[meter] = MeterSeries(
            meter_id=meter,
            start_s=int(times[0]),
            resolution_s=resolution,
            p_kw=grid_p,
            q_kvar=grid_q,
            rows=len(rows),
            gaps=int(np.count_nonzero(gaps)),
            missing_samples=int(gaps.sum()),
        )
    return series


def _resolution(path: Path, meter: str, steps: IntArray, first_line: int) -> int:
    if steps.size == 0:
        raise InputError(
            path,
            f"meter '{meter}' has a single row; its resolution cannot be told",
            row=first_line,
            field="timestamp",
        )
    values, counts = np.unique(steps, return_counts=True)
    resolution = int(values[np.argmax(counts)])  # the smallest of equally common ones
    if not MIN_RESOLUTION_S <= resolution <= MAX_RESOLUTION_S:
        raise InputError(
            path,
            f"meter '{meter}': rows are most often {resolution} s apart; the resolution "
            f"must be between {MIN_RESOLUTION_S} s and {MAX_RESOLUTION_S} s (15 min)",
            row=first_line,
            field="timestamp",
        )
    return resolution


# ---------------------------------------------------------------------------------------
# commitments.csv and sites.csv


def read_commitments(
    path: Path, library: EventModelLibrary, owners: Mapping[str, MeterOwner] | None = None
) -> tuple[Commitment, ...]:
    """Read ``commitments.csv``; device types and operations are checked against the library.

    Parameters
    ----------
    owners
        Meter -> the participant whose connection it measures (sites.csv's
        ``participant_id``), or ``None`` if sites.csv binds no meters. When given, every
        commitment's meter must be bound, and a commitment is its owner's: a
        ``participant_id`` naming anyone else is refused (their meter's delivery would
        be settled to them); without one, the owner is the participant.

    Raises
    ------
    InputError
        Naming the file, row and field of the first problem.
    """
    # Row by row: a Table would hold a dict of strings per row beside the commitments.
    rows = iter_cells(path, "commitments file", COMMITMENT_COLUMNS, ("tolerance", "participant_id"))
    models = library.spec.models
    seen: dict[str, int] = {}
    commitments = []
    for cells in rows:
        commitment_id = cells.identifier("commitment_id")
        if commitment_id in seen:
            raise cells.fail(
                "commitment_id",
                f"'{commitment_id}' is given twice (first on row {seen[commitment_id]})",
            )
        seen[commitment_id] = cells.line
        meter = cells.meter_id()
        participant = _participant(cells, meter, owners)
        device = cells.text("device_type")
        if device not in models:
            raise cells.fail(
                "device_type",
                f"'{device[:50]}' is no device type of the event-model library (known: "
                f"{', '.join(models)})",
            )
        operation = cells.text("operation")
        if operation not in OPERATIONS:
            raise cells.fail(
                "operation", f"'{operation[:50]}' is not one of: {', '.join(OPERATIONS)}"
            )
        allowed = models[device].operations
        if operation not in allowed:
            raise cells.fail(
                "operation",
                f"a {device} cannot '{operation}' (its model allows: {', '.join(allowed)})",
            )
        start, end = cells.timestamp("start"), cells.timestamp("end")
        for name, moment in (("start", start), ("end", end)):
            if moment.microsecond:
                raise cells.fail(name, "is finer than a whole second")
            if _odd_offset(moment):
                raise cells.fail(name, f"'{shown(cells.record[name])}' {_ODD_OFFSET}")
        duration_s = (end - start).total_seconds()
        if duration_s < MIN_COMMITMENT_S:
            raise cells.fail("end", f"must be at least {MIN_COMMITMENT_S} s after start")
        if duration_s > MAX_COMMITMENT_S:
            raise cells.fail("end", "a commitment lasts at most 7 days")
        kw = _positive(cells, "kw", 10_000.0)
        tolerance = None
        if cells.has("tolerance") and cells.record["tolerance"]:
            tolerance = _positive(cells, "tolerance", 1.0)
            if tolerance >= 1.0:
                raise cells.fail("tolerance", f"{tolerance:g} must be below 1 (a share)")
        commitments.append(
            Commitment(
                cells.line,
                commitment_id,
                meter,
                participant,
                device,
                operation,
                start,
                end,
                kw,
                tolerance,
            )
        )
    if not commitments:
        raise InputError(path, "no commitments: the file has a header and no rows")
    return tuple(commitments)


def _participant(cells: Cells, meter: str, owners: Mapping[str, MeterOwner] | None) -> str:
    """Return the participant a commitment row is for (see :func:`read_commitments`)."""
    if owners is None:
        return cells.identifier("participant_id") if cells.has("participant_id") else meter
    # With the meters bound, an empty cell is the owner's commitment, as a missing column.
    given = cells.has("participant_id") and bool(cells.record["participant_id"])
    named = cells.identifier("participant_id") if given else None
    owner = owners.get(meter)
    if owner is None:
        raise cells.fail(
            "meter_id",
            f"meter '{meter}' has no participant in {SITES_FILE} (its participant_id "
            "column binds every meter a commitment names)",
        )
    if named is not None and named != owner.participant_id:
        raise cells.fail(
            "participant_id",
            f"'{named}' does not own meter '{meter}': {SITES_FILE} row {owner.row} binds it "
            f"to '{owner.participant_id}'",
        )
    return owner.participant_id


def _positive(cells: Cells, field: str, maximum: float) -> float:
    text = cells.text(field)
    value = cells.finite(field)
    if value <= 0.0:
        raise cells.fail(field, f"{shown(text)} must be greater than 0")
    if value > maximum:
        raise cells.fail(field, f"{shown(text)} is above {maximum:g}")
    return value


@dataclass(frozen=True)
class MeterOwner:
    """The participant whose connection a meter measures, and the sites.csv row saying so."""

    participant_id: str
    row: int


def read_sites(path: Path) -> tuple[dict[str, SiteSpec], dict[str, MeterOwner] | None]:
    """Read ``sites.csv``: where each meter is (for its clear-sky curve), and whose it is.

    Returns
    -------
    tuple
        Meter -> its site; meter -> its owner if the file has a ``participant_id``
        column (every row must then name one), else ``None``.

    Raises
    ------
    InputError
        Naming the file, row and field of the first problem.
    """
    table = read_table(
        path,
        "sites file",
        ("meter_id", "latitude_deg", "longitude_deg"),
        ("altitude_m", "participant_id"),
    )
    sites: dict[str, SiteSpec] = {}
    owners: dict[str, MeterOwner] | None = None
    rows: dict[str, int] = {}
    for cells in table.cells():
        meter = cells.meter_id()
        if meter in sites:
            raise cells.fail(
                "meter_id", f"meter '{meter}' is given twice (first on row {rows[meter]})"
            )
        rows[meter] = cells.line
        values = {}
        for field, low, high in (
            ("latitude_deg", -90.0, 90.0),
            ("longitude_deg", -180.0, 180.0),
            ("altitude_m", -500.0, 9000.0),
        ):
            if field == "altitude_m" and not (cells.has(field) and cells.record[field]):
                continue
            text = cells.text(field)
            try:
                value = parse_float(text)
            except ValueError:
                raise cells.fail(field, f"'{shown(text)}' is not a number") from None
            if not math.isfinite(value) or not low <= value <= high:
                raise cells.fail(field, f"{shown(text)} is not between {low:g} and {high:g}")
            values[field] = value
        sites[meter] = SiteSpec(**values)
        if cells.has("participant_id"):
            owners = {} if owners is None else owners
            owners[meter] = MeterOwner(cells.identifier("participant_id"), cells.line)
    return sites, owners
