"""Attacks on the input edges of validate-commitments and battery-rewards.

Each test is a corrupted copy of a bundled example that once got through (or crashed):
it must now be refused as an :class:`~gridmatch.errors.InputError` naming the file, row
and field, exit code 2 on the command line, and an earlier result left as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.errors import InputError
from gridmatch.scenario_io.battery_input import read_agreement
from gridmatch.scenario_io.der_input import read_meter_data
from gridmatch.scenario_io.loader import load_scenario
from gridmatch.scenario_io.prepaid_input import load_prepaid

REPO = Path(__file__).resolve().parents[1]
DER_EXAMPLE = REPO / "scenarios" / "der-example"
BATTERY_EXAMPLE = REPO / "scenarios" / "battery-rewards-example"
METER_HEADER = "meter_id,timestamp,p_kw"
runner = CliRunner()
_LOADERS = {
    "battery-rewards-example": lambda folder: read_agreement(folder / "agreement.yaml"),
    "prepaid_example": load_prepaid,
    "prepaid-market": load_scenario,
}


def _copy(example: Path, tmp_path: Path) -> Path:
    folder = tmp_path / example.name
    shutil.copytree(example, folder)
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


# ------------------------------------------------------------------ meter_data.csv


@pytest.mark.parametrize(
    ("row", "field"),
    [
        # pandas' C tokenizer ended the cell at the NUL: '0.2<NUL>47' was read as 0.2.
        ("M1,2026-03-16T00:00:00Z,0.2\x0047", "p_kw"),
        # 'M1<NUL>evil' was read as 'M1', its rows silently given to meter M1.
        ("M1\x00evil,2026-03-16T00:00:00Z,1", "meter_id"),
    ],
)
def test_nul_in_a_meter_cell_is_refused_not_cut_short(tmp_path: Path, row: str, field: str) -> None:
    path = tmp_path / "meter_data.csv"
    path.write_bytes(f"{METER_HEADER}\n{row}\nM1,2026-03-16T00:01:00Z,2\n".encode())
    with pytest.raises(InputError) as info:
        read_meter_data(path)
    assert (info.value.row, info.value.field) == (2, field)


def test_meter_file_with_lone_carriage_returns_is_read_cell_by_cell(tmp_path: Path) -> None:
    # The whole file was taken as its header: a megabyte of "unknown column(s)".
    path = tmp_path / "meter_data.csv"
    good = "\n".join([METER_HEADER, "M1,2026-03-16T00:00:00Z,1", "M1,2026-03-16T00:01:00Z,2", ""])
    path.write_text(good.replace("\n", "\r"), newline="")
    series = read_meter_data(path)
    assert series["M1"].p_kw.tolist() == [1.0, 2.0]
    path.write_text(good.replace(",2\n", ",x\n").replace("\n", "\r"), newline="")
    with pytest.raises(InputError) as info:
        read_meter_data(path)
    assert (info.value.row, info.value.field) == (3, "p_kw")


@pytest.mark.parametrize(
    "rows",
    [
        # Fixed-width (bulk) and padded (cell by cell) shapes, before year 1 in UTC.
        ["M1,0001-01-01T00:00:00+14:00,1", "M1,0001-01-01T00:01:00+14:00,2"],
        ["M1, 0001-01-01T00:00:00+14:00,1", "M1,0001-01-01T00:01:00+14:00,2"],
        # After 9999-12-31 in UTC.
        ["M1,9999-12-31T23:58:00-14:00,1", "M1,9999-12-31T23:59:00-14:00,2"],
    ],
)
def test_meter_time_outside_what_a_datetime_holds_is_refused(
    tmp_path: Path, rows: list[str]
) -> None:
    path = tmp_path / "meter_data.csv"
    path.write_text("\n".join([METER_HEADER, *rows, ""]))
    with pytest.raises(InputError) as info:
        read_meter_data(path)
    assert (info.value.row, info.value.field) == (2, "timestamp")


def test_meter_time_before_year_one_exits_2_and_keeps_earlier_result(tmp_path: Path) -> None:
    # It crashed the summary (datetime.fromtimestamp: year 0), exit 6.
    folder = _copy(DER_EXAMPLE, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["validate-commitments", str(folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    before = _files(out)
    path = folder / "meter_data.csv"
    header, *rows = path.read_text().splitlines()
    extra = ["M0009,0001-01-01T00:00:00+14:00,0.1,0.1", "M0009,0001-01-01T00:01:00+14:00,0.1,0.1"]
    path.write_text("\n".join([header, *extra, *rows]) + "\n")
    result = runner.invoke(app, ["validate-commitments", str(folder), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "meter_data.csv, row 2, field 'timestamp'" in result.output
    assert _files(out) == before


# ------------------------------------------------------------------ agreement.yaml


def test_tiny_capacity_exits_2_not_6_and_keeps_earlier_result(tmp_path: Path) -> None:
    folder = _copy(BATTERY_EXAMPLE, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["battery-rewards", str(folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    before = _files(out)
    agreement = folder / "agreement.yaml"
    agreement.write_text(
        agreement.read_text().replace("capacity_kwh: 13.5", "capacity_kwh: 1.0e-300")
    )
    telemetry = folder / "telemetry.csv"
    lines = telemetry.read_text().splitlines()
    cells = lines[2].split(",")
    cells[3] = "1000000"  # p_kw at its bound: |P| / capacity is infinite
    lines[2] = ",".join(cells)
    telemetry.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["battery-rewards", str(folder), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "agreement.yaml" in result.output and "capacity_kwh" in result.output
    assert _files(out) == before


# ------------------------------------------------------------------ battery-rewards -o


def test_battery_rewards_refuses_a_folder_of_someone_elses_files(tmp_path: Path) -> None:
    # It wrote its three files beside the user's own (every other command refuses).
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's\n")
    result = runner.invoke(app, ["battery-rewards", str(BATTERY_EXAMPLE), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "holds no gridmatch result" in result.output
    assert _files(out) == {"notes.txt": b"the user's\n"}


def test_battery_rewards_to_a_file_names_it(tmp_path: Path) -> None:
    # Was "cannot read or write the files: [Errno 17] File exists".
    out = tmp_path / "taken"
    out.write_text("x\n")
    result = runner.invoke(app, ["battery-rewards", str(BATTERY_EXAMPLE), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "exists and is not a folder" in result.output and "Errno" not in result.output
    assert out.read_text() == "x\n"


def test_battery_rewards_keeps_out_of_another_commands_result(tmp_path: Path) -> None:
    # A result folder (validate-commitments') lists summary.json as gridmatch's own:
    # claimed there, it would be replaced.
    out = tmp_path / "der"
    result = runner.invoke(app, ["validate-commitments", str(DER_EXAMPLE), "-o", str(out)])
    assert result.exit_code == 0, result.output
    before = _files(out)
    result = runner.invoke(app, ["battery-rewards", str(BATTERY_EXAMPLE), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "another command's result" in result.output
    assert _files(out) == before


def test_battery_rewards_keeps_out_of_a_rounds_day_folder(tmp_path: Path) -> None:
    # A rolling day's folder lists its trades.csv and summary.json in the marker of
    # files gridmatch wrote into a shared folder: the summary was replaced.
    day = tmp_path / "day"
    day.mkdir()
    (day / "summary.json").write_text('{"kind": "day"}\n')
    (day / "trades.csv").write_text("slot\n")
    (day / ".gridmatch-files").write_text("summary.json\ntrades.csv\n")
    before = _files(day)
    result = runner.invoke(app, ["battery-rewards", str(BATTERY_EXAMPLE), "-o", str(day)])
    assert result.exit_code == 2, result.output
    assert "another command's result" in result.output
    assert _files(day) == before


def test_battery_rewards_takes_over_a_folder_an_earlier_version_wrote(tmp_path: Path) -> None:
    # Written before the files were listed: its own names only, so it is this command's.
    out = tmp_path / "out"
    result = runner.invoke(app, ["battery-rewards", str(BATTERY_EXAMPLE), "-o", str(out)])
    assert result.exit_code == 0, result.output
    (out / ".gridmatch-files").unlink()
    result = runner.invoke(app, ["battery-rewards", str(BATTERY_EXAMPLE), "-o", str(out)])
    assert result.exit_code == 0, result.output
    listed = (out / ".gridmatch-files").read_text().split()
    assert {"periods.csv", "verdicts.csv", "summary.json"} <= set(listed)


def test_a_mistyped_reclaim_folder_is_not_created(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    result = runner.invoke(
        app, ["battery-rewards", str(BATTERY_EXAMPLE), "-o", str(typo), "--reclaim"]
    )
    assert result.exit_code == 2, result.output
    assert not typo.exists()


def test_battery_rewards_reruns_into_its_own_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for _ in range(2):
        result = runner.invoke(app, ["battery-rewards", str(BATTERY_EXAMPLE), "-o", str(out)])
        assert result.exit_code == 0, result.output
    assert {"periods.csv", "verdicts.csv", "summary.json"} <= set(_files(out))


# ------------------------------------------------------------------ times in YAML


@pytest.mark.parametrize(
    ("example", "name", "old", "field"),
    [
        (
            "battery-rewards-example",
            "agreement.yaml",
            "start: 2026-01-01T00:00:00Z",
            "period.start",
        ),
        ("battery-rewards-example", "agreement.yaml", "expiry: 2036-01-01T00:00:00Z", "expiry"),
        ("prepaid_example", "prepaid.yaml", "start: 2026-03-02T00:00:00+01:00", "start"),
        ("prepaid-market", "scenario.yaml", "day_start: 2026-03-02T18:00:00+01:00", "day_start"),
    ],
)
@pytest.mark.parametrize("number", ["1767225600", "'1767225600'", "1767225600.5"])
def test_a_time_written_as_a_number_is_refused(
    tmp_path: Path, example: str, name: str, old: str, field: str, number: str
) -> None:
    # pydantic's lax datetime read a number, or a string of digits, as Unix seconds.
    folder = _copy(REPO / "scenarios" / example, tmp_path)
    path = folder / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, f"{old.split(':')[0]}: {number}", 1))
    with pytest.raises(InputError) as info:
        _LOADERS[example](folder)
    assert info.value.field == field, str(info.value)
    assert info.value.path.name == name
