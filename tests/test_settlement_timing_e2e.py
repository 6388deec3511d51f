"""Payment follows delivery, in time: a day-ahead round on a real anvil, nothing mocked.

The contract counts no vote on a trade before its slot has ended (block time), and
refuses a trade whose slot ends less than its voting window (``MIN_VOTING_WINDOW_S``)
before the round's deadline. ``settle`` measures the deadline from the round's last
slot end and refuses, before any transaction, a trade the window does not fit (naming
its trades.csv row); ``attest`` says clearly when it is too early. The tests keep one
anvil running (``--rpc-url``) so that moving its clock (``evm_increaseTime``, as
``reclaim --advance-clock-hours`` does) lasts across commands; a real chain's users
would wait.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner
from web3 import Web3

from gridmatch.cli import app
from gridmatch.errors import InputError
from gridmatch.results_io.layout import SETTLEMENT_DIR
from gridmatch.settlement import attestation
from gridmatch.settlement.abi_calls import call_view
from gridmatch.settlement.anvil import local_chain
from gridmatch.settlement.chain import contract_at
from gridmatch.settlement.record import read_record, record_path
from gridmatch.settlement.round_data import (
    MAX_ROUND_DURATION_S,
    MIN_VOTING_WINDOW_S,
    read_round,
    round_deadline,
)

HEADER = "order_id,participant_id,side,bus,slot,quantity_kwh,limit_price_eur_per_kwh,divisible"
ORDERS = [
    "b1,alice,buy,5,0,1.5,0.30,false",
    "s1,carol,sell,17,0,3.0,0.10,true",
    "b3,alice,buy,5,1,1.0,0.30,false",
    "s2,dave,sell,17,1,2.0,0.12,true",
]
HOUR = 3600


def _scenario(root: Path, day_start: datetime) -> Path:
    scenario = root / "scenario"
    scenario.mkdir()
    (scenario / "scenario.yaml").write_text(
        "name: day-ahead\nnetwork:\n  pandapower: case33bw\nsecurity:\n  enabled: false\n"
        f"day_start: {day_start.strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
        "market:\n  pricing: midpoint\n  grid_fee_eur_per_kwh: 0.01\n"
    )
    (scenario / "orders.csv").write_text("\n".join([HEADER, *ORDERS]) + "\n")
    return scenario


def _cleared(root: Path, day_start: datetime) -> Path:
    out = root / "out"
    result = CliRunner().invoke(app, ["clear", str(_scenario(root, day_start)), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def day_ahead(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clearing of tomorrow's first two hours (slots of 60 minutes), not yet settled."""
    root = tmp_path_factory.mktemp("day-ahead")
    tomorrow = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    return _cleared(root, tomorrow)


def _copy(out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns(SETTLEMENT_DIR))
    return copy


def _advance_to(url: str, when: int) -> None:
    w3 = Web3(Web3.HTTPProvider(url))
    now = int(w3.eth.get_block("latest")["timestamp"])
    assert when > now
    w3.provider.make_request("evm_increaseTime", [when - now])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def test_a_day_ahead_round_is_paid_only_after_delivery(day_ahead: Path, tmp_path: Path) -> None:
    out = _copy(day_ahead, tmp_path)
    runner = CliRunner()
    with local_chain(tmp_path / "node-state.json") as url:
        result = runner.invoke(app, ["settle", str(out), "--rpc-url", url, "--validators", "3"])
        assert result.exit_code == 0, result.stderr
        record = read_record(record_path(out))
        ends = {t.slot: t.slot_end for t in record.trades}
        assert set(ends) == {0, 1}
        # The voting window (24 h by default) runs from the last slot's end.
        assert record.deadline == ends[1] + 24 * HOUR
        settlement = contract_at("Settlement", record.settlement)
        w3 = Web3(Web3.HTTPProvider(url))
        assert call_view(w3, settlement, "MIN_VOTING_WINDOW_S") == (MIN_VOTING_WINDOW_S,)
        assert call_view(w3, settlement, "MAX_ROUND_DURATION_S") == (MAX_ROUND_DURATION_S,)
        meters, signed = tmp_path / "meters.csv", tmp_path / "readings.json"
        result = runner.invoke(app, ["meters", "simulate", str(out), "-o", str(meters)])
        assert result.exit_code == 0, result.stderr
        result = runner.invoke(app, ["meters", "sign", str(out), str(meters), "-o", str(signed)])
        assert result.exit_code == 0, result.stderr

        # Before delivery: a chain error that says why, no validator started, no revert.
        early = runner.invoke(app, ["attest", str(out), str(signed), "--rpc-url", url])
        assert early.exit_code == 4, early.stderr
        assert "too early to attest" in early.stderr and "slot, 0, ends at" in early.stderr
        assert "revert" not in early.stderr.lower() and "Traceback" not in early.stderr
        assert not (out / SETTLEMENT_DIR / "validator-1" / "report.json").exists()
        assert all(locked > 0 for _, locked, _ in _buyers(out, url))

        # Slot 0 delivered, slot 1 still running: only slot 0's trades are paid.
        _advance_to(url, ends[0] + 60)
        result = runner.invoke(app, ["attest", str(out), str(signed), "--rpc-url", url])
        assert result.exit_code == 0, result.stderr
        assert "its delivery slot has not ended" in result.stderr
        assert "not final" in result.stderr
        held = attestation.balances(out, rpc_url=url)
        tokens = {p: h[2] for p, h in held.items()}
        slot_start = {t.slot: t.slot_start for t in record.trades}
        assert tokens["alice"].get(slot_start[0], 0) > 0
        assert tokens["alice"].get(slot_start[1], 0) == 0
        assert held["alice"][1] > 0  # slot 1's lock still held

        # After slot 1's end, inside the window: everything is paid, nothing stays locked.
        _advance_to(url, ends[1] + 60)
        result = runner.invoke(app, ["attest", str(out), str(signed), "--rpc-url", url])
        assert result.exit_code == 0, result.stderr
        held = attestation.balances(out, rpc_url=url)
        assert held["alice"][2].get(slot_start[1], 0) > 0
        assert all(locked == 0 for _, locked, _ in held.values())


def test_a_demo_of_a_day_ahead_round_moves_the_local_anvils_clock(
    day_ahead: Path, tmp_path: Path
) -> None:
    # The embedded anvil (no --rpc-url) restarts for every command, so a clock moved by
    # one command is gone in the next: attest moves it in its own session.
    out = _copy(day_ahead, tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["settle", str(out), "--validators", "3"])
    assert result.exit_code == 0, result.stderr
    meters, signed = tmp_path / "meters.csv", tmp_path / "readings.json"
    assert runner.invoke(app, ["meters", "simulate", str(out), "-o", str(meters)]).exit_code == 0
    result = runner.invoke(app, ["meters", "sign", str(out), str(meters), "-o", str(signed)])
    assert result.exit_code == 0, result.stderr
    early = runner.invoke(app, ["attest", str(out), str(signed)])
    assert early.exit_code == 4 and "--advance-clock-hours" in early.stderr, early.stderr
    record = read_record(record_path(out))
    hours = (max(t.slot_end for t in record.trades) - datetime.now(UTC).timestamp()) / HOUR + 1
    result = runner.invoke(
        app, ["attest", str(out), str(signed), "--advance-clock-hours", f"{hours:.2f}"]
    )
    assert result.exit_code == 0, result.stderr
    assert "not settled now" not in result.stderr
    assert "alice" in result.stderr and "carol" in result.stderr


def _buyers(out: Path, url: str) -> list[tuple[int, int, dict[int, int]]]:
    held = attestation.balances(out, rpc_url=url)
    return [held[p] for p in ("alice",)]


def test_settle_refuses_a_voting_window_the_last_slot_does_not_fit(
    day_ahead: Path, tmp_path: Path
) -> None:
    # Half an hour after tomorrow's last slot: validators could not vote in time, and the
    # buyer could reclaim after delivery. Refused naming the row, before any transaction.
    out = _copy(day_ahead, tmp_path)
    result = CliRunner().invoke(app, ["settle", str(out), "--deadline-hours", "0.5"])
    assert result.exit_code == 2, result.stderr
    assert "trades.csv, row " in result.stderr and "(b3 <- s2)" in result.stderr
    assert "less than 60 minutes before the round's deadline" in result.stderr
    assert "--deadline-hours" in result.stderr
    assert not record_path(out).exists()


def test_settle_refuses_a_round_delivered_too_far_ahead(tmp_path: Path) -> None:
    # Delivered in 30 days: its deadline would lie beyond the contract's 30-day limit.
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=30)
    out = _cleared(tmp_path, start)
    result = CliRunner().invoke(app, ["settle", str(out)])
    assert result.exit_code == 2, result.stderr
    assert "more than 30 days after the chain's clock" in result.stderr
    assert "(b3 <- s2)" in result.stderr
    assert not record_path(out).exists()


def test_the_deadline_runs_from_the_last_slot_end_or_now(day_ahead: Path) -> None:
    chain_round = read_round(day_ahead)
    last_end = max(t.buy.slot_end for t in chain_round.trades)
    first_end = min(t.buy.slot_end for t in chain_round.trades)
    # Delivered already: the window runs from now.
    now = last_end + 10 * HOUR
    assert round_deadline(day_ahead, chain_round, now, 2 * HOUR) == now + 2 * HOUR
    # Delivered later: from the last slot's end; exactly the minimum window fits.
    now = first_end - 5 * HOUR
    assert round_deadline(day_ahead, chain_round, now, MIN_VOTING_WINDOW_S) == (
        last_end + MIN_VOTING_WINDOW_S
    )
    with pytest.raises(InputError) as refused:
        round_deadline(day_ahead, chain_round, now, MIN_VOTING_WINDOW_S - 1)
    assert refused.value.row is not None and "b3 <- s2" in str(refused.value)
    # A short window that still gives slot 0 an hour (slot 1 ends an hour later), not slot 1.
    with pytest.raises(InputError, match="slot 1"):
        round_deadline(day_ahead, chain_round, now, HOUR // 2)
