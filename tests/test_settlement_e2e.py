"""Scenario -> clear -> settle -> attest on a real anvil chain, checked against trades.csv.

Nothing is mocked: forge builds the contracts, anvil runs them, web3.py talks to it.
Expected money and energy are computed here from trades.csv and the meter file with the
contract's rules written out independently (Wh, micro-EUR, rounding).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.settlement import chain_client
from gridmatch.settlement.chain_client import ChainError

HEADER = "order_id,participant_id,side,bus,slot,quantity_kwh,limit_price_eur_per_kwh,divisible"
ORDERS = [
    "b1,alice,buy,5,0,1.5,0.30,false",
    "b2,bob,buy,12,0,2.0,0.28,true",
    "s1,carol,sell,17,0,3.0,0.10,true",
    "b3,alice,buy,5,1,1.0,0.30,false",
    "s2,dave,sell,17,1,2.0,0.12,true",
]
METERS = [  # a full delivery (2 Wh lost in the cable), a short one, none for slot 1
    "0,b1,s1,1.5,1.498",
    "0,b2,s1,1.2,1.2",
]


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("chain")
    scenario = root / "scenario"
    scenario.mkdir()
    (scenario / "scenario.yaml").write_text(
        "name: settle\nnetwork:\n  pandapower: case33bw\n"
        "market:\n  pricing: midpoint\n  grid_fee_eur_per_kwh: 0.01\n"
    )
    (scenario / "orders.csv").write_text("\n".join([HEADER, *ORDERS]) + "\n")
    out = root / "out"
    runner = CliRunner()
    assert runner.invoke(app, ["clear", str(scenario), "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["settle", str(out)])
    assert result.exit_code == 0, result.stderr
    meters = root / "meters.csv"
    meters.write_text(
        "slot,buy_order_id,sell_order_id,sent_kwh,received_kwh\n" + "\n".join(METERS) + "\n"
    )
    result = runner.invoke(app, ["attest", str(out), str(meters)])
    assert result.exit_code == 0, result.stderr
    return out, meters


def _expected(out: Path) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Free micro-EUR and received Wh per participant after the meters, and the open locks."""
    delivered = {}
    for line in METERS:
        slot, buy, sell, sent, received = line.split(",")
        delivered[int(slot), buy, sell] = round(min(float(sent), float(received)) * 1000)
    free: dict[str, int] = {}
    energy: dict[str, int] = {}
    open_locks: dict[str, int] = {}
    for row in csv.DictReader((out / "trades.csv").open()):
        wh = round(float(row["quantity_kwh"]) * 1000)
        price = round(float(row["price_eur_per_kwh"]) * 1e6)
        fee = round(float(row["fee_eur_per_kwh"]) * 1e6)
        lock = -(-wh * (price + fee) // 1000)
        key = (int(row["slot"]), row["buy_order_id"], row["sell_order_id"])
        if key not in delivered:
            open_locks[row["buyer_id"]] = open_locks.get(row["buyer_id"], 0) + lock
            continue
        paid_wh = min(wh, delivered[key])
        to_seller = paid_wh * price // 1000
        refund = lock - to_seller - paid_wh * fee // 1000
        free[row["seller_id"]] = free.get(row["seller_id"], 0) + to_seller
        free[row["buyer_id"]] = free.get(row["buyer_id"], 0) + refund
        energy[row["buyer_id"]] = energy.get(row["buyer_id"], 0) + paid_wh
    return free, energy, open_locks


def test_balances_and_energy_tokens_follow_trades_and_meters(settled: tuple[Path, Path]) -> None:
    out, _ = settled
    free, energy, open_locks = _expected(out)
    assert open_locks, "the case needs a trade without meter readings"
    on_chain = chain_client.balances(out)
    for participant, (free_micro_eur, locked_micro_eur, held_wh) in on_chain.items():
        assert free_micro_eur == free.get(participant, 0), participant
        assert locked_micro_eur == open_locks.get(participant, 0), participant
        assert sum(held_wh.values()) == energy.get(participant, 0), participant


def test_a_settled_trade_cannot_be_settled_again(settled: tuple[Path, Path]) -> None:
    out, _ = settled
    with pytest.raises(ChainError, match=r"TradeAlreadyFinal\(1, 1\)"):
        chain_client.attest_once(out, 0, "b1", "s1", "validator-3", 1500, 1500)


def test_without_a_quorum_the_buyer_reclaims_after_the_deadline(settled: tuple[Path, Path]) -> None:
    out, _ = settled
    _, _, open_locks = _expected(out)
    payouts = chain_client.reclaim_expired(out, advance_s=2 * 24 * 3600)
    assert {p.participant_id: round(p.balance_change_eur * 1e6) for p in payouts} == open_locks
    assert all(locked == 0 for _, locked, _ in chain_client.balances(out).values())


@pytest.mark.parametrize(
    ("rows", "field", "line"),
    [
        ("0,b1,s1,lots,1", "sent_kwh", 2),
        ("-1,b1,s1,1,1", "slot", 2),
        ("\n0,b1,s1,1,-2", "received_kwh", 3),  # a blank line counts, as in orders.csv
    ],
)
def test_a_bad_meter_file_is_refused_with_file_row_and_field(
    settled: tuple[Path, Path], tmp_path: Path, rows: str, field: str, line: int
) -> None:
    out, _ = settled
    bad = tmp_path / "meters.csv"
    bad.write_text(f"slot,buy_order_id,sell_order_id,sent_kwh,received_kwh\n{rows}\n")
    result = CliRunner().invoke(app, ["attest", str(out), str(bad)])
    assert result.exit_code == 2
    # Rows are the file's lines, header = 1, as in the orders file and a spreadsheet.
    assert f"{bad}, row {line}, field '{field}'" in result.stderr


def test_a_round_is_committed_once(settled: tuple[Path, Path]) -> None:
    out, _ = settled
    result = CliRunner().invoke(app, ["settle", str(out)])
    assert result.exit_code == 2
    assert "already committed" in result.stderr


TRADES_HEADER = (
    "slot,buy_order_id,sell_order_id,buyer_id,seller_id,buy_bus,sell_bus,quantity_kwh,"
    "price_eur_per_kwh,fee_eur_per_kwh,buy_limit_eur_per_kwh,sell_limit_eur_per_kwh,welfare_eur"
)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("-1,b1,s1,alice,carol,5,17,1.5,0.2,0.01,0.3,0.1,0.285", "slot"),
        (
            "0,b1,s1,alice,carol,5,17,1.5,20000000000000000000,0.01,0.3,0.1,0.285",
            "price_eur_per_kwh",
        ),
        ("0,b1,s1,alice,carol,5,17,lots,0.2,0.01,0.3,0.1,0.285", "quantity_kwh"),
    ],
)
def test_trades_the_contract_cannot_hold_are_refused_before_any_chain(
    tmp_path: Path, row: str, field: str
) -> None:
    (tmp_path / "trades.csv").write_text(f"{TRADES_HEADER}\n{row}\n")
    result = CliRunner().invoke(app, ["settle", str(tmp_path)])
    assert result.exit_code == 2
    assert f"row 2, field '{field}'" in result.stderr
    assert not (tmp_path / "settlement").exists()


def test_a_clearing_with_no_whole_wh_to_settle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "trades.csv").write_text(
        f"{TRADES_HEADER}\n0,b1,s1,alice,carol,5,17,0.0004,0.2,0.01,0.3,0.1,0.000076\n"
    )
    result = CliRunner().invoke(app, ["settle", str(tmp_path)])
    assert result.exit_code == 2
    assert "no trade of 1 Wh or more" in result.stderr
    assert not (tmp_path / "settlement").exists()


def test_sub_wh_fills_are_carried_through_settle_never_settled_for_more(tmp_path: Path) -> None:
    # A result folder whose trades hold fractions of a Wh (an older clearing, a hand-made
    # folder): one trade below 1 Wh and one of 1.5004 kWh. Settlement counts whole Wh,
    # rounded down: the sub-Wh trade stays off chain, the 0.4 Wh are not settled, and
    # both are recorded.
    rows = [
        "0,b1,s1,alice,carol,5,17,1.5004,0.2,0.01,0.3,0.1,0.28507",
        "0,b2,s1,bob,carol,12,17,0.0004,0.19,0.01,0.28,0.1,0.0000680",
    ]
    (tmp_path / "trades.csv").write_text("\n".join([TRADES_HEADER, *rows]) + "\n")
    result = CliRunner().invoke(app, ["settle", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    assert "not settled" in result.stderr
    record = json.loads((tmp_path / "settlement" / "deployment.json").read_text())
    assert [(t["buy_order_id"], t["quantity_wh"]) for t in record["trades"]] == [("b1", 1500)]
    unsettled = {u["buy_order_id"]: u for u in record["unsettled"]}
    assert unsettled["b1"]["settled_wh"] == 1500
    assert unsettled["b2"]["settled_wh"] == 0
    assert abs(unsettled["b1"]["unsettled_kwh"] - 0.0004) < 1e-12
    # Exactly the whole Wh are locked: 1500 Wh x (0.2 + 0.01) EUR/kWh = 0.315 EUR.
    assert record["total_locked_micro_eur"] == 315_000
    on_chain = chain_client.balances(tmp_path)
    assert on_chain["alice"][:2] == (0, 315_000)
    assert "bob" not in on_chain  # nothing of the sub-Wh trade went on chain


def test_attest_on_a_chain_without_the_contracts_is_a_chain_error(
    settled: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    from gridmatch.settlement.anvil import local_chain

    out, meters = settled
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    with local_chain(tmp_path / "fresh-state.json") as url:
        result = CliRunner().invoke(app, ["attest", str(copy), str(meters), "--rpc-url", url])
    assert result.exit_code == 4, result.stderr
    assert "chain: no contract at" in result.stderr
    assert "Traceback" not in result.stderr
