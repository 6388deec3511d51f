"""Throughput of ``gridmatch validate-commitments`` without changing what it finds.

The bulk reader of meter_data.csv must read exactly what the cell-by-cell reader reads
(and leave every bad file to it, so the messages stay the same), and judging in worker
processes must write byte for byte what judging in one process writes.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.der_validation import clearsky
from gridmatch.der_validation.run import _meter_tasks, judge_all, load
from gridmatch.errors import InputError
from gridmatch.results_io.der_validation import EventRow, VerdictRow
from gridmatch.results_io.tables import to_csv
from gridmatch.scenario_io import der_input
from gridmatch.scenario_io.der_input import MeterSeries, _fast_columns, _parse_fixed
from gridmatch.scenario_io.der_models import SiteSpec

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "scenarios" / "der-example"
START = datetime(2026, 3, 16, tzinfo=UTC)
runner = CliRunner()


def _read_both(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, dict]:
    """The series of the bulk reader and of the cell-by-cell reader."""
    fast = der_input.read_meter_data(path)
    with monkeypatch.context() as patch:
        patch.setattr(der_input, "_fast_columns", lambda path, text: None)
        slow = der_input.read_meter_data(path)
    return fast, slow


def _same(a: dict[str, MeterSeries], b: dict[str, MeterSeries]) -> bool:
    def arrays_equal(x: np.ndarray | None, y: np.ndarray | None) -> bool:
        if x is None or y is None:
            return x is None and y is None
        return np.array_equal(x, y, equal_nan=True)

    return list(a) == list(b) and all(
        (a[m].start_s, a[m].resolution_s, a[m].rows, a[m].gaps, a[m].missing_samples)
        == (b[m].start_s, b[m].resolution_s, b[m].rows, b[m].gaps, b[m].missing_samples)
        and arrays_equal(a[m].p_kw, b[m].p_kw)
        and arrays_equal(a[m].q_kvar, b[m].q_kvar)
        for m in a
    )


def _meter_file(tmp_path: Path, lines: list[str], *, newline: str = "\n", bom: str = "") -> Path:
    path = tmp_path / "meter_data.csv"
    path.write_bytes((bom + newline.join(lines) + newline).encode("utf-8"))
    return path


def _rows(meter: str, n: int, *, step_min: int = 1, z: bool = False) -> list[str]:
    rows = []
    for k in range(n):
        at = START + timedelta(minutes=step_min * k)
        text = at.strftime("%Y-%m-%dT%H:%M:%SZ") if z else at.isoformat()
        rows.append(f"{meter},{text},{0.25 * k:.3f},{-0.01 * k:.3f}")
    return rows


# --- the bulk reader reads what the cell-by-cell reader reads -------------------------


def test_the_bundled_example_is_read_in_bulk_as_cell_by_cell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = EXAMPLE / "meter_data.csv"
    assert _fast_columns(path, path.read_bytes()) is not None  # the bulk path is taken
    fast, slow = _read_both(path, monkeypatch)
    assert _same(fast, slow)


CLEAN_VARIANTS = {
    # Windows line ends, a byte order mark, blank lines, meters interleaved and out of
    # time order, both timestamp shapes, a gap: all still read in bulk.
    "crlf": (["meter_id,timestamp,p_kw,q_kvar", *_rows("A", 30)], "\r\n", ""),
    "bom": (["meter_id,timestamp,p_kw,q_kvar", *_rows("A", 30)], "\n", "\ufeff"),
    "blank lines": (
        ["meter_id,timestamp,p_kw,q_kvar", *_rows("A", 10), "", *_rows("B", 9)],
        "\n",
        "",
    ),
    "interleaved": (
        ["meter_id,timestamp,p_kw,q_kvar"]
        + [r for pair in zip(_rows("B", 20)[::-1], _rows("A", 20), strict=True) for r in pair],
        "\n",
        "",
    ),
    "two shapes": (
        ["meter_id,timestamp,p_kw,q_kvar", *_rows("A", 12), *_rows("Z1", 12, z=True)],
        "\n",
        "",
    ),
    "gap": (
        ["meter_id,timestamp,p_kw,q_kvar", *(_rows("A", 40)[:10] + _rows("A", 40)[15:])],
        "\n",
        "",
    ),
}


@pytest.mark.parametrize("case", sorted(CLEAN_VARIANTS))
def test_clean_files_are_read_in_bulk_with_the_same_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    lines, newline, bom = CLEAN_VARIANTS[case]
    path = _meter_file(tmp_path, lines, newline=newline, bom=bom)
    assert _fast_columns(path, path.read_bytes()) is not None
    fast, slow = _read_both(path, monkeypatch)
    assert _same(fast, slow)


ODD_BUT_VALID = {
    # What Python reads and pyarrow does not: left to the cell-by-cell reader.
    "padded cells": "A, 2026-03-16T00:02:00+00:00 , 0.5,0.1",
    "quoted cell": 'A,"2026-03-16T00:02:00+00:00",0.5,0.1',
    "fractional zero": "A,2026-03-16T00:02:00.000+00:00,0.5,0.1",
    "basic offset": "A,2026-03-16T00:02:00+0000,0.5,0.1",
}


@pytest.mark.parametrize("case", sorted(ODD_BUT_VALID))
def test_odd_cells_fall_back_to_the_cell_by_cell_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    lines = ["meter_id,timestamp,p_kw,q_kvar", *_rows("A", 6)]
    lines[3] = ODD_BUT_VALID[case]
    path = _meter_file(tmp_path, lines)
    assert _fast_columns(path, path.read_bytes()) is None
    fast, slow = _read_both(path, monkeypatch)
    assert _same(fast, slow) and not math.isnan(fast["A"].p_kw[2])


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ("A,2026-03-16T00:03:00+00:00,abc,0.1", "p_kw", "'abc' is not a number"),
        # Python reads these as 10 and 3.5; in a meter file they are typing errors.
        ("A,2026-03-16T00:03:00+00:00,1_0,0.1", "p_kw", "'1_0' is not a number"),
        ("A,2026-03-16T00:03:00+00:00,\u0663.5,0.1", "p_kw", "is not a number"),
        ("A,2026-03-16T00:03:00+00:00,1e400,0.1", "p_kw", "not finite"),
        ("A,2026-03-16T00:03:00+00:00,0.5,", "q_kvar", "is empty"),
        ("A,2026-02-30T00:03:00+00:00,0.5,0.1", "timestamp", "not an ISO-8601 time"),
        ("A,2026-03-16T00:03:00,0.5,0.1", "timestamp", "no UTC offset"),
        ("A,2026-03-16T00:01:00+00:00,0.5,0.1", "timestamp", "second row at this time"),
        ("A 1,2026-03-16T00:03:00+00:00,0.5,0.1", "meter_id", "not a meter id"),
        (",2026-03-16T00:03:00+00:00,0.5,0.1", "meter_id", ""),
    ],
)
def test_a_bad_cell_after_a_blank_line_is_named_by_its_file_line(
    tmp_path: Path, line: str, field: str, words: str
) -> None:
    # Line 1 the header, lines 2-3 rows, line 4 blank, line 5 the bad row.
    rows = _rows("A", 6)
    lines = ["meter_id,timestamp,p_kw,q_kvar", rows[0], rows[1], "", line, *rows[4:]]
    path = _meter_file(tmp_path, lines)
    with pytest.raises(InputError) as caught:
        der_input.read_meter_data(path)
    assert caught.value.row == 5 and caught.value.field == field and words in str(caught.value)


NUMBER_CELLS = [
    # read by both
    "1.", ".5", "+1", "1e5", "1E+5", "+.5e-3", "1E-400", "0", "-0.0", "00012",
    "0.12345678901234567890", "1.7976931348623157e308", "4.9e-324",
    # not numbers, or Python's only: the cell-by-cell reader decides
    "0x1", "1_0", "1e", "1d", "1f", "--1", "-", "+", "1.5.", "N/A", "NULL", "TRUE",
    "\u0663", "\u0663.5",
    # read by both, refused later as not finite
    "1e400", "inf", "-inf", "nan", "-nan", "NaN", "Infinity",
]  # fmt: skip


@pytest.mark.parametrize("cell", NUMBER_CELLS)
def test_pyarrow_reads_a_number_only_as_python_does(cell: str) -> None:
    from gridmatch.scenario_io.der_input import _arrow_table

    table = _arrow_table(memoryview(f"A,{cell}\n".encode()), ["meter_id", "p_kw"])
    if table is not None:  # what pyarrow reads, Python reads, to the same float
        value = table.column("p_kw").to_pylist()[0]
        expected = float(cell)
        assert (math.isnan(value) and math.isnan(expected)) or (
            value == expected and math.copysign(1, value) == math.copysign(1, expected)
        )


_ISO = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0))


@settings(max_examples=300, deadline=None)
@given(_ISO, st.integers(-23 * 60, 23 * 60), st.integers(0, 24), st.binary(min_size=1, max_size=1))
def test_a_parsed_timestamp_is_what_fromisoformat_reads(
    moment: datetime, offset_min: int, position: int, replacement: bytes
) -> None:
    # Any one byte of a valid timestamp replaced: accepted only if it still is the time
    # fromisoformat reads (the rest goes to the cell-by-cell reader).
    text = moment.astimezone(timezone(timedelta(minutes=offset_min))).isoformat()
    raw = bytearray(text.encode())
    raw[position % len(raw)] = replacement[0]
    chars = np.frombuffer(bytes(raw), dtype=np.uint8).reshape(1, -1)
    seconds, ok = _parse_fixed(chars, len(raw))
    if ok[0]:
        parsed = datetime.fromisoformat(raw.decode("ascii"))
        assert parsed.utcoffset() is not None
        assert int(seconds[0]) == int((parsed - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())


def test_timestamps_are_parsed_in_chunks_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    times = [START + timedelta(seconds=977 * k) for k in range(1000)]
    text = "".join(t.isoformat() for t in times).encode()
    chars = np.frombuffer(text, dtype=np.uint8).reshape(len(times), -1)
    whole, ok_whole = _parse_fixed(chars, chars.shape[1])
    monkeypatch.setattr(der_input, "_PARSE_CHUNK_ROWS", 7)
    chunked, ok_chunked = _parse_fixed(chars, chars.shape[1])
    assert ok_whole.all() and ok_chunked.all() and np.array_equal(whole, chunked)
    assert whole.tolist() == [int(t.timestamp()) for t in times]


# --- the clear-sky curve, computed per day ----------------------------------------------


def test_the_clear_sky_curve_is_pvlib_sample_by_sample() -> None:
    from pvlib import solarposition

    rng = np.random.default_rng(19)
    for _ in range(50):
        site = SiteSpec(
            latitude_deg=float(rng.uniform(-65, 70)), longitude_deg=float(rng.uniform(-180, 180))
        )
        times = float(rng.integers(0, 4_000_000_000)) + np.arange(
            int(rng.integers(1, 4000))
        ) * float(rng.choice([1.0, 60.0, 900.0]))
        day_of_year = clearsky._day_of_year(times)
        declination = solarposition.declination_spencer71(day_of_year)
        eot_min = solarposition.equation_of_time_spencer71(day_of_year)
        solar_h = (times % 86_400) / 3600 + site.longitude_deg / 15 + eot_min / 60
        zenith = solarposition.solar_zenith_analytical(
            np.radians(site.latitude_deg), np.radians(15 * (solar_h - 12)), declination
        )
        cos_z = np.cos(zenith)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            expected = np.where(cos_z > 0, np.nan_to_num(1098 * cos_z * np.exp(-0.059 / cos_z)), 0)
        assert np.array_equal(clearsky.clear_sky_ghi(site, times), expected)


# --- judging in worker processes ------------------------------------------------------


def _judged_text(judgements: tuple) -> str:
    return to_csv(VerdictRow, [j.row for j in judgements]) + to_csv(
        EventRow, [e for j in judgements for e in j.events]
    )


def test_meter_tasks_keep_meters_whole_and_cover_every_commitment() -> None:
    inputs = load(EXAMPLE)
    for n_tasks in (1, 2, 3, 7, 50):
        tasks, positions = _meter_tasks(inputs, n_tasks)
        flat = sorted(i for indices in positions for i in indices)
        assert flat == list(range(len(inputs.commitments)))
        owners: dict[str, int] = {}
        for k, task in enumerate(tasks):
            assert task.commitments
            for c in task.commitments:
                assert owners.setdefault(c.meter_id, k) == k  # a meter in one task only
                assert c.meter_id in task.meters


@pytest.mark.parametrize("workers", [2, 3, 16])
def test_workers_judge_what_one_process_judges(workers: int) -> None:
    inputs = load(EXAMPLE)
    assert _judged_text(judge_all(inputs, workers)) == _judged_text(judge_all(inputs, 1))


def test_the_command_writes_the_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    outputs = []
    for workers in ("1", "2", "4"):
        out = tmp_path / f"out{workers}"
        result = runner.invoke(
            app,
            [
                "validate-commitments",
                str(EXAMPLE),
                "-o",
                str(out),
                "--workers",
                workers,
                "--slot-start",
                START.isoformat(),
            ],
        )
        assert result.exit_code == 0, result.output
        files = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
        summary = json.loads(files.pop("summary.json"))
        summary.pop("runtime_s")  # how long it took: the one number that may differ
        manifest = json.loads(files.pop("manifest.json"))
        manifest.pop("created_utc")
        outputs.append((files, summary, manifest))
    assert {"verdicts.csv", "events.csv", "deliveries.csv"} <= set(outputs[0][0])
    assert outputs[0] == outputs[1] == outputs[2]


def test_the_default_judges_a_small_folder_in_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gridmatch.der_validation import run

    inputs = load(EXAMPLE)  # 20 commitments: below MIN_PARALLEL_COMMITMENTS
    assert len(inputs.commitments) < run.MIN_PARALLEL_COMMITMENTS

    def no_pool(*args: object, **kwargs: object) -> None:
        raise AssertionError("a worker pool was started")

    monkeypatch.setattr(run, "ProcessPoolExecutor", no_pool)
    assert _judged_text(judge_all(inputs, None)) == _judged_text(judge_all(inputs, 1))
    monkeypatch.setattr(run, "MIN_PARALLEL_COMMITMENTS", 1)
    monkeypatch.setattr(run, "default_workers", lambda: 1)  # one CPU: still no pool
    assert _judged_text(judge_all(inputs, None)) == _judged_text(judge_all(inputs, 1))


def test_workers_must_be_positive(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["validate-commitments", str(EXAMPLE), "-o", str(tmp_path / "o"), "--workers", "0"]
    )
    assert result.exit_code == 2 and not (tmp_path / "o").exists()


# --- judging faster finds the same -----------------------------------------------------


def test_a_cached_clear_sky_window_is_the_curve_computed_for_it() -> None:
    # Windows of a meter on its sample grid (mid-points), over day boundaries, cut out of
    # the cached days, and the same instants computed directly.
    rng = np.random.default_rng(7)
    for _ in range(200):
        site = SiteSpec(
            latitude_deg=float(rng.uniform(-65, 70)), longitude_deg=float(rng.uniform(-180, 180))
        )
        resolution_s = int(rng.choice([45, 60, 300, 900, 3600]))
        start_s = int(rng.integers(1_700_000_000, 1_900_000_000)) // 60 * 60
        mids = start_s + (np.arange(int(rng.integers(2, 5000))) + 0.5) * resolution_s
        assert np.array_equal(clearsky.clear_sky_ghi(site, mids), clearsky._ghi(site, mids))


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=60))
@settings(max_examples=200, deadline=None)
def test_the_noise_median_is_numpys(values: list[float]) -> None:
    from gridmatch.der_validation.detection import _median

    array = np.asarray(values)
    assert _median(array) == float(np.median(array))


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=5))
def test_the_small_median_is_the_statistics_one(values: list[float]) -> None:
    import statistics

    from gridmatch.der_validation.detection import _small_median

    assert _small_median(values) == statistics.median(values)


def test_only_the_claimed_starts_near_a_window_change_its_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every other start of the same meter and device type, as before the cut to those
    # within reach of the mistimed search: the same judgements.
    from gridmatch.der_validation import run

    inputs = load(EXAMPLE)
    near = _judged_text(judge_all(inputs, 1))
    monkeypatch.setattr(
        run,
        "_claimed_near",
        lambda starts, commitment, resolution_s, library: tuple(
            t for t in starts if t != commitment.start_s
        ),
    )
    assert _judged_text(judge_all(inputs, 1)) == near


def test_the_other_device_search_s_floors_change_no_judgement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With its score and energy floors, the search for another device makes a PV
    # curtailment's day fit only for a pulse that can reach them: the same judgements
    # as without the floors, with fewer day fits.
    from gridmatch.der_validation import signatures, verdicts

    inputs = load(EXAMPLE)
    made: list[int] = []
    day_fit = verdicts.DayFits._day

    def counted(self: verdicts.DayFits, *args: object) -> tuple[float, float, float]:
        made.append(1)
        return day_fit(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(verdicts.DayFits, "_day", counted)
    floored = _judged_text(judge_all(inputs, 1))
    with_floors = len(made)
    made.clear()

    def unfloored(*args: object, at_least: object = None, **kwargs: object) -> object:
        return signatures.fit_model(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(verdicts, "fit_model", unfloored)
    assert _judged_text(judge_all(inputs, 1)) == floored
    assert with_floors < len(made)
