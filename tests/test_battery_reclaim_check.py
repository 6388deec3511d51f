"""A reclaim is checked against the folder's evaluation before it is sent (a reviewer's find).

It used to be sent first and compared after: a folder that no longer evaluated to what
was released (telemetry edited since the --chain run) failed the comparison after the
irreversible reclaim, and chain.json said "not reclaimed" while the chain had reclaimed.
Now the mismatch is refused before sending, and a reclaim that was sent is recorded.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner
from web3 import Web3

from gridmatch.cli import app
from gridmatch.results_io.battery_rewards import read_chain_record
from gridmatch.settlement.abi_calls import call_view
from gridmatch.settlement.anvil import local_chain
from gridmatch.settlement.chain import contract_at

EXAMPLE = Path(__file__).resolve().parents[1] / "scenarios" / "battery-rewards-example"
PAST_EXPIRY_HOURS = (datetime(2036, 1, 2, tzinfo=UTC) - datetime.now(UTC)).total_seconds() / 3600


def _invoke(*args: str):
    return CliRunner().invoke(app, ["battery-rewards", *args])


def test_a_reclaim_that_fails_its_check_leaves_the_chain_as_the_record_says(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "in"
    shutil.copytree(EXAMPLE, folder)
    out = tmp_path / "out"
    first = _invoke(str(folder), "-o", str(out), "--chain")
    assert first.exit_code == 0, first.output
    # The telemetry changes afterwards: the last day's rows go (its period now has no
    # summary, so the folder evaluates to less released than the chain did).
    path = folder / "telemetry.csv"
    lines = path.read_text().splitlines()
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.split(",")[1] < "2026-01-03"]
    assert len(kept) < len(lines)
    path.write_text("\n".join(kept) + "\n")
    late = _invoke(
        str(folder), "-o", str(out), "--reclaim", "--advance-clock-hours", f"{PAST_EXPIRY_HOURS}"
    )
    record = read_chain_record(out)
    assert record is not None
    with local_chain(out / "settlement" / "chain-state.json") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        rewards = contract_at("BatteryRewards", record.rewards_contract)
        _, _, _, reclaimed_on_chain = call_view(w3, rewards, "balancesOf", record.agreement_id)
    recorded = record.reclaim.reclaimed_micro_eur if record.reclaim is not None else 0
    assert late.exit_code != 0 or recorded == reclaimed_on_chain
    # Whatever the verdict, chain.json must say what the chain did.
    assert recorded == int(reclaimed_on_chain), (
        f"exit {late.exit_code}: chain reclaimed {reclaimed_on_chain} micro-EUR, "
        f"chain.json records {recorded}; output: {late.output[-300:]}"
    )
    # A folder that evaluates otherwise than the chain holds is refused before sending.
    assert late.exit_code == 4 and "not reclaimed" in late.output
    assert reclaimed_on_chain == 0
