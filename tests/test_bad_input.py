"""Bad input is refused at the edge: exit code 2, one message naming file/row/field, no output.

Every case starts from a small valid scenario on case33bw and breaks one thing.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridmatch.cli import app

HEADER = "order_id,participant_id,side,bus,slot,quantity_kwh,limit_price_eur_per_kwh,divisible"
# The seller sits at the feeder's far end: its supply lifts case33bw's low voltages, so
# the valid scenario's trades pass the security check.
ROWS = [
    "b1,alice,buy,5,0,1.5,0.30,false",
    "b2,bob,buy,12,0,2.0,0.28,true",
    "s1,carol,sell,17,0,3.0,0.10,true",
    "s2,dave,sell,30,1,1.0,0.12,",
]
SCENARIO = """\
name: tiny
network:
  pandapower: case33bw
slot_minutes: 60
market:
  pricing: midpoint
  grid_fee_eur_per_kwh: 0.01
orders: orders.csv
"""


def _write(folder: Path, scenario: str = SCENARIO, rows: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scenario.yaml").write_text(scenario)
    lines = [HEADER, *(ROWS if rows is None else rows)]
    (folder / "orders.csv").write_text("\n".join(lines) + "\n")
    return folder


def _replace_row(index: int, row: str) -> list[str]:
    rows = list(ROWS)
    rows[index] = row
    return rows


def _scenario_with(old: str, new: str) -> str:
    assert old in SCENARIO
    return SCENARIO.replace(old, new)


Case = Callable[[Path], None]


def _orders_text(text: str) -> Case:
    def apply(folder: Path) -> None:
        _write(folder)
        (folder / "orders.csv").write_text(text)

    return apply


def _rows(rows: list[str]) -> Case:
    return lambda folder: (_write(folder, rows=rows), None)[1]


def _scenario(text: str) -> Case:
    return lambda folder: (_write(folder, scenario=text), None)[1]


def _delete(name: str) -> Case:
    def apply(folder: Path) -> None:
        _write(folder)
        (folder / name).unlink()

    return apply


def _network_outside(folder: Path) -> None:
    _write(folder, scenario=_scenario_with("pandapower: case33bw", "file: ../net.json"))
    import pandapower as pp
    import pandapower.networks as pn

    pp.to_json(pn.case33bw(), str(folder.parent / "net.json"))


# (case id, how to break the scenario, file named, fragments the message must contain)
CASES: list[tuple[str, Case, str, tuple[str, ...]]] = [
    (
        "missing column",
        _orders_text(HEADER.replace(",bus", "") + "\nb1,alice,buy,0,1.5,0.3,false\n"),
        "orders.csv",
        ("row 1", "missing column", "bus"),
    ),
    (
        "unknown column",
        _orders_text(HEADER + ",colour\n" + ROWS[0] + ",red\n"),
        "orders.csv",
        ("row 1", "unknown column", "colour"),
    ),
    (
        "row with too few fields",
        _rows(_replace_row(1, "b2,bob,buy,12,0,2.0")),
        "orders.csv",
        ("row 3", "expected 8 fields"),
    ),
    (
        "quantity not a number",
        _rows(_replace_row(0, "b1,alice,buy,5,0,lots,0.30,false")),
        "orders.csv",
        ("row 2", "'quantity_kwh'", "not a number"),
    ),
    (
        "NaN price",
        _rows(_replace_row(2, "s1,carol,sell,20,0,3.0,nan,true")),
        "orders.csv",
        ("row 4", "'limit_price_eur_per_kwh'", "not finite"),
    ),
    (
        "infinite quantity",
        _rows(_replace_row(2, "s1,carol,sell,20,0,inf,0.1,true")),
        "orders.csv",
        ("row 4", "'quantity_kwh'", "not finite"),
    ),
    (
        "negative price",
        _rows(_replace_row(1, "b2,bob,buy,12,0,2.0,-0.28,true")),
        "orders.csv",
        ("row 3", "'limit_price_eur_per_kwh'", "negative"),
    ),
    (
        "zero quantity",
        _rows(_replace_row(1, "b2,bob,buy,12,0,0,0.28,true")),
        "orders.csv",
        ("row 3", "'quantity_kwh'", "greater than 0"),
    ),
    (
        "negative slot",
        _rows(_replace_row(0, "b1,alice,buy,5,-1,1.5,0.30,false")),
        "orders.csv",
        ("row 2", "'slot'", "negative"),
    ),
    (
        "fractional slot",
        _rows(_replace_row(0, "b1,alice,buy,5,0.5,1.5,0.30,false")),
        "orders.csv",
        ("row 2", "'slot'", "not a whole number"),
    ),
    (
        "quantity finer than a Wh",
        _rows(_replace_row(0, "b1,alice,buy,5,0,1.0004,0.30,false")),
        "orders.csv",
        ("row 2", "'quantity_kwh'", "1 Wh"),
    ),
    (
        "unknown side",
        _rows(_replace_row(1, "b2,bob,bid,12,0,2.0,0.28,true")),
        "orders.csv",
        ("row 3", "'side'", "'bid'"),
    ),
    (
        "bad divisible flag",
        _rows(_replace_row(1, "b2,bob,buy,12,0,2.0,0.28,maybe")),
        "orders.csv",
        ("row 3", "'divisible'", "'maybe'"),
    ),
    (
        "empty order id",
        _rows(_replace_row(1, ",bob,buy,12,0,2.0,0.28,true")),
        "orders.csv",
        ("row 3", "'order_id'", "empty"),
    ),
    (
        "duplicate order id",
        _rows(_replace_row(3, "b1,dave,sell,30,1,1.0,0.12,")),
        "orders.csv",
        ("row 5", "'order_id'", "duplicate", "row 2"),
    ),
    (
        "unknown bus",
        _rows(_replace_row(2, "s1,carol,sell,99,0,3.0,0.10,true")),
        "orders.csv",
        ("row 4", "'bus'", "99"),
    ),
    (
        "absurd quantity",
        _rows(_replace_row(0, "b1,alice,buy,5,0,1e306,0.30,false")),
        "orders.csv",
        ("row 2", "'quantity_kwh'", "larger than"),
    ),
    (
        "absurd price",
        _rows(_replace_row(2, "s1,carol,sell,20,0,3.0,1e300,true")),
        "orders.csv",
        ("row 4", "'limit_price_eur_per_kwh'", "larger than"),
    ),
    (
        "absurd slot",
        _rows(_replace_row(0, "b1,alice,buy,5,99999999999999999999,1.5,0.30,false")),
        "orders.csv",
        ("row 2", "'slot'", "larger than"),
    ),
    ("empty order book", _rows([]), "orders.csv", ("empty",)),
    ("empty orders file", _orders_text(""), "orders.csv", ("empty",)),
    (
        "malformed CSV",
        _orders_text(HEADER + '\nb1,alice,buy,5,0,1.5,"0.30\n'),
        "orders.csv",
        ("malformed CSV",),
    ),
    ("missing orders file", _delete("orders.csv"), "orders.csv", ("not found",)),
    (
        "orders path is a folder",
        _scenario(_scenario_with("orders: orders.csv", "orders: .")),
        "scenario",
        ("cannot be read",),
    ),
    ("missing scenario file", _delete("scenario.yaml"), "scenario.yaml", ("not found",)),
    (
        "malformed YAML",
        _scenario(SCENARIO + "market: [unclosed\n"),
        "scenario.yaml",
        ("malformed YAML", "row"),
    ),
    ("YAML not a mapping", _scenario("- just\n- a list\n"), "scenario.yaml", ("mapping",)),
    (
        "missing key",
        _scenario(SCENARIO.replace("name: tiny\n", "")),
        "scenario.yaml",
        ("'name'", "required"),
    ),
    (
        "unknown key",
        _scenario(SCENARIO + "colour: red\n"),
        "scenario.yaml",
        ("'colour'", "unknown key"),
    ),
    (
        "misspelt nested key",
        _scenario(_scenario_with("grid_fee_eur_per_kwh:", "grid_fee_eur_kwh:")),
        "scenario.yaml",
        ("'market.grid_fee_eur_kwh'", "unknown key"),
    ),
    (
        "string where a number belongs",
        _scenario(_scenario_with("slot_minutes: 60", "slot_minutes: an hour")),
        "scenario.yaml",
        ("'slot_minutes'",),
    ),
    (
        "NaN in scenario",
        _scenario(_scenario_with("grid_fee_eur_per_kwh: 0.01", "grid_fee_eur_per_kwh: .nan")),
        "scenario.yaml",
        ("'market.grid_fee_eur_per_kwh'", "finite"),
    ),
    (
        "negative fee",
        _scenario(_scenario_with("grid_fee_eur_per_kwh: 0.01", "grid_fee_eur_per_kwh: -0.01")),
        "scenario.yaml",
        ("'market.grid_fee_eur_per_kwh'",),
    ),
    (
        "unknown pricing rule",
        _scenario(_scenario_with("pricing: midpoint", "pricing: vickrey")),
        "scenario.yaml",
        ("'market'", "vickrey"),
    ),
    (
        "two network sources",
        _scenario(_scenario_with("pandapower: case33bw", "pandapower: case33bw\n  file: n.json")),
        "scenario.yaml",
        ("'network'", "exactly one"),
    ),
    (
        "unknown pandapower network",
        _scenario(_scenario_with("case33bw", "case_nowhere")),
        "scenario.yaml",
        ("'network.pandapower'", "case_nowhere"),
    ),
    (
        "network file outside the folder",
        _network_outside,
        "scenario.yaml",
        ("'network.file'", "outside the scenario folder"),
    ),
    (
        "orders file outside the folder",
        _scenario(_scenario_with("orders: orders.csv", "orders: ../orders.csv")),
        "scenario.yaml",
        ("'orders'", "outside the scenario folder"),
    ),
    (
        "voltage band upside down",
        _scenario(SCENARIO + "security:\n  vm_min_pu: 1.05\n  vm_max_pu: 0.95\n"),
        "scenario.yaml",
        ("'security'", "vm_min_pu"),
    ),
    (
        "background shorter than the slots",
        _scenario(SCENARIO + "background:\n  load_scaling: [1.0]\n"),
        "scenario.yaml",
        ("'background.load_scaling'", "slot 1"),
    ),
    (
        # YAML 1.1 reads this as a date it cannot build: a bare ValueError, exit 6, before.
        "a date that does not exist",
        _scenario(_scenario_with("name: tiny", "name: 2026-02-30")),
        "scenario.yaml",
        ("row 1", "a date or time that does not exist", "2026-02-30"),
    ),
    (
        # YAML 1.1 reads 1:00 as 60 (base 60): another number than the one written.
        "a number in base 60",
        _scenario(_scenario_with("slot_minutes: 60", "slot_minutes: 1:00")),
        "scenario.yaml",
        ("row 4", "'1:00' is read by YAML as the number 60", "plain decimals"),
    ),
]


@pytest.mark.parametrize(
    ("break_scenario", "file_name", "fragments"),
    [pytest.param(apply, name, fragments, id=case) for case, apply, name, fragments in CASES],
)
def test_bad_input_exits_2_with_one_clear_message_and_no_output(
    tmp_path: Path, break_scenario: Case, file_name: str, fragments: tuple[str, ...]
) -> None:
    folder = tmp_path / "scenario"
    break_scenario(folder)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["clear", str(folder), "--out", str(out)])
    assert result.exit_code == 2, (result.exception, result.stderr)
    message = result.stderr
    assert file_name in message
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not out.exists()
    # No staging folder or partial file is left next to the scenario either.
    assert {p.name for p in tmp_path.iterdir()} <= {"scenario", "net.json"}


def test_the_valid_base_scenario_clears(tmp_path: Path) -> None:
    # The cases above break exactly one thing of this scenario; it must clear as given.
    folder = _write(tmp_path / "scenario")
    result = CliRunner().invoke(app, ["clear", str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "trades.csv").read_text().count("\n") > 1


def test_an_existing_result_folder_survives_a_bad_input_rerun(tmp_path: Path) -> None:
    folder = _write(tmp_path / "scenario")
    out = tmp_path / "out"
    assert CliRunner().invoke(app, ["clear", str(folder), "--out", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _write(folder, rows=_replace_row(0, "b1,alice,buy,5,0,1.5,oops,false"))
    result = CliRunner().invoke(app, ["clear", str(folder), "--out", str(out)])
    assert result.exit_code == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    folder = _write(tmp_path / "scenario", rows=_replace_row(1, "b2,bob,bid,12,0,2.0,0.28,true"))
    completed = subprocess.run(
        [sys.executable, "-m", "gridmatch.cli", "clear", str(folder), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "orders.csv, row 3, field 'side'" in completed.stderr
    assert not (tmp_path / "o").exists()


def test_unknown_formulation_is_a_usage_error(tmp_path: Path) -> None:
    folder = _write(tmp_path / "scenario")
    args = ["clear", str(folder), "--out", str(tmp_path / "o"), "--formulation", "magic"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "magic" in result.stderr
    assert not (tmp_path / "o").exists()
