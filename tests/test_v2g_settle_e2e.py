"""V2G offers from parked EVs, cleared and settled on a real anvil, nothing mocked.

The bundled storm town's parked depot EVs offer discharge into its evening market
(``scenarios/storm-town/market``): ``mobility v2g-offers`` -> ``clear`` (AC check
included) -> ``settle`` -> meters sign -> ``attest`` -> ``mobility v2g-credit``. What
cleared is checked by the independent checker and against every vehicle's reserve and
departure charge, read from the input files with csv alone; what the chain paid each
vehicle's owner is recomputed by the contract's own rule, and the credit the command
reports agrees with it to the whole-Wh rounding of settlement.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandapower.networks as pn
import pytest
from feasibility import check_result_folder, line_distances_km
from metered_as_traded import attest_as_traded
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.settlement import attestation, deploy
from gridmatch.settlement.record import read_record, record_path

ROOT = Path(__file__).resolve().parents[1]
TOWN = ROOT / "scenarios" / "storm-town"
MARKET = TOWN / "market"
WH_PER_KWH = 1000


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _spare_kwh() -> dict[str, float]:
    """What each parked vehicle may give: residual less the larger of reserve and departure."""
    with (TOWN / "vehicles.csv").open(newline="") as handle:
        vehicles = {r["vehicle_id"]: r for r in csv.DictReader(handle)}
    with (TOWN / "parking.csv").open(newline="") as handle:
        parked = list(csv.DictReader(handle))
    spare = {}
    for row in parked:
        vehicle = vehicles[row["vehicle_id"]]
        keep = max(float(vehicle["reserve_kwh"]), float(row["departure_kwh"]))
        spare[row["vehicle_id"]] = max(float(vehicle["residual_kwh"]) - keep, 0.0)
    return spare


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("v2g")
    offered, cleared = root / "offered", root / "cleared"
    result = _invoke(
        "mobility", "v2g-offers", str(TOWN), "--scenario", str(MARKET), "-o", str(offered)
    )
    assert result.exit_code == 0, result.stderr
    result = _invoke("clear", str(offered), "--out", str(cleared))
    assert result.exit_code == 0, result.stderr
    deploy.settle(cleared)
    attest_as_traded(cleared, root)
    return offered, cleared


def _v2g_trades(offered: Path, cleared: Path) -> dict[str, list[dict[str, str]]]:
    """The cleared trades of each vehicle's V2G orders, read with csv alone."""
    with (offered / "v2g_offers.csv").open(newline="") as handle:
        vehicle_of = {r["order_id"]: r["vehicle_id"] for r in csv.DictReader(handle)}
    trades: dict[str, list[dict[str, str]]] = defaultdict(list)
    for t in csv.DictReader((cleared / "trades.csv").open()):
        if t["sell_order_id"] in vehicle_of:
            trades[vehicle_of[t["sell_order_id"]]].append(t)
    return trades


def test_v2g_trades_clear_within_reserve_and_departure(settled: tuple[Path, Path]) -> None:
    offered, cleared = settled
    # The market charges a distance fee over the CIGRE LV lines: the checker measures them.
    check_result_folder(offered, cleared, line_distances_km(pn.create_cigre_network_lv()))
    trades = _v2g_trades(offered, cleared)
    assert trades, "no V2G order cleared in the storm market"
    spare = _spare_kwh()
    for vehicle_id, sold in trades.items():
        sold_kwh = sum(float(t["quantity_kwh"]) for t in sold)
        assert sold_kwh <= spare[vehicle_id] + 1e-9, vehicle_id


def test_the_chain_pays_each_v2g_owner_what_the_credit_reports(
    settled: tuple[Path, Path], tmp_path: Path
) -> None:
    offered, cleared = settled
    record = read_record(record_path(cleared))
    assert not record.dropped
    v2g = _v2g_trades(offered, cleared)
    v2g_orders = {t["sell_order_id"] for sold in v2g.values() for t in sold}
    # The contract pays a seller paid Wh x price / 1000, rounded down, per trade; the
    # meters read exactly what was traded, so every trade is paid in full.
    expected: dict[str, int] = defaultdict(int)
    for trade in record.trades:
        if trade.sell_order_id in v2g_orders:
            expected[trade.seller_id] += (
                trade.quantity_wh * trade.price_micro_eur_per_kwh // WH_PER_KWH
            )
    held = attestation.balances(cleared)
    for owner, micro_eur in expected.items():
        free, locked, _ = held[owner]
        assert (free, locked) == (micro_eur, 0), owner
    credit_csv = tmp_path / "credit.csv"
    result = _invoke("mobility", "v2g-credit", str(cleared), "-o", str(credit_csv))
    assert result.exit_code == 0, result.stderr
    with credit_csv.open(newline="") as handle:
        credits = list(csv.DictReader(handle))
    by_owner = {row["owner_id"]: row for row in credits if int(row["n_trades"]) > 0}
    assert set(by_owner) == set(expected)
    for owner, row in by_owner.items():
        # Settlement keeps whole Wh: at most one Wh's worth (and a micro-EUR) a trade less.
        price_per_wh = max(float(t["price_eur_per_kwh"]) for t in v2g[row["vehicle_id"]]) * 1e3
        slack = int(row["n_trades"]) * (price_per_wh + 1)
        assert 0 <= float(row["credit_eur"]) * 1e6 - expected[owner] <= slack, owner
