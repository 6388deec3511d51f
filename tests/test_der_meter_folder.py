"""Meter data as a ``meter_data/`` folder of files, judged file by file (issue #19).

A year of 1-minute data of a thousand meters does not fit one file; the folder form
must judge exactly as the one file does, whatever the number of workers, and refuse a
meter split over two files or a bad cell in any file with the file, row and field, and
without writing anything.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridmatch.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "scenarios" / "der-example"
RESULT_FILES = ("verdicts.csv", "events.csv")


def _run(folder: Path, out: Path, *options: str) -> object:
    return CliRunner().invoke(app, ["validate-commitments", str(folder), "-o", str(out), *options])


def _split(tmp_path: Path, meters_per_file: int = 2) -> Path:
    """The example with its meter_data.csv cut into files of whole meters, in order."""
    folder = tmp_path / "split"
    shutil.copytree(EXAMPLE, folder)
    lines = (folder / "meter_data.csv").read_text().splitlines(keepends=True)
    (folder / "meter_data.csv").unlink()
    header, rows = lines[0], lines[1:]
    meters = list(dict.fromkeys(row.split(",", 1)[0] for row in rows))
    (folder / "meter_data").mkdir()
    for n in range(0, len(meters), meters_per_file):
        chosen = set(meters[n : n + meters_per_file])
        body = [row for row in rows if row.split(",", 1)[0] in chosen]
        (folder / "meter_data" / f"part-{n:03d}.csv").write_text(header + "".join(body))
    return folder


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single") / "out"
    result = _run(EXAMPLE, out, "--workers", "1")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    return out


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_folder_of_files_judges_as_the_one_file(
    single: Path, tmp_path: Path, workers: str
) -> None:
    out = tmp_path / "out"
    result = _run(_split(tmp_path), out, "--workers", workers)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    for name in RESULT_FILES:
        assert (out / name).read_bytes() == (single / name).read_bytes(), name
    mine = json.loads((out / "summary.json").read_text())
    theirs = json.loads((single / "summary.json").read_text())
    assert mine["meters"] == theirs["meters"]
    assert mine["verdicts"] == theirs["verdicts"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(name.startswith("meter_data/") for name in manifest["inputs"]) == 3


def test_a_meter_missing_from_every_file_has_insufficient_data(tmp_path: Path) -> None:
    folder = _split(tmp_path)
    gone = sorted((folder / "meter_data").iterdir())[0]
    meters = {line.split(",", 1)[0] for line in gone.read_text().splitlines()[1:]}
    gone.unlink()
    out = tmp_path / "out"
    result = _run(folder, out, "--workers", "2")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    verdicts = (out / "verdicts.csv").read_text().splitlines()[1:]
    theirs = [v for v in verdicts if v.split(",")[1] in meters]
    assert theirs and all("insufficient_data" in v for v in theirs)


def _refused(folder: Path, out: Path, *expected: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "keep.txt").write_text("earlier results")
    for workers in ("1", "2"):
        result = _run(folder, out, "--workers", workers)
        assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
        for words in expected:
            assert words in result.output, result.output  # type: ignore[attr-defined]
        assert "Traceback" not in result.output  # type: ignore[attr-defined]
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_a_meter_in_two_files_is_refused(tmp_path: Path) -> None:
    folder = _split(tmp_path)
    first, second = sorted((folder / "meter_data").iterdir())[:2]
    moved = first.read_text().splitlines(keepends=True)[1:3]
    with second.open("a") as handle:
        handle.writelines(moved)
    _refused(folder, tmp_path / "out", "is also in part-000.csv", "meter_id")


def test_a_bad_cell_in_a_later_file_names_it(tmp_path: Path) -> None:
    folder = _split(tmp_path)
    last = sorted((folder / "meter_data").iterdir())[-1]
    lines = last.read_text().splitlines(keepends=True)
    lines[5] = lines[5].replace(lines[5].split(",")[2], "lots")
    last.write_text("".join(lines))
    _refused(folder, tmp_path / "out", last.name, "row 6", "p_kw")


def test_one_form_of_meter_data_only(tmp_path: Path) -> None:
    folder = _split(tmp_path)
    shutil.copy(EXAMPLE / "meter_data.csv", folder / "meter_data.csv")
    _refused(folder, tmp_path / "out", "meter_data.csv or this folder")
    (folder / "meter_data.csv").unlink()
    for path in (folder / "meter_data").iterdir():
        path.unlink()
    _refused(folder, tmp_path / "out2", "no *.csv file")
