"""Fuzzing the input edge of ``validate-commitments``: bad input is an InputError, bounded.

Each test is an attack that once got through or cost what it should not: an alias bomb
in ``extends``, a 415-byte meter file whose grid took 2.3 GB, a 10 MB cell echoed whole
into the error line. The property tests mutate one cell of a valid file and require the
reader to either accept it or refuse it naming the file, row and field, never anything
else (an exception of any other kind would end the command with exit code 6).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import link_from_elsewhere
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.errors import InputError
from gridmatch.scenario_io.der_input import (
    GRID_SLACK_SAMPLES,
    MAX_GRID_SAMPLES_PER_ROW,
    read_commitments,
    read_meter_data,
)
from gridmatch.scenario_io.der_models import load_event_models

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = REPO / "der_validation" / "models" / "default.yaml"
METER_HEADER = "meter_id,timestamp,p_kw,q_kvar"
COMMITMENT_HEADER = "commitment_id,meter_id,device_type,operation,start,end,kw,tolerance"
COMMITMENT = "C1,M1,ev_charger,import,2026-03-16T08:00:00+01:00,2026-03-16T10:00:00+01:00,7.4,0.1"
runner = CliRunner()
# An error line names file, row and field and quotes at most a short piece of the cell.
MAX_MESSAGE_CHARS = 400


def _meter_rows(n: int = 30) -> list[str]:
    return [f"M1,2026-03-16T08:{i:02d}:00+01:00,0.3,0.1" for i in range(n)]


def _folder(tmp_path: Path, meter_text: str) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "meter_data.csv").write_text(meter_text)
    (folder / "commitments.csv").write_text(
        "commitment_id,meter_id,device_type,operation,start,end,kw\n"
        "C1,M1,ev_charger,import,2026-03-16T08:00:00+01:00,2026-03-16T08:20:00+01:00,7.4\n"
    )
    return folder


def _alias_bomb(depth: int) -> str:
    """A YAML flow list whose last element is 9**depth strings, written in ~30*depth bytes."""
    text = "[&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"
    for level in range(1, depth + 1):
        text += f", &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]"
    return text + "]"


# ------------------------------------------------------------------ event_models.yaml


def test_an_alias_bomb_in_extends_is_refused_without_expanding_it(tmp_path: Path) -> None:
    # 9**6 strings: the message once quoted str() of all of them (9**8 took every byte).
    models = tmp_path / "event_models.yaml"
    models.write_text(f"version: 3\nmodels:\n  x:\n    extends: {_alias_bomb(6)}\n")
    with pytest.raises(InputError) as info:
        load_event_models(DEFAULT_MODELS, models)
    assert info.value.field == "models.x.extends"
    assert "found a list" in info.value.message
    assert len(str(info.value)) < MAX_MESSAGE_CHARS


def test_a_long_unknown_extends_is_quoted_short(tmp_path: Path) -> None:
    models = tmp_path / "event_models.yaml"
    models.write_text("version: 3\nmodels:\n  x:\n    extends: " + "y" * 100_000 + "\n")
    with pytest.raises(InputError) as info:
        load_event_models(DEFAULT_MODELS, models)
    assert info.value.field == "models.x.extends"
    assert len(str(info.value)) < MAX_MESSAGE_CHARS


# ------------------------------------------------------------------ meter_data.csv


def test_a_sparse_meter_file_is_refused_before_its_grid_is_allocated(tmp_path: Path) -> None:
    # Three rows a meter, the last 2**25 - 1 s after the first: grids of 2**25 samples
    # (p and q, 512 MiB a meter) from a file of a few hundred bytes.
    rows = []
    for meter in range(4):
        for moment in ("2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", "2027-01-23T08:04:31Z"):
            rows.append(f"M{meter},{moment},0.3,0.1")
    path = tmp_path / "meter_data.csv"
    path.write_text("\n".join([METER_HEADER, *rows]) + "\n")
    with pytest.raises(InputError) as info:
        read_meter_data(path)
    assert (info.value.row, info.value.field) == (4, "timestamp")
    assert "gaps too long" in info.value.message


def test_a_meter_with_a_long_outage_is_still_read(tmp_path: Path) -> None:
    # The cap leaves real outages alone: 20 rows of 1-min data, then 20 more rows after
    # as long a gap as the slack and 16 samples a row allow.
    gap_samples = GRID_SLACK_SAMPLES + MAX_GRID_SAMPLES_PER_ROW * 40 - 60
    first = [f"M1,1970-01-01T00:{i:02d}:00Z" for i in range(20)]
    later_s = [(gap_samples + i) * 60 for i in range(20)]
    from datetime import UTC, datetime

    later = [f"M1,{datetime.fromtimestamp(s, UTC):%Y-%m-%dT%H:%M:%S}Z" for s in later_s]
    path = tmp_path / "meter_data.csv"
    path.write_text("\n".join(["meter_id,timestamp,p_kw", *(r + ",0.5" for r in first + later)]))
    series = read_meter_data(path)["M1"]
    assert series.rows == 40
    assert series.gaps == 1


def test_a_sparse_meter_file_exits_2_and_keeps_an_earlier_result(tmp_path: Path) -> None:
    good = _folder(tmp_path, "\n".join(["meter_id,timestamp,p_kw,q_kvar", *_meter_rows()]) + "\n")
    out = tmp_path / "out"
    assert runner.invoke(app, ["validate-commitments", str(good), "-o", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    # 1-s rows, then one a year later: 31.5 M samples for 31 rows.
    seconds = [f"M1,2026-03-16T08:00:{i:02d}+01:00,0.3,0.1" for i in range(30)]
    sparse = [*seconds, "M1,2027-03-16T08:00:00+01:00,0.3,0.1"]
    (bad / "meter_data.csv").write_text("\n".join([METER_HEADER, *sparse]) + "\n")
    result = runner.invoke(app, ["validate-commitments", str(bad), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "gaps too long" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(
    ("cell", "field"),
    [
        ("0.3" + "x" * 2_000_000, "p_kw"),  # a junk cell of 2 MB
        ("1" * 5000, "p_kw"),  # a number too large to be finite
        ("2026-03-16T08:00:00+01:00" + "0" * 100_000, "timestamp"),
    ],
)
def test_a_huge_bad_meter_cell_is_quoted_short(tmp_path: Path, cell: str, field: str) -> None:
    row = {"p_kw": f"M1,2026-03-16T07:59:00+01:00,{cell},0.1", "timestamp": f"M1,{cell},0.3,0.1"}
    path = tmp_path / "meter_data.csv"
    path.write_text("\n".join([METER_HEADER, row[field], *_meter_rows()]) + "\n")
    with pytest.raises(InputError) as info:
        read_meter_data(path)
    assert (info.value.row, info.value.field) == (2, field)
    assert len(str(info.value)) < MAX_MESSAGE_CHARS
    assert f"({len(cell):,} characters)" in info.value.message


# Cells an attacker or a broken export writes: numbers in other grammars, times in other
# shapes, control characters, quotes, huge text.
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
            "+",
            ".",
            "\x00",
            "\ufeff1",
            '"',
            '""',
            "=cmd|' /C calc'!A0",
            "2026-03-16",
            "2026-03-16T08:00:00",
            "2026-03-16T08:00:60+01:00",
            "0000-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "2026-03-16T08:00:00.5Z",
            "2026-03-16T08:00:00+24:00",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "M\u00e9",
            "M" * 101,
        ]
    ),
    st.text(max_size=40),
    st.text(alphabet="0123456789eE+-.:TZ", max_size=30),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(row=st.integers(0, 29), column=st.integers(0, 3), cell=_NASTY)
def test_one_nasty_meter_cell_is_accepted_or_named(
    tmp_path: Path, row: int, column: int, cell: str
) -> None:
    rows = [line.split(",") for line in _meter_rows()]
    rows[row][column] = cell
    path = tmp_path / "meter_data.csv"
    text = "\n".join([METER_HEADER, *(",".join(r) for r in rows)]) + "\n"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        series = read_meter_data(path)
    except InputError as error:
        assert error.path == path
        assert len(str(error)) < MAX_MESSAGE_CHARS + len(str(path))
        return
    assert sum(s.rows for s in series.values()) == 30


# ------------------------------------------------------------------ commitments.csv


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(column=st.integers(0, 7), cell=_NASTY)
def test_one_nasty_commitment_cell_is_accepted_or_named(
    tmp_path: Path, column: int, cell: str
) -> None:
    library = load_event_models(DEFAULT_MODELS, None)
    cells = COMMITMENT.split(",")
    cells[column] = cell
    path = tmp_path / "commitments.csv"
    path.write_bytes(f"{COMMITMENT_HEADER}\n{','.join(cells)}\n".encode("utf-8", "surrogatepass"))
    try:
        (commitment,) = read_commitments(path, library)
    except InputError as error:
        assert error.path == path
        assert len(str(error)) < MAX_MESSAGE_CHARS + len(str(path))
        return
    assert commitment.end_s - commitment.start_s >= 60
    assert 0.0 < commitment.kw <= 10_000.0


@pytest.mark.parametrize("moment", ["0000-01-01T00:00:00Z", "2026-02-30", "2026-01-01T25:00:00Z"])
def test_a_yaml_time_that_does_not_exist_is_an_input_error(tmp_path: Path, moment: str) -> None:
    # YAML's loader builds an unquoted time and raised a bare ValueError: exit code 6.
    models = tmp_path / "event_models.yaml"
    models.write_text(f"version: 3\n\ndescription: {moment}\n")
    with pytest.raises(InputError, match="does not exist") as info:
        load_event_models(DEFAULT_MODELS, models)
    assert info.value.row == 3


def test_a_tolerance_yaml_reads_as_another_number_is_refused(tmp_path: Path) -> None:
    # min_hold_s: 20:00 is 1200 to YAML 1.1 (base 60), 0o17 15: numbers are decimals here.
    models = tmp_path / "event_models.yaml"
    models.write_text(
        "version: 3\nmodels:\n  ev_charger:\n    extends: ev_charger\n    min_hold_s: 20:00\n"
    )
    with pytest.raises(InputError, match="'20:00' is read by YAML as the number 1200") as info:
        load_event_models(DEFAULT_MODELS, models)
    assert info.value.row == 5


def test_a_meter_time_with_offset_seconds_is_refused(tmp_path: Path) -> None:
    # Python reads +01:00:30; ISO 8601 has no such offset, and the meter moved 30 s.
    rows = [r.replace("+01:00", "+01:00:30") for r in _meter_rows()]
    path = tmp_path / "meter_data.csv"
    path.write_text("\n".join([METER_HEADER, *rows]) + "\n")
    with pytest.raises(InputError, match="offset with seconds") as info:
        read_meter_data(path)
    assert (info.value.row, info.value.field) == (2, "timestamp")


@pytest.mark.parametrize("field", ["start", "end"])
def test_a_commitment_time_with_offset_seconds_is_refused(tmp_path: Path, field: str) -> None:
    cells = COMMITMENT.split(",")
    column = COMMITMENT_HEADER.split(",").index(field)
    cells[column] = cells[column].replace("+01:00", "-00:00:30")
    path = tmp_path / "commitments.csv"
    path.write_text(f"{COMMITMENT_HEADER}\n{','.join(cells)}\n")
    with pytest.raises(InputError, match="offset with seconds") as info:
        read_commitments(path, load_event_models(DEFAULT_MODELS, None))
    assert (info.value.row, info.value.field) == (2, field)


@pytest.mark.parametrize("quoted", [False, True])
def test_a_file_of_too_many_meters_is_refused_at_the_first_one_too_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quoted: bool
) -> None:
    # Each meter costs ~5 KB whatever its rows: 300,000 two-row meters (20 MB) took 1.4 GB.
    from gridmatch.scenario_io import der_input

    monkeypatch.setattr(der_input, "MAX_METERS_PER_FILE", 3)
    rows = [f"M{m},2026-03-16T00:0{i}:00Z,0.3" for m in range(4) for i in range(2)]
    if quoted:  # the cell-by-cell reader
        rows = [f'"{r}"'.replace(",", '","') for r in rows]
    path = tmp_path / "meter_data.csv"
    path.write_text("\n".join(["meter_id,timestamp,p_kw", *rows[:6]]) + "\n")
    assert len(read_meter_data(path)) == 3
    path.write_text("\n".join(["meter_id,timestamp,p_kw", *rows]) + "\n")
    with pytest.raises(InputError, match="at most 3 meters") as info:
        read_meter_data(path)
    assert (info.value.row, info.value.field) == (8, "meter_id")


def test_a_meter_file_linked_from_outside_the_folder_is_validated(tmp_path: Path) -> None:
    # The manifest named inputs by their resolved path relative to the folder, which a
    # link to a file elsewhere is not: ValueError, exit 6.
    folder = tmp_path / "der"
    shutil.copytree(
        REPO / "scenarios" / "der-example", folder, ignore=shutil.ignore_patterns("truth")
    )
    link_from_elsewhere(folder, "meter_data.csv", tmp_path / "store")
    out = tmp_path / "out"
    result = runner.invoke(app, ["validate-commitments", str(folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert "meter_data.csv" in manifest["inputs"]
