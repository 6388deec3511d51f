"""Prepaid inputs at the edges of time and size: exit 2 with file, row and field, never 6.

Times near year 1 or 9999 overflowed Python's datetime when offset (a bug, exit 6);
times after 2262 overflowed pandas' nanosecond time axis under ``--report``; a period
of 1-minute readings over decades filled memory. Every prepaid time now lies in
``TIME_RANGE`` (1678 to 2262, UTC) and the reading slots and timeline rows are bounded.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import link_from_elsewhere
from test_prepaid import BASE_YAML, _folder, _prepaid, runner

from gridmatch.cli import app
from gridmatch.prepaid.run import run_prepaid

YAML = "prepaid.yaml"
USAGE = "usage.csv"


def _refused(folder: Path, tmp_path: Path, *messages: str, report: bool = False) -> None:
    args = [str(folder), "-o", str(tmp_path / "out"), *(["--report"] if report else [])]
    code, output = _prepaid(*args)
    assert code == 2, output
    flat = " ".join(output.split())
    for message in messages:
        assert message in flat, output
    assert not (tmp_path / "out").exists()


USAGE_ROW = "meter_id,timestamp,kwh\nM1,{},1\n"
TIMES = [
    # (file, text, message): a time in a row of every prepaid table, and prepaid.yaml's.
    (USAGE, USAGE_ROW.format("0001-01-01T00:00:00+01:00"), "usage.csv, row 2, field 'timestamp'"),
    (USAGE, USAGE_ROW.format("0001-01-01T00:00:00Z"), "usage.csv, row 2, field 'timestamp'"),
    (USAGE, USAGE_ROW.format("9999-12-31T23:00:00-01:00"), "usage.csv, row 2, field 'timestamp'"),
    (USAGE, USAGE_ROW.format("9999-12-31T23:00:00Z"), "usage.csv, row 2, field 'timestamp'"),
    (
        "topups.csv",
        "meter_id,timestamp,amount_eur\nM1,9999-12-31T23:59:59-12:00,1\n",
        "topups.csv, row 2, field 'timestamp'",
    ),
    (
        "comms.csv",
        "meter_id,timestamp,delay_min\nM1,0001-01-01T00:00:00+14:00,lost\n",
        "comms.csv, row 2, field 'timestamp'",
    ),
    (
        "tokens.csv",
        "meter_id,timestamp,token\nM1,9999-12-31T00:00:00Z,123456789\n",
        "tokens.csv, row 2, field 'timestamp'",
    ),
    (
        YAML,
        BASE_YAML.replace("2026-03-02T00:00:00Z", "0001-01-01T00:00:00+05:00"),
        "prepaid.yaml, field 'start'",
    ),
    (YAML, BASE_YAML + "end: 9999-12-31T23:00:00Z\n", "prepaid.yaml, field 'end'"),
]


@pytest.mark.parametrize(("name", "text", "message"), TIMES, ids=[t[0] for t in TIMES])
def test_times_near_year_1_or_9999_are_refused_with_file_row_and_field(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    folder = _folder(tmp_path, hours=3)
    (folder / name).write_text(text)
    _refused(folder, tmp_path, message, "outside 1678-01-01 to 2262-01-01 (UTC)")


def test_a_period_that_would_end_after_the_time_axis_is_refused(tmp_path: Path) -> None:
    # One reading on 2261-12-31 23:00, reports every two days: the closing read would be
    # after 2262-01-01.
    folder = _folder(tmp_path, hours=1)
    yaml_text = BASE_YAML.replace("start: 2026-03-02T00:00:00Z\n", "").replace(
        "report_interval_min: 60", "report_interval_min: 2880"
    )
    (folder / YAML).write_text(yaml_text)
    (folder / USAGE).write_text(USAGE_ROW.format("2261-12-31T23:00:00Z"))
    _refused(folder, tmp_path, "prepaid.yaml, field 'report_interval_min'", "ends after")


def test_the_report_of_times_after_2262_is_refused_at_the_edge(tmp_path: Path) -> None:
    # pandas' nanosecond timestamps end in April 2262: `--report` crashed after the
    # simulation; now the folder is refused before anything is written.
    folder = _folder(tmp_path, hours=1)
    (folder / YAML).write_text(BASE_YAML.replace("2026-03-02", "2300-01-01"))
    (folder / USAGE).write_text(USAGE_ROW.format("2300-01-01T00:00:00Z"))
    _refused(folder, tmp_path, "usage.csv, row 2, field 'timestamp'", report=True)


def test_the_last_instant_of_the_time_axis_still_simulates_and_reports(tmp_path: Path) -> None:
    folder = _folder(tmp_path, hours=1)
    yaml_text = BASE_YAML.replace("2026-03-02T00:00:00Z", "2261-12-31T22:00:00Z")
    (folder / YAML).write_text(yaml_text.replace("timezone: UTC", "timezone: Pacific/Kiritimati"))
    (folder / USAGE).write_text(USAGE_ROW.format("2261-12-31T23:00:00Z"))
    out = tmp_path / "out"
    code, output = _prepaid(str(folder), "-o", str(out), "--report")
    assert code == 0, output
    assert (out / "report.html").is_file()


def test_a_hand_edited_timeline_beyond_2262_is_refused_by_the_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_prepaid(_folder(tmp_path, hours=2), out)
    timeline = out / "timelines" / "M1.csv"
    lines = timeline.read_text().splitlines()
    lines[2] = lines[2].replace("2026-03-02", "2300-03-02", 1)
    timeline.write_text("\n".join(lines) + "\n")
    done = runner.invoke(app, ["report", str(out)])
    assert done.exit_code == 2, done.output
    assert "M1.csv, row 3, field 'time'" in " ".join(done.output.split()), done.output


def test_decades_of_1_minute_readings_are_refused_quickly(tmp_path: Path) -> None:
    # Reports every week, readings every minute, 30 years: 15.8 million reading slots
    # per meter were built one by one (and a Python list of their hours).
    folder = _folder(tmp_path, hours=1)
    yaml_text = BASE_YAML.replace("reading_minutes: 60", "reading_minutes: 1").replace(
        "report_interval_min: 60", "report_interval_min: 10080"
    )
    (folder / YAML).write_text(yaml_text.replace("2026-03-02T00:00:00Z", "2000-01-03T00:00:00Z"))
    (folder / USAGE).write_text(
        "meter_id,timestamp,kwh\nM1,2000-01-03T00:00:00Z,1\nM1,2030-01-01T00:00:00Z,1\n"
    )
    began = time.perf_counter()
    _refused(folder, tmp_path, "prepaid.yaml, field 'reading_minutes'", "at most 527040")
    assert time.perf_counter() - began < 5.0


def test_too_many_timeline_rows_are_refused(tmp_path: Path) -> None:
    # A year of 1-minute reports is allowed for one meter; for five it is 2.6 million
    # timeline rows held in memory.
    folder = _folder(tmp_path, hours=1)
    yaml_text = BASE_YAML.replace("reading_minutes: 60", "reading_minutes: 1").replace(
        "report_interval_min: 60", "report_interval_min: 1"
    )
    (folder / YAML).write_text(yaml_text.replace("2026-03-02T00:00:00Z", "2026-01-01T00:00:00Z"))
    accounts = "".join(f"p{n},M{n},1\n" for n in range(1, 6))
    (folder / "accounts.csv").write_text(f"participant_id,meter_id,balance_eur\n{accounts}")
    (folder / USAGE).write_text(
        "meter_id,timestamp,kwh\nM1,2026-01-01T00:00:00Z,1\nM1,2026-12-31T00:00:00Z,1\n"
    )
    _refused(folder, tmp_path, "accounts.csv:", "timeline rows; at most 2000000")


@pytest.mark.parametrize(
    ("name", "header", "value", "what"),
    [
        ("topups.csv", "amount_eur", "0.01", "top-ups"),
        ("tokens.csv", "token", "123456789", "keypad tokens"),
    ],
)
def test_more_than_500_top_ups_or_keypad_tokens_of_a_meter_are_refused(
    tmp_path: Path, name: str, header: str, value: str, what: str
) -> None:
    # Each may cost the meter a token, and its k-th token costs O(k) hashes.
    folder = _folder(tmp_path, hours=8)
    body = "".join(f"M1,2026-03-02T01:00:00Z,{value}\n" for _ in range(501))
    (folder / name).write_text(f"meter_id,timestamp,{header}\n{body}")
    _refused(folder, tmp_path, f"{name}, row 502, field 'meter_id'", f"more than 500 {what}")


def test_a_file_linked_from_outside_the_folder_is_read(tmp_path: Path) -> None:
    # The manifest named inputs by their resolved path relative to the folder, which a
    # link to a file elsewhere is not: ValueError, exit 6.
    folder = tmp_path / "prepaid"
    shutil.copytree(Path(__file__).resolve().parents[1] / "scenarios" / "prepaid_example", folder)
    link_from_elsewhere(folder, "accounts.csv", tmp_path / "store")
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepaid", str(folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "accounts.csv" in json.loads((out / "manifest.json").read_text())["inputs"]
