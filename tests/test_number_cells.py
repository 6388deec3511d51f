"""Number cells are ASCII decimals: '5_0' and other scripts' digits are typing errors.

Python's ``float`` and ``int`` (and numpy's string conversion) read ``5_0`` as 50 and the
full-width or Arabic-Indic ``5`` as 5, so such a cell once entered a result as a
number nobody typed. Every reader must refuse it, naming the file, row and field.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gridmatch.battery_rewards.run import evaluate_folder
from gridmatch.der_validation.run import DEFAULT_MODELS
from gridmatch.errors import InputError
from gridmatch.results_io.rows import TradeRow
from gridmatch.results_io.tables import from_csv, to_csv
from gridmatch.scenario_io.der_input import load_der_inputs
from gridmatch.scenario_io.loader import load_scenario
from gridmatch.scenario_io.mobility_input import load_mobility
from gridmatch.scenario_io.prepaid_input import load_prepaid
from gridmatch.settlement.meters import read_meter_csv
from gridmatch.user_files import parse_float, parse_int

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
TYPOS = ["5_0", "\uff15", "\u0665", "1_000.5"]


def _der(folder: Path) -> Any:
    return load_der_inputs(folder, DEFAULT_MODELS)


# example, file, column, loader
CASES: list[tuple[str, str, str, Callable[[Path], Any]]] = [
    ("der-example", "meter_data.csv", "p_kw", _der),
    ("der-example", "meter_data.csv", "q_kvar", _der),
    ("der-example", "commitments.csv", "kw", _der),
    ("battery-rewards-example", "telemetry.csv", "p_kw", evaluate_folder),
    ("battery-rewards-example", "telemetry.csv", "soc", evaluate_folder),
    ("storm-town", "vehicles.csv", "residual_kwh", load_mobility),
    ("storm-town", "requests.csv", "latest_min", load_mobility),
    ("prepaid-market", "orders.csv", "quantity_kwh", load_scenario),
    ("prepaid-market", "orders.csv", "slot", load_scenario),
    ("prepaid_example", "topups.csv", "amount_eur", load_prepaid),
    ("prepaid_example", "comms.csv", "delay_min", load_prepaid),
]


def _set_cell(path: Path, column: str, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    index = lines[0].split(",").index(column)
    cells = lines[1].split(",")
    cells[index] = text
    lines[1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("typo", TYPOS)
@pytest.mark.parametrize(
    ("example", "name", "column", "load"), CASES, ids=[f"{c[1]}:{c[2]}" for c in CASES]
)
def test_number_cell_with_a_typo_is_refused(
    tmp_path: Path,
    example: str,
    name: str,
    column: str,
    load: Callable[[Path], Any],
    typo: str,
) -> None:
    folder = tmp_path / example
    shutil.copytree(SCENARIOS / example, folder)
    load(folder)  # the copy loads as it is
    _set_cell(folder / name, column, typo)
    with pytest.raises(InputError) as info:
        load(folder)
    error = info.value
    assert (error.path.name, error.row, error.field) == (name, 2, column), str(error)


@pytest.mark.parametrize("typo", TYPOS)
def test_result_table_cell_with_a_typo_is_refused(tmp_path: Path, typo: str) -> None:
    row = TradeRow(
        slot=0,
        buy_order_id="b",
        sell_order_id="s",
        buyer_id="B",
        seller_id="S",
        buy_bus=1,
        sell_bus=2,
        quantity_kwh=1.5,
        price_eur_per_kwh=0.2,
        fee_eur_per_kwh=0.01,
        buy_limit_eur_per_kwh=0.3,
        sell_limit_eur_per_kwh=0.1,
        welfare_eur=0.285,
    )
    path = tmp_path / "trades.csv"
    text = to_csv(TradeRow, [row]).replace(",1.5,", f",{typo},")
    assert from_csv(TradeRow, to_csv(TradeRow, [row]), path) == [row]
    with pytest.raises(InputError) as info:
        from_csv(TradeRow, text, path)
    assert info.value.field == "quantity_kwh"


@pytest.mark.parametrize("typo", TYPOS)
@pytest.mark.parametrize("field", ["slot", "exported_kwh"])
def test_settlement_meter_cell_with_a_typo_is_refused(
    tmp_path: Path, typo: str, field: str
) -> None:
    path = tmp_path / "meters.csv"
    path.write_text("meter_id,slot,exported_kwh,imported_kwh\nP1,1,0.5,0\n", encoding="utf-8")
    assert len(read_meter_csv(path)) == 1
    _set_cell(path, field, typo)
    with pytest.raises(InputError) as info:
        read_meter_csv(path)
    assert (info.value.row, info.value.field) == (2, field)


@pytest.mark.parametrize(
    ("text", "value"),
    [("+1.5", 1.5), ("1E3", 1000.0), ("1e+3", 1000.0), (".5", 0.5), ("1.", 1.0),
     (" 2 ", 2.0), ("-.5e-3", -0.0005), ("-inf", float("-inf"))],
)  # fmt: skip
def test_every_decimal_python_writes_is_still_a_number(text: str, value: float) -> None:
    # The grammar refuses only separators and other scripts' digits, not a way of
    # writing a decimal that a spreadsheet or another program exports.
    assert parse_float(text) == value


def test_whole_numbers_keep_their_signs_and_padding() -> None:
    assert [parse_int(t) for t in ("42", "+7", "-3", " 5 ")] == [42, 7, -3, 5]
