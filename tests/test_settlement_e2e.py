"""Scenario -> clear -> settle -> meters sign -> attest on a real anvil, nothing mocked.

forge builds the contracts, anvil runs them (without impersonation, with EIP-7825's
gas cap), every transaction is signed by a key of the deployment's keystore, and four
validator processes (quorum: more than two thirds, so three) each check the signed
meter readings themselves. Expected money and energy are computed here from
trades.csv, orders.csv and the meter file with the documented rules written out
independently (whole Wh rounded down, micro-EUR, pro-rata shares).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.errors import InputError
from gridmatch.settlement import attestation, deploy
from gridmatch.settlement.chain import fund_gas
from gridmatch.settlement.chain_view import AddedTrade, ChainView
from gridmatch.settlement.eip712 import Domain, MeterBinding, MeterReading, sign
from gridmatch.settlement.keys import (
    GRID_OPERATOR,
    PASSWORD_ENV,
    Keystore,
    decrypt_v3,
    validator_name,
)
from gridmatch.settlement.meters import (
    SignedReading,
    read_meter_csv,
    read_signed_readings,
    sign_readings,
    write_signed_readings,
)
from gridmatch.settlement.record import DeploymentRecord, TradeRecord, read_record, record_path
from gridmatch.settlement.transactions import Sender
from gridmatch.settlement.validator import deliveries

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HEADER = "order_id,participant_id,side,bus,slot,quantity_kwh,limit_price_eur_per_kwh,divisible"
ORDERS = [
    "b1,alice,buy,5,0,1.5,0.30,false",
    "b2,bob,buy,12,0,2.0,0.28,true",
    "s1,carol,sell,17,0,3.0,0.10,true",
    "b3,alice,buy,5,1,1.0,0.30,false",
    "s2,dave,sell,17,1,2.0,0.12,true",
    "b4,erin,buy,12,1,0.5,0.31,false",
]
# Meter exports and imports per participant and slot (kWh). Carol sold 3.0 kWh in slot 0
# but exported 2.4: the same kWh cannot be paid twice, so her trades share what she
# exported. Dave's reading is forged below, so his trades get no quorum.
METERS = {
    ("alice", 0): (0.0, 1.5),
    ("bob", 0): (0.0, 2.5),
    ("carol", 0): (2.4, 0.0),
    ("alice", 1): (0.0, 1.2),
    ("dave", 1): (1.0, 0.0),
    ("erin", 1): (0.0, 0.5),
}


def _scenario(root: Path, *, secure: bool = False, orders: list[str] = ORDERS) -> Path:
    scenario = root / "scenario"
    scenario.mkdir()
    (scenario / "scenario.yaml").write_text(
        "name: settle\nnetwork:\n  pandapower: case33bw\n"
        f"security:\n  enabled: {'true' if secure else 'false'}\n"
        "day_start: 2026-12-01T00:00:00Z\n"
        "market:\n  pricing: midpoint\n  grid_fee_eur_per_kwh: 0.01\n"
    )
    (scenario / "orders.csv").write_text("\n".join([HEADER, *orders]) + "\n")
    return scenario


def _meter_csv(path: Path) -> Path:
    rows = [f"{m},{s},{e},{i}" for (m, s), (e, i) in sorted(METERS.items())]
    path.write_text("meter_id,slot,exported_kwh,imported_kwh\n" + "\n".join(rows) + "\n")
    return path


def _clear(scenario: Path, out: Path) -> None:
    result = CliRunner().invoke(app, ["clear", str(scenario), "--out", str(out)])
    assert result.exit_code == 0, result.stderr


def _trades(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "trades.csv").open()))


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("chain")
    out = root / "out"
    runner = CliRunner()
    result = runner.invoke(app, ["clear", str(_scenario(root)), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    # Erin's prepaid account holds less than her trade locks: it is dropped, not the round.
    locks = _expected_locks(out)
    funding = {buyer: lock for buyer, lock in locks.items() if buyer != "erin"}
    funding["erin"] = locks["erin"] - 1
    deploy.settle(out, funding=funding)
    signed = root / "readings.json"
    result = runner.invoke(
        app, ["meters", "sign", str(out), str(_meter_csv(root / "meters.csv")), "-o", str(signed)]
    )
    assert result.exit_code == 0, result.stderr
    _tamper(out, signed)
    result = runner.invoke(app, ["attest", str(out), str(signed)])
    assert result.exit_code == 0, result.stderr
    return out, signed, result.stderr


def _tamper(out: Path, signed: Path) -> None:
    """Forge dave's reading, replay alice's, and add one signed for another deployment."""
    record = read_record(record_path(out))
    readings = read_signed_readings(signed)
    forged = []
    for reading in readings:
        if reading.meter_id == "dave":
            # Higher export, the signature left as it was: no longer the meter's.
            reading = reading.model_copy(update={"exported_wh": reading.exported_wh + 500})
        forged.append(reading)
    alice = next(r for r in readings if r.meter_id == "alice" and r.imported_wh == 1200)
    forged.append(alice)  # the same reading given twice
    # A genuine meter signature, but under another deployment's domain.
    keystore = Keystore.open(out / "settlement" / "keys", create=False)
    other = Domain(record.chain_id, "0x000000000000000000000000000000000000dEaD")
    bob = next(r for r in readings if r.meter_id == "bob")
    message = MeterReading(bob.meter, bob.interval_start, bob.interval_end, 0, 9999)
    replayed = bob.model_copy(
        update={
            "imported_wh": 9999,
            "exported_wh": 0,
            "signature": "0x"
            + sign(keystore.meter("bob"), other.digest(message.struct_hash())).hex(),
        }
    )
    forged.append(replayed)
    # The same reading of bob's under the malleated twin of its genuine signature
    # (s -> n - s): recoverable off chain, refused by OpenZeppelin's ECDSA, so refused
    # here; bob's genuine reading still counts.
    signature = bytes.fromhex(bob.signature[2:])
    s_value = int.from_bytes(signature[32:64], "big")
    twin = (
        signature[:32] + (CURVE_ORDER - s_value).to_bytes(32, "big") + bytes([55 - signature[64]])
    )
    forged.append(bob.model_copy(update={"signature": "0x" + twin.hex()}))
    write_signed_readings(signed, record.domain, forged)


def _expected_locks(out: Path) -> dict[str, int]:
    locks: dict[str, int] = {}
    for row in _trades(out):
        wh, price, fee = _terms(out, row)
        locks[row["buyer_id"]] = locks.get(row["buyer_id"], 0) + -(-wh * (price + fee) // 1000)
    return locks


def _terms(out: Path, row: dict[str, str]) -> tuple[int, int, int]:
    """Wh rounded down, micro-EUR price and fee as the documented rule sets them."""
    orders = {o["order_id"]: o for o in csv.DictReader((out / "orders.csv").open())}
    buy_limit = math.floor(
        float(orders[row["buy_order_id"]]["limit_price_eur_per_kwh"]) * 1e6 + 1e-6
    )
    sell_limit = math.ceil(
        float(orders[row["sell_order_id"]]["limit_price_eur_per_kwh"]) * 1e6 - 1e-6
    )
    fee = round(float(row["fee_eur_per_kwh"]) * 1e6)
    price = min(max(round(float(row["price_eur_per_kwh"]) * 1e6), sell_limit), buy_limit - fee)
    return math.floor(float(row["quantity_kwh"]) * 1000 + 1e-6), price, fee


def _expected(out: Path) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Free micro-EUR and received Wh per participant after the votes, and open locks."""
    rows = [r for r in _trades(out) if r["buyer_id"] != "erin"]
    sold: dict[tuple[str, int], int] = {}
    bought: dict[tuple[str, int], int] = {}
    for row in rows:
        wh = _terms(out, row)[0]
        key_s, key_b = (row["seller_id"], int(row["slot"])), (row["buyer_id"], int(row["slot"]))
        sold[key_s] = sold.get(key_s, 0) + wh
        bought[key_b] = bought.get(key_b, 0) + wh
    free: dict[str, int] = {"erin": _expected_locks(out)["erin"] - 1}
    energy: dict[str, int] = {}
    open_locks: dict[str, int] = {}
    for row in rows:
        wh, price, fee = _terms(out, row)
        lock = -(-wh * (price + fee) // 1000)
        slot = int(row["slot"])
        if row["seller_id"] == "dave":  # forged reading: no quorum
            open_locks[row["buyer_id"]] = open_locks.get(row["buyer_id"], 0) + lock
            continue
        exported = math.floor(METERS[row["seller_id"], slot][0] * 1000 + 1e-6)
        imported = math.floor(METERS[row["buyer_id"], slot][1] * 1000 + 1e-6)
        sent = (
            wh
            if exported >= sold[row["seller_id"], slot]
            else wh * exported // sold[row["seller_id"], slot]
        )
        got = (
            wh
            if imported >= bought[row["buyer_id"], slot]
            else wh * imported // bought[row["buyer_id"], slot]
        )
        paid_wh = min(sent, got)
        to_seller = paid_wh * price // 1000
        refund = lock - to_seller - paid_wh * fee // 1000
        free[row["seller_id"]] = free.get(row["seller_id"], 0) + to_seller
        free[row["buyer_id"]] = free.get(row["buyer_id"], 0) + refund
        energy[row["buyer_id"]] = energy.get(row["buyer_id"], 0) + paid_wh
    return free, energy, open_locks


def test_balances_and_energy_follow_trades_and_verified_meters(
    settled: tuple[Path, Path, str],
) -> None:
    out, _, _ = settled
    free, energy, open_locks = _expected(out)
    assert open_locks, "the case needs a trade without a valid reading"
    on_chain = attestation.balances(out)
    for participant, (free_micro_eur, locked_micro_eur, held_wh) in on_chain.items():
        assert free_micro_eur == free.get(participant, 0), participant
        assert locked_micro_eur == open_locks.get(participant, 0), participant
        assert sum(held_wh.values()) == energy.get(participant, 0), participant


def test_each_attack_is_refused_with_a_clear_message(settled: tuple[Path, Path, str]) -> None:
    out, _, stderr = settled
    lines = " ".join(stderr.split())
    assert "reading of meter dave" in lines and "forged" in lines
    assert "reading of meter alice" in lines and "replayed (given twice); counted once" in lines
    assert "reading of meter bob" in lines
    assert "short: carol exported 2400 Wh" in lines and "the same Wh is never paid twice" in lines
    assert "no valid reading of dave's meter" in lines
    record = read_record(record_path(out))
    (dropped,) = record.dropped
    assert (dropped.buyer_id, dropped.available_micro_eur) == (
        "erin",
        dropped.required_micro_eur - 1,
    )


def test_the_validators_ran_as_separate_processes_with_their_own_keys(
    settled: tuple[Path, Path, str],
) -> None:
    out, _, _ = settled
    record = read_record(record_path(out))
    assert len(set(record.validators.values())) == 4
    for name in record.validators:
        assert (out / "settlement" / name / "readings.json").is_file()
        assert (out / "settlement" / "keys" / f"{name}.json").is_file()
    keys = json.loads((out / "settlement" / "keys" / "operator.json").read_text())
    assert "crypto" in keys  # an encrypted V3 keystore, not a bare key


def test_a_settled_trade_takes_no_second_vote(settled: tuple[Path, Path, str]) -> None:
    out, signed, _ = settled
    result = CliRunner().invoke(app, ["attest", str(out), str(signed)])
    assert result.exit_code == 0, result.stderr
    free, _, _ = _expected(out)
    on_chain = attestation.balances(out)
    assert {p: v[0] for p, v in on_chain.items() if v[0]} == {p: v for p, v in free.items() if v}


def test_without_a_quorum_the_buyer_reclaims_after_the_deadline(
    settled: tuple[Path, Path, str], tmp_path: Path
) -> None:
    out, _, _ = settled
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    free, _, open_locks = _expected(copy)
    runner = CliRunner()
    early = runner.invoke(app, ["reclaim", str(copy)])
    assert early.exit_code == 0 and "nothing reclaimed" in early.stderr
    result = runner.invoke(app, ["reclaim", str(copy), "--advance-clock-hours", "48"])
    assert result.exit_code == 0, result.stderr
    for participant, lock in open_locks.items():
        assert participant in result.stderr and f"{lock / 1e6:.6f}" in result.stderr
    shown = runner.invoke(app, ["balances", str(copy), "--json"])
    assert shown.exit_code == 0, shown.stderr
    held = json.loads(shown.stdout)
    assert all(h["locked_micro_eur"] == 0 for h in held.values())
    for participant, h in held.items():
        expected = free.get(participant, 0) + open_locks.get(participant, 0)
        assert h["free_micro_eur"] == expected, participant


def test_a_round_is_committed_once(settled: tuple[Path, Path, str]) -> None:
    out, _, _ = settled
    result = CliRunner().invoke(app, ["settle", str(out)])
    assert result.exit_code == 2
    assert "already committed" in result.stderr


def test_attest_on_a_chain_without_the_contracts_is_a_chain_error(
    settled: tuple[Path, Path, str], tmp_path: Path
) -> None:
    from gridmatch.settlement.anvil import local_chain

    out, signed, _ = settled
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    with local_chain(tmp_path / "fresh-state.json") as url:
        result = CliRunner().invoke(app, ["attest", str(copy), str(signed), "--rpc-url", url])
    assert result.exit_code == 4, result.stderr
    assert "chain: no contract at" in result.stderr
    assert "Traceback" not in result.stderr


def test_settle_works_on_a_node_that_impersonates_nobody(tmp_path: Path) -> None:
    # A separate anvil, as any node would be: no auto-impersonation, EIP-7825 enforced.
    from gridmatch.settlement.anvil import local_chain

    out = tmp_path / "out"
    assert (
        CliRunner().invoke(app, ["clear", str(_scenario(tmp_path)), "--out", str(out)]).exit_code
        == 0
    )
    with local_chain(tmp_path / "node-state.json") as url:
        result = CliRunner().invoke(
            app, ["settle", str(out), "--rpc-url", url, "--validators", "3"]
        )
        assert result.exit_code == 0, result.stderr
        signed = tmp_path / "readings.json"
        meters = _meter_csv(tmp_path / "meters.csv")
        assert (
            CliRunner()
            .invoke(app, ["meters", "sign", str(out), str(meters), "-o", str(signed)])
            .exit_code
            == 0
        )
        result = CliRunner().invoke(app, ["attest", str(out), str(signed), "--rpc-url", url])
        assert result.exit_code == 0, result.stderr
        record = read_record(record_path(out))
        assert record.rpc_url == url and len(record.validators) == 3
        assert sum(sum(v[2].values()) for v in attestation.balances(out, rpc_url=url).values()) > 0


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda rows: rows[1].__setitem__("slot", "-1"), "row 2, field 'slot'"),
        (lambda rows: rows[1].__setitem__("quantity_kwh", "lots"), "row 2, field 'quantity_kwh'"),
        (lambda rows: rows[1].__setitem__("buy_order_id", "nonesuch"), "not in orders.csv"),
        (lambda rows: rows[1].__setitem__("buy_order_id", "s1"), "'s1' is a sell order"),
        (lambda rows: rows[1].__setitem__("seller_id", "dave"), "is carol's, not dave's"),
        (lambda rows: rows[1].__setitem__("slot", "1"), "is of slot 0"),
        (lambda rows: rows[2].update(rows[1]), "on row 2 already"),
        (lambda rows: rows[1].__setitem__("quantity_kwh", "4.0"), "more than its 1500 Wh"),
        (lambda rows: rows[1].__setitem__("fee_eur_per_kwh", "0.05"), "above the tariff's highest"),
        (lambda rows: rows[1].__setitem__("fee_eur_per_kwh", "0.5"), "above the tariff's highest"),
    ],
)
def test_trades_the_contract_cannot_take_are_refused_before_any_chain(
    settled: tuple[Path, Path, str], tmp_path: Path, edit: object, fragment: str
) -> None:
    out, _, _ = settled
    copy = tmp_path / "out"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("settlement"))
    rows = [row for row in csv.reader((copy / "trades.csv").open())]
    records = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    edit([{}, *records])  # type: ignore[operator]
    with (copy / "trades.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=rows[0], lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    result = CliRunner().invoke(app, ["settle", str(copy)])
    assert result.exit_code == 2, result.stderr
    assert fragment in result.stderr
    assert not (copy / "settlement").exists()


def test_sub_wh_fills_are_carried_through_settle_never_settled_for_more(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        CliRunner().invoke(app, ["clear", str(_scenario(tmp_path)), "--out", str(out)]).exit_code
        == 0
    )
    # Trades holding fractions of a Wh (grid rows make fills fractional): one below 1 Wh
    # and one 0.4 Wh above a whole Wh. Settlement counts whole Wh, rounded down.
    rows = [row for row in csv.reader((out / "trades.csv").open())]
    header, first = rows[0], rows[1]
    q = header.index("quantity_kwh")
    fractional = list(first)
    fractional[q] = repr(float(first[q]) - 1 + 0.0004 + 1)
    buy = header.index("buy_order_id")
    tiny = next(r for r in rows if r[buy] == "b4")
    tiny[q] = "0.0004"
    rows = [header, fractional, *rows[2:]]
    with (out / "trades.csv").open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    record = deploy.settle(out)
    unsettled = {(u.buy_order_id, u.sell_order_id): u for u in record.unsettled}
    assert unsettled["b4", "s2"].settled_wh == 0
    wh = math.floor(float(fractional[q]) * 1000 + 1e-6)
    key = (fractional[header.index("buy_order_id")], fractional[header.index("sell_order_id")])
    assert unsettled[key].settled_wh == wh
    assert abs(unsettled[key].unsettled_kwh - 0.0004) < 1e-9
    on_chain = {(t.buy_order_id, t.sell_order_id): t.quantity_wh for t in record.trades}
    assert on_chain[key] == wh and ("b4", "s2") not in on_chain


def test_ethereum_tools_agree_on_the_order_digest(settled: tuple[Path, Path, str]) -> None:
    # Our EIP-712 encoding equals eth-account's general encoder and the contract's own.
    from eth_account.messages import encode_typed_data
    from web3 import Web3

    from gridmatch.settlement.abi_calls import ContractAbi, call_view
    from gridmatch.settlement.artifacts import load

    out, _, _ = settled
    record = read_record(record_path(out))
    order = record.orders[0]
    typed = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Order": [
                    {"name": n, "type": t}
                    for n, t in [
                        ("participant", "address"),
                        ("isBuy", "bool"),
                        ("slotStart", "uint64"),
                        ("slotEnd", "uint64"),
                        ("quantityWh", "uint64"),
                        ("limitMicroEurPerKwh", "uint64"),
                        ("maxFeeMicroEurPerKwh", "uint64"),
                        ("expiry", "uint64"),
                        ("nonce", "uint64"),
                    ]
                ],
            },
            "primaryType": "Order",
            "domain": {
                "name": "gridmatch Settlement",
                "version": "2",
                "chainId": record.chain_id,
                "verifyingContract": record.settlement,
            },
            "message": dict(
                zip(
                    [
                        "participant",
                        "isBuy",
                        "slotStart",
                        "slotEnd",
                        "quantityWh",
                        "limitMicroEurPerKwh",
                        "maxFeeMicroEurPerKwh",
                        "expiry",
                        "nonce",
                    ],
                    order.as_input(),
                    strict=True,
                )
            ),
        }
    )
    digest = Web3.keccak(b"\x19" + typed.version + typed.header + typed.body)
    assert "0x" + bytes(digest).hex() == order.digest
    from gridmatch.settlement.anvil import local_chain

    with local_chain(out / "settlement" / "chain-state.json") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        settlement = ContractAbi(record.settlement, tuple(load("Settlement").abi))
        (on_chain,) = call_view(w3, settlement, "orderHash", order.as_input())
    assert "0x" + bytes(on_chain).hex() == order.digest


def test_the_demo_flow_settles_every_trade_delivered_less_the_grid_losses(
    tmp_path: Path,
) -> None:
    # What scripts/demo.sh does, on a secured clearing (its AC power flow gives losses):
    # three validator processes, honest simulated meters; every trade settles, for the
    # Wh the buyer's meter received. Sellers next to the substation, buyers at the ends
    # of the feeders: the trades' power crosses the whole feeder and adds losses.
    orders = [
        "b1,ann,buy,20,0,40,0.30,false",
        "b2,ben,buy,21,0,30,0.28,true",
        "s1,cat,sell,1,0,80,0.10,true",
    ]
    out = tmp_path / "out"
    runner = CliRunner()
    scenario = _scenario(tmp_path, secure=True, orders=orders)
    result = runner.invoke(app, ["clear", str(scenario), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert runner.invoke(app, ["settle", str(out), "--validators", "3"]).exit_code == 0
    meters, signed = tmp_path / "meters.csv", tmp_path / "readings.json"
    result = runner.invoke(app, ["meters", "simulate", str(out), "-o", str(meters)])
    assert result.exit_code == 0, result.stderr
    assert (
        runner.invoke(app, ["meters", "sign", str(out), str(meters), "-o", str(signed)]).exit_code
        == 0
    )
    result = runner.invoke(app, ["attest", str(out), str(signed)])
    assert result.exit_code == 0, result.stderr
    assert "refused" not in result.stderr and "short" not in result.stderr
    record = read_record(record_path(out))
    assert len(record.validators) == 3 and record.trades
    summary = json.loads((out / "summary.json").read_text())
    losses = {str(s["slot"]): s for s in summary["slots"]}
    imported: dict[tuple[str, int], int] = {}
    for row in csv.DictReader(meters.open()):
        imported[row["meter_id"], int(row["slot"])] = math.floor(
            float(row["imported_kwh"]) * 1000 + 1e-6
        )
    bought: dict[tuple[str, int], int] = {}
    for trade in record.trades:
        key = (trade.buyer_id, trade.slot)
        bought[key] = bought.get(key, 0) + trade.quantity_wh
    assert any(imported[k] < wh for k, wh in bought.items()), "the case needs grid losses"
    expected: dict[str, int] = {}
    for trade in record.trades:
        key = (trade.buyer_id, trade.slot)
        got = trade.quantity_wh * imported[key] // bought[key]
        expected[trade.buyer_id] = expected.get(trade.buyer_id, 0) + min(trade.quantity_wh, got)
    held = {p: sum(v[2].values()) for p, v in attestation.balances(out).items()}
    assert {p: wh for p, wh in held.items() if wh} == expected
    assert all(locked == 0 for _, locked, _ in attestation.balances(out).values())
    assert losses  # the summary carries per-slot losses the validators allowed for


def test_clearing_again_never_discards_a_deployment(settled: tuple[Path, Path, str]) -> None:
    out, _, _ = settled
    before = sorted(p.name for p in (out / "settlement").iterdir())
    scenario_root = out.parent / "again"
    scenario_root.mkdir(exist_ok=True)
    result = CliRunner().invoke(app, ["clear", str(_scenario(scenario_root)), "--out", str(out)])
    assert result.exit_code == 2, result.stderr
    assert "holds a settlement deployment" in result.stderr
    assert sorted(p.name for p in (out / "settlement").iterdir()) == before


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d["slots"][0].__setitem__("trade_losses_kwh", -1.0), "slots.0.trade_losses_kwh"),
        (lambda d: d.__setitem__("slot_minutes", 0), "field 'slot_minutes'"),
        (lambda d: d.__setitem__("day_start_utc", "2026-12-01T00:00:00"), "has no UTC offset"),
        (lambda d: d.pop("max_fee_eur_per_kwh"), "no max_fee_eur_per_kwh"),
    ],
)
def test_a_summary_settlement_cannot_use_is_refused_before_any_chain(
    settled: tuple[Path, Path, str], tmp_path: Path, edit: object, fragment: str
) -> None:
    out, _, _ = settled
    copy = tmp_path / "out"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("settlement"))
    document = json.loads((copy / "summary.json").read_text())
    edit(document)  # type: ignore[operator]
    (copy / "summary.json").write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["settle", str(copy)])
    assert result.exit_code == 2, result.stderr
    assert fragment in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert not (copy / "settlement").exists()


def test_malformed_or_foreign_readings_are_refused_naming_the_file(
    settled: tuple[Path, Path, str], tmp_path: Path
) -> None:
    out, signed, _ = settled
    document = json.loads(signed.read_text())
    bad = tmp_path / "bad.json"
    document["readings"][0]["exported_wh"] = 2**70
    bad.write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["attest", str(out), str(bad)])
    assert result.exit_code == 2, result.stderr
    assert "bad.json" in result.stderr and "readings.0.exported_wh" in result.stderr
    document = json.loads(signed.read_text())
    document["settlement"] = "0x000000000000000000000000000000000000dEaD"
    bad.write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["attest", str(out), str(bad)])
    assert result.exit_code == 2 and "not this one" in " ".join(result.stderr.split())


def test_meter_files_never_go_over_a_result(settled: tuple[Path, Path, str]) -> None:
    out, _, _ = settled
    before = (out / "trades.csv").read_bytes()
    result = CliRunner().invoke(
        app, ["meters", "simulate", str(out), "-o", str(out / "trades.csv")]
    )
    assert result.exit_code == 2 and "inside a result folder" in result.stderr
    assert (out / "trades.csv").read_bytes() == before


def test_a_meter_of_no_participant_is_refused_at_signing(
    settled: tuple[Path, Path, str], tmp_path: Path
) -> None:
    out, _, _ = settled
    meters = _meter_csv(tmp_path / "meters.csv")
    meters.write_text(meters.read_text() + "mallory,0,5.0,0\n")
    result = CliRunner().invoke(
        app, ["meters", "sign", str(out), str(meters), "-o", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 2
    assert "row 8, field 'meter_id'" in result.stderr and "mallory" in result.stderr


# ---------------------------------------------------------------- one validator, attacked
# deliveries() on the settled deployment, the chain as it is (from the untampered record,
# which the balance test above checks against the chain), the record or readings edited.


def _honest(out: Path) -> tuple[DeploymentRecord, list[SignedReading], ChainView]:
    record = read_record(record_path(out))
    keystore = Keystore.open(out / "settlement" / "keys", create=False)
    intervals = {t.slot: (t.slot_start, t.slot_end) for t in record.trades}
    readings = sign_readings(
        read_meter_csv(_meter_csv(out.parent / "honest-meters.csv")),
        keystore,
        record.domain,
        intervals,
    )
    chain = ChainView(
        chain_id=record.chain_id,
        grid_operator=keystore.role(GRID_OPERATOR).address,
        added={t.trade_id: AddedTrade(t.buyer, t.seller, t.quantity_wh) for t in record.trades},
        epoch=1,
        timestamp=max(t.slot_end for t in record.trades),
    )
    return record, readings, chain


def _trade(record: DeploymentRecord, buy: str) -> TradeRecord:
    return next(t for t in record.trades if t.buy_order_id == buy)


def test_a_validator_votes_only_from_the_chain_and_the_signed_orders(
    settled: tuple[Path, Path, str],
) -> None:
    record, readings, chain = _honest(settled[0])
    honest = deliveries(record, readings, chain)
    b1, b2 = _trade(record, "b1"), _trade(record, "b2")
    assert honest.wh[b1.trade_id] > 0 and honest.wh[b2.trade_id] > 0
    # Swap two trades' ids in the record: neither is the chain's any more.
    swapped = [
        t.model_copy(update={"trade_id": b2.trade_id})
        if t is b1
        else t.model_copy(update={"trade_id": b1.trade_id})
        if t is b2
        else t
        for t in record.trades
    ]
    found = deliveries(record.model_copy(update={"trades": swapped}), readings, chain)
    assert b1.trade_id not in found.wh and b2.trade_id not in found.wh
    assert any("not a trade the contract accepted" in r for r in found.refused)
    # More Wh in the record than on chain: refused.
    more = [
        t.model_copy(update={"quantity_wh": t.quantity_wh + 500}) if t is b1 else t
        for t in record.trades
    ]
    found = deliveries(record.model_copy(update={"trades": more}), readings, chain)
    assert b1.trade_id not in found.wh
    # Relabelled ids change nothing: energy is keyed by signed addresses.
    relabelled = [t.model_copy(update={"seller_id": "bob"}) for t in record.trades]
    found = deliveries(record.model_copy(update={"trades": relabelled}), readings, chain)
    assert found.wh == honest.wh


def test_a_validator_votes_only_on_slots_the_chains_clock_has_seen_end(
    settled: tuple[Path, Path, str],
) -> None:
    # The chain's clock one second before slot 1 ends: slot 1's readings are not final
    # and its trades get no vote; slot 0's votes are as they were.
    record, readings, chain = _honest(settled[0])
    honest = deliveries(record, readings, chain)
    slot1_end = max(t.slot_end for t in record.trades if t.slot == 1)
    early = deliveries(record, readings, dataclasses.replace(chain, timestamp=slot1_end - 1))
    slot0 = {t.trade_id for t in record.trades if t.slot == 0}
    assert {i: w for i, w in honest.wh.items() if i in slot0} == early.wh
    assert any("not delivered yet, no vote" in r for r in early.refused)
    assert any("after the chain's clock" in r and "not final" in r for r in early.refused)
    # Before any slot ended: no vote at all.
    first_end = min(t.slot_end for t in record.trades)
    none = deliveries(record, readings, dataclasses.replace(chain, timestamp=first_end - 1))
    assert none.wh == {}


def test_a_trade_left_out_of_the_record_stops_votes_on_its_sellers_energy(
    settled: tuple[Path, Path, str],
) -> None:
    # Showing the validators carol's trades one at a time would pay her export twice.
    record, readings, chain = _honest(settled[0])
    b1 = _trade(record, "b1")
    only_b1 = record.model_copy(update={"trades": [b1]})
    found = deliveries(only_b1, readings, chain)
    assert b1.trade_id not in found.wh
    assert any("on chain but not in the record" in r for r in found.refused)


def test_only_the_grid_operators_meter_certificates_count(
    settled: tuple[Path, Path, str],
) -> None:
    out = settled[0]
    record, readings, chain = _honest(out)
    keystore = Keystore.open(out / "settlement" / "keys", create=False)
    # Carol certifies a key of her own choosing as her meter and signs a big export.
    fake_meter = keystore.meter("carol-fake")
    carol = next(b for b in record.meters if b.participant_id == "carol")
    message = MeterBinding(carol.participant, fake_meter.address)
    self_signed = carol.model_copy(
        update={
            "meter": fake_meter.address,
            "signature": "0x"
            + sign(
                keystore.participant("carol"), record.domain.digest(message.struct_hash())
            ).hex(),
        }
    )
    meters = [self_signed if b is carol else b for b in record.meters]
    found = deliveries(record.model_copy(update={"meters": meters}), readings, chain)
    assert any("not certified by the grid operator" in r for r in found.refused)
    assert not any(t.seller_id == "carol" and t.trade_id in found.wh for t in record.trades)
    # Bob's meter certified for carol too (a grid operator's slip): a meter for two
    # participants counts for none.
    bob = next(b for b in record.meters if b.participant_id == "bob")
    message = MeterBinding(carol.participant, bob.meter)
    digest = record.domain.digest(message.struct_hash())
    slip = carol.model_copy(
        update={
            "meter": bob.meter,
            "signature": "0x" + sign(keystore.role(GRID_OPERATOR), digest).hex(),
        }
    )
    twice = [*record.meters, slip]
    found = deliveries(record.model_copy(update={"meters": twice}), readings, chain)
    assert any("none of them counts" in r for r in found.refused)


def test_a_buyer_hiding_its_meter_is_paid_for_on_the_sellers(
    settled: tuple[Path, Path, str],
) -> None:
    record, readings, chain = _honest(settled[0])
    without_bob = [r for r in readings if r.meter_id != "bob"]
    found = deliveries(record, without_bob, chain)
    b2 = _trade(record, "b2")
    honest = deliveries(record, readings, chain)
    assert found.wh[b2.trade_id] >= honest.wh[b2.trade_id]
    assert any("paid on the seller's meter" in n for n in found.short)


def test_a_validators_bad_signature_is_dropped_before_it_can_void_a_quorum(
    settled: tuple[Path, Path, str],
) -> None:
    from gridmatch.settlement.attestation import _checked_votes
    from gridmatch.settlement.eip712 import Attestation
    from gridmatch.settlement.validator import SignedVoteRecord, ValidatorReport

    out = settled[0]
    record = read_record(record_path(out))
    keystore = Keystore.open(out / "settlement" / "keys", create=False)
    trade = record.trades[0]
    message = Attestation(bytes.fromhex(trade.trade_id[2:]), trade.quantity_wh, 1)
    digest = record.domain.digest(message.struct_hash())

    def report(name: str, signer: str) -> ValidatorReport:
        signature = sign(keystore.role(signer), digest)
        vote = SignedVoteRecord(
            trade_id=trade.trade_id,
            delivered_wh=trade.quantity_wh,
            signature="0x" + signature.hex(),
        )
        return ValidatorReport(
            name=name,
            address=record.validators[name],
            epoch=1,
            votes=(vote, vote),
            refused=(),
            short=(),
            seconds=0.0,
        )

    # validator-2 reports a vote signed by validator-1's key; validator-1 votes twice.
    votes, dropped = _checked_votes(
        record, [report("validator-1", "validator-1"), report("validator-2", "validator-1")]
    )
    assert [v[0] for v in votes[trade.trade_id]] == [record.validators["validator-1"]]
    assert any("validator-2's vote" in d and "not its signature" in d for d in dropped)
    assert any("voted twice" in d for d in dropped)


# ---------------------------------------------------------------- the validator process


def test_a_validator_process_loads_no_heavy_library() -> None:
    # Every attest starts four validator processes. Importing pandapower and pandas
    # (through the result folder's readers), web3.py and eth-account cost ~3 s of CPU in
    # each: ~7 s of a 10-trade attest on two cores. What run_validator imports:
    code = (
        "import sys\n"
        "import gridmatch.settlement.validator, gridmatch.settlement.keys\n"
        "heavy = ('pandapower', 'pandas', 'matplotlib', 'scipy', 'web3', 'eth_account', 'py_ecc')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []


def test_a_validators_key_is_decrypted_as_eth_account_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eth_account import Account

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    keystore = Keystore.open(tmp_path / "keys", create=True)
    account = keystore.role(validator_name(1), create=True)
    again = Keystore.open(tmp_path / "keys", create=False)
    assert again.signing_key(validator_name(1)).key == bytes(account.key)
    assert again.signing_key(validator_name(1)).address == account.address
    secret = secrets.token_bytes(32)
    for kdf in ("scrypt", "pbkdf2"):
        document = Account.encrypt(secret, "pässwort", kdf=kdf, iterations=1024)
        assert decrypt_v3(document, "pässwort") == secret
        assert decrypt_v3({"Crypto": document["crypto"], "version": 3}, "pässwort") == secret
        with pytest.raises(ValueError, match="MAC mismatch"):
            decrypt_v3(document, "passwort")
        tampered = json.loads(json.dumps(document))
        text = tampered["crypto"]["ciphertext"]
        tampered["crypto"]["ciphertext"] = ("1" if text[0] == "0" else "0") + text[1:]
        with pytest.raises(ValueError, match="MAC mismatch"):
            decrypt_v3(tampered, "pässwort")
    (tmp_path / "keys" / "password").write_text("wrong\n")
    with pytest.raises(InputError, match="wrong password"):
        Keystore.open(tmp_path / "keys", create=False).signing_key(validator_name(1))


def test_an_order_cancelled_just_before_the_commit_drops_its_trade_not_the_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Erin cancels her signed order on chain right before the operator's chunk lands
    # (front-running it): her trade is withdrawn, every other trade is committed.
    out = tmp_path / "out"
    _clear(_scenario(tmp_path), out)
    commit = deploy._commit

    def cancel_first(sender, settlement, chain_round, orders, deadline, out_dir):  # type: ignore[no-untyped-def]
        keystore = Keystore.open(out_dir / "settlement" / "keys", create=False)
        erin = Account.from_key(keystore.participant("erin").key)
        fund_gas(sender.w3, erin.address, 10**18, local=True)
        mine = next(o for o in orders.values() if o.participant_id == "erin")
        Sender(sender.w3, erin).transact(settlement, "cancelOrder", mine.nonce)
        return commit(sender, settlement, chain_round, orders, deadline, out_dir)

    monkeypatch.setattr(deploy, "_commit", cancel_first)
    deploy.settle(out)
    record = read_record(record_path(out))
    (dropped,) = record.dropped
    assert (dropped.reason, dropped.participant_id) == ("order_cancelled", "erin")
    assert {t.buyer_id for t in record.trades} == {
        t["buyer_id"] for t in _trades(out) if t["buyer_id"] != "erin"
    }
