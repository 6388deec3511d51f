"""Fuzzing the input edge of ``battery-rewards``: bad input is an InputError, bounded.

Attacks that once cost what they should not: a 100 MB telemetry file took 2.4 GB to read
(every row kept twice, as a list and as a dict of strings), with no cap on rows; a 2 MB
cell was echoed whole into the error line. The property tests change one cell or one
term of the bundled example and require an accepted file or an InputError naming it.
"""

from __future__ import annotations

import itertools
import shutil
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.errors import InputError
from gridmatch.scenario_io import battery_input
from gridmatch.scenario_io.battery_input import read_agreement, read_telemetry

EXAMPLE = Path(__file__).resolve().parents[1] / "scenarios" / "battery-rewards-example"
HEADER = "battery_id,timestamp,soc,p_kw,temperature_c,soh"
MAX_MESSAGE_CHARS = 400
runner = CliRunner()


def _rows(n: int) -> list[str]:
    return [
        "bess-1,1970-01-01T00:00:00Z,50.00,0.000,15.60,96.40".replace(
            "00:00:00", f"{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
        )
        for i in range(n)
    ]


def test_telemetry_with_too_many_rows_is_refused_before_it_is_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(battery_input, "MAX_TELEMETRY_ROWS", 100)
    path = tmp_path / "telemetry.csv"
    path.write_text("\n".join([HEADER, *_rows(100)]) + "\n")
    assert len(read_telemetry(path, "bess-1")) == 100
    path.write_text("\n".join([HEADER, *_rows(101)]))  # no line break at the end
    with pytest.raises(InputError, match="at most 100 rows"):
        read_telemetry(path, "bess-1")


def test_telemetry_larger_than_its_limit_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(battery_input, "TELEMETRY_LIMIT_BYTES", 1000)
    path = tmp_path / "telemetry.csv"
    path.write_text("\n".join([HEADER, *_rows(30)]) + "\n")
    with pytest.raises(InputError, match="at most"):
        read_telemetry(path, "bess-1")


def test_telemetry_is_read_without_keeping_its_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 20,000 rows of 52 bytes: held as one dict of strings per row (and a list of split
    # rows beside them) the read peaked at ~1 KB a row; as samples it is ~300 B a row.
    # (The limit is lowered as reading allocates a buffer of the limit's size at once.)
    monkeypatch.setattr(battery_input, "TELEMETRY_LIMIT_BYTES", 2 * 1024 * 1024)
    n = 20_000
    path = tmp_path / "telemetry.csv"
    path.write_text("\n".join([HEADER, *_rows(n)]) + "\n")
    tracemalloc.start()
    try:
        samples = read_telemetry(path, "bess-1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(samples) == n
    assert peak < 500 * n, f"{peak / n:.0f} bytes a row"


def test_a_huge_bad_telemetry_cell_is_quoted_short(tmp_path: Path) -> None:
    rows = _rows(10)
    rows[3] = rows[3].replace("50.00", "1" * 5000)  # a number too large to be finite
    path = tmp_path / "telemetry.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    with pytest.raises(InputError) as info:
        read_telemetry(path, "bess-1")
    assert (info.value.row, info.value.field) == (5, "soc")
    assert len(str(info.value)) < MAX_MESSAGE_CHARS


def test_a_row_cap_refusal_exits_2_and_keeps_an_earlier_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    shutil.copytree(EXAMPLE, folder)
    out = tmp_path / "out"
    assert runner.invoke(app, ["battery-rewards", str(folder), "-o", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(battery_input, "MAX_TELEMETRY_ROWS", 100)
    result = runner.invoke(app, ["battery-rewards", str(folder), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "telemetry.csv" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


_NASTY = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "nan",
            "-inf",
            "1e308",
            "-0",
            "0x10",
            "1_0",
            "\uff15",
            "0,5",
            "1e",
            "\x00",
            '"',
            "=cmd",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "0000-01-01T00:00:00Z",
            "2026-01-01T00:00:60Z",
            "9999-12-31T23:59:59-14:00",
            "bess-1 ",
            "x" * 300,
        ]
    ),
    st.text(max_size=40),
    st.text(alphabet="0123456789eE+-.:TZ", max_size=30),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(row=st.integers(0, 19), column=st.integers(0, 5), cell=_NASTY)
def test_one_nasty_telemetry_cell_is_accepted_or_named(
    tmp_path: Path, row: int, column: int, cell: str
) -> None:
    rows = [line.split(",") for line in _rows(20)]
    rows[row][column] = cell
    path = tmp_path / "telemetry.csv"
    path.write_text("\n".join([HEADER, *(",".join(r) for r in rows)]) + "\n")
    try:
        samples = read_telemetry(path, "bess-1")
    except InputError as error:
        assert error.path == path
        assert len(str(error)) < MAX_MESSAGE_CHARS + len(str(path))
        return
    assert all(0.0 <= s.soc_percent <= 100.0 for s in samples)
    assert all(a.time_s < b.time_s for a, b in itertools.pairwise(samples))


_TERMS = ("capacity_kwh: 13.5", "max_c_rate: 0.5", "count: 3", "share_bps: 1000")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(term=st.sampled_from(_TERMS), value=_NASTY)
def test_one_nasty_agreement_value_is_accepted_or_named(
    tmp_path: Path, term: str, value: str
) -> None:
    key = term.split(":")[0]
    text = (EXAMPLE / "agreement.yaml").read_text().replace(term, f"{key}: {value}", 1)
    path = tmp_path / "agreement.yaml"
    path.write_text(text)
    try:
        read_agreement(path)
    except InputError as error:
        assert error.path == path
        assert len(str(error)) < MAX_MESSAGE_CHARS + len(str(path))


@pytest.mark.parametrize("moment", ["0000-01-01T00:00:00Z", "2036-02-30", "2036-01-01T24:00:00Z"])
def test_an_expiry_that_does_not_exist_exits_2(tmp_path: Path, moment: str) -> None:
    folder = tmp_path / "in"
    shutil.copytree(EXAMPLE, folder)
    agreement = folder / "agreement.yaml"
    text = agreement.read_text()
    agreement.write_text(text.replace("expiry: 2036-01-01T00:00:00Z", f"expiry: {moment}"))
    result = runner.invoke(app, ["battery-rewards", str(folder), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "agreement.yaml, row 6: malformed YAML: a date or time that does not exist" in (
        result.output.replace("\n", "")
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("written", "yaml_reads"),
    [("0x10", "16"), ("1:30", "90"), ("013", "11"), ("1_3.5", "13.5"), ("0b11", "3")],
)
def test_a_capacity_yaml_reads_as_another_number_is_refused(
    tmp_path: Path, written: str, yaml_reads: str
) -> None:
    # YAML 1.1 reads these as numbers nobody wrote: 1:30 (base 60) was a 90 kWh battery.
    path = tmp_path / "agreement.yaml"
    text = (EXAMPLE / "agreement.yaml").read_text()
    path.write_text(text.replace("capacity_kwh: 13.5", f"capacity_kwh: {written}"))
    with pytest.raises(InputError) as info:
        read_agreement(path)
    assert info.value.row == 4
    assert f"'{written}' is read by YAML as the number {yaml_reads}" in info.value.message


def test_plain_decimals_and_quoted_text_are_still_read(tmp_path: Path) -> None:
    path = tmp_path / "agreement.yaml"
    text = (EXAMPLE / "agreement.yaml").read_text()
    text = text.replace("capacity_kwh: 13.5", "capacity_kwh: +1.35e+1")
    path.write_text(text.replace("battery_id: bess-1", "battery_id: '0x10'"))
    agreement = read_agreement(path)
    assert (agreement.capacity_kwh, agreement.battery_id) == (13.5, "0x10")
