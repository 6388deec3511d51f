"""Battery reward agreements: the coverage rule, the sponsor's reclaim, a reused settlement
registry, and the report, on a real anvil (nothing mocked).

Expected money comes from the Python evaluation and is checked against balances read
from the chain here, independently of what the command recorded.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from battery_chain import deployed_after_last_period
from typer.testing import CliRunner
from web3 import Web3

from gridmatch.battery_rewards.conditions import INSUFFICIENT_DATA, MET, split
from gridmatch.battery_rewards.run import evaluate_folder
from gridmatch.battery_rewards.summary import coverage
from gridmatch.cli import app
from gridmatch.errors import ChainError, InputError
from gridmatch.results_io.battery_rewards import (
    is_battery_rewards_result,
    read_battery_summary,
    read_chain_record,
    read_periods,
    write_chain_record,
)
from gridmatch.results_io.der_validation import is_der_result
from gridmatch.scenario_io.battery_input import TelemetrySample, read_agreement
from gridmatch.settlement import battery_rewards as chain
from gridmatch.settlement.abi_calls import call_view
from gridmatch.settlement.anvil import local_chain
from gridmatch.settlement.chain import contract_at
from gridmatch.settlement.record import read_record, record_path

EXAMPLE = Path(__file__).resolve().parents[1] / "scenarios" / "battery-rewards-example"
CHROMIUM = Path("/usr/bin/chromium")
SECONDS_PER_HOUR = 3600
# Hours from now past the example's expiry (2036-01-01): room for a slow machine.
PAST_EXPIRY_HOURS = (
    datetime(2036, 1, 2, tzinfo=UTC) - datetime.now(UTC)
).total_seconds() / SECONDS_PER_HOUR


def _copy(tmp_path: Path, name: str = "in") -> Path:
    folder = tmp_path / name
    shutil.copytree(EXAMPLE, folder)
    return folder


def _with_gap(folder: Path, start: str, end: str) -> None:
    """Drop the telemetry rows with ``start <= timestamp < end`` (ISO strings compare)."""
    path = folder / "telemetry.csv"
    lines = path.read_text().splitlines()
    kept = [lines[0]] + [ln for ln in lines[1:] if not start <= ln.split(",")[1] < end]
    assert len(kept) < len(lines)
    path.write_text("\n".join(kept) + "\n")


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["battery-rewards", *args])


# ------------------------------------------------------------------ the coverage rule


def test_coverage_counts_samples_and_gaps_with_the_edges() -> None:
    samples = [TelemetrySample(2 + i, 600.0 * i, 50.0, 0.0, 20.0, None) for i in range(6)]
    # 6 samples of the 12 expected every 300 s in an hour; the last at 3000 s: gap 600 s.
    assert coverage(samples, 0, 3600, 300) == (5000, 600)
    # A first sample late by 1,800.5 s: the gap from the period's start, rounded up.
    late = [replace(s, time_s=s.time_s + 1800.5) for s in samples[:3]]
    assert coverage(late, 0, 3600, 300) == (2500, 1801)
    # More samples than expected never make more than 100 %.
    assert coverage(samples, 0, 600, 300)[0] == 10_000


def test_agreement_coverage_defaults_and_refusals(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    path = folder / "agreement.yaml"
    text = path.read_text()
    line = "telemetry: {interval_seconds: 300, min_coverage_percent: 90, max_gap_seconds: 3600}"
    assert line in text
    # Without the block: the documented defaults.
    path.write_text(text.replace(line, "", 1))
    agreement = read_agreement(path)
    assert (
        agreement.telemetry.interval_seconds,
        agreement.telemetry.min_coverage_percent,
        agreement.telemetry.max_gap_seconds,
    ) == (300, 90.0, 3600)
    for block, field in (
        ("telemetry: {min_coverage_percent: 101}", "telemetry.min_coverage_percent"),
        ("telemetry: {max_gap_seconds: 0}", "telemetry.max_gap_seconds"),
        ("telemetry: {interval_seconds: 60, colour: red}", "telemetry.colour"),
        ("telemetry: {interval_seconds: 1.5}", "telemetry.interval_seconds"),
    ):
        path.write_text(text.replace(line, block, 1))
        with pytest.raises(InputError) as info:
            read_agreement(path)
        assert (info.value.path, info.value.field) == (path, field)
    shorter = text.replace("seconds: 86400, count: 3", "seconds: 3600, count: 3", 1)
    assert shorter != text
    path.write_text(shorter.replace(line, "telemetry: {interval_seconds: 7200}", 1))
    with pytest.raises(InputError, match="longer than a period"):
        read_agreement(path)


def test_gap_withholds_the_period_and_the_chain_agrees(tmp_path: Path) -> None:
    """A 2-hour hole in day 1: its conditions are insufficient_data, nothing released,
    the period not submitted; the chain pays the other two days to the micro-EUR."""
    folder = _copy(tmp_path)
    _with_gap(folder, "2026-01-02T10:00", "2026-01-02T12:00")
    evaluation = evaluate_folder(folder)
    period = evaluation.periods[1]
    assert period.summary is not None and period.summary.max_gap_seconds == 7500
    by = {(p, c): v for p, c, v, _ in evaluation.verdicts}
    assert all(by[1, c] == INSUFFICIENT_DATA for c in ("soc_window", "max_c_rate"))
    assert by[0, "soc_window"] == MET
    assert evaluation.released_micro_eur == (3_083_333, 0, 1_833_333)
    out = tmp_path / "out"
    result = _invoke(str(folder), "-o", str(out), "--chain")
    assert result.exit_code == 0, result.output
    record = read_chain_record(out)
    assert record is not None
    assert [r.submitted for r in record.releases] == [True, False, True]
    assert "longest gap 7500 s" in record.releases[1].note
    assert record.released_micro_eur == 3_083_333 + 1_833_333
    assert record.balances_micro_eur == evaluation.payouts_micro_eur
    rows = read_periods(out)
    assert [r.covered for r in rows] == [True, False, True]
    assert rows[1].released_micro_eur == 0
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    page = (out / "report.html").read_text()
    assert "7500 (too long)" in page and "not submitted: telemetry coverage" in page


def test_quorum_summary_below_coverage_releases_nothing_on_anvil(tmp_path: Path) -> None:
    """Attack: every validator signs a period whose telemetry covers too little (or has
    too long a gap), or a summary no telemetry can give: the contract refuses it, pays
    nothing and leaves the period open."""
    evaluation = evaluate_folder(EXAMPLE)
    with deployed_after_last_period(evaluation, tmp_path) as deployed:
        w3, sender, deployment, keys = (
            deployed.w3,
            deployed.sender,
            deployed.deployment,
            deployed.keys,
        )
        honest = evaluation.periods[0].summary
        assert honest is not None
        thin = "BatteryRewardsInsufficientCoverage"
        inconsistent = "BatteryRewardsInconsistentSummary"
        range_bps = honest.soc_max_bps - honest.soc_min_bps
        for refused, error in (
            (replace(honest, coverage_bps=8999), thin),  # one bps under the 90 % minimum
            (replace(honest, max_gap_seconds=3601), thin),  # one second over the longest gap
            (replace(honest, soc_min_bps=honest.soc_max_bps + 1), inconsistent),
            # A cycle deeper, or shallower (meeting MAX_DOD falsely), than the SoC range
            # the same summary reports.
            (replace(honest, max_dod_bps=range_bps + 2), inconsistent),
            (replace(honest, max_dod_bps=max(0, range_bps - 2)), inconsistent),
            (replace(honest, temp_min_deci_c=honest.temp_max_deci_c + 1), inconsistent),
        ):
            signed = chain.signatures(w3, deployment, keys, 0, refused)
            with pytest.raises(ChainError, match=error):
                chain.release_period(sender, deployment, 0, refused, signed)
        balances = [
            int(call_view(w3, deployment.payment, "balanceOf", a)[0])
            for a in deployment.participants.values()
        ]
        credited = list(chain.credits(w3, deployment).values())
        (mask,) = call_view(w3, deployment.rewards, "periodMask", deployment.agreement_id, 0)
        # The period stayed open: the honest summary still releases it, exactly.
        signed = chain.signatures(w3, deployment, keys, 0, honest)
        paid = chain.release_period(sender, deployment, 0, honest, signed)
    assert balances == [0, 0, 0] == credited and mask == 0
    assert paid == evaluation.released_micro_eur[0]


# ------------------------------------------------------------------ the sponsor's reclaim


def test_reclaim_after_expiry_on_anvil(tmp_path: Path) -> None:
    """Before expiry refused (exit 4), after it the sponsor gains exactly funded -
    released (read from the chain here: credited by the reclaim, then withdrawn), a
    second reclaim refused."""
    evaluation = evaluate_folder(EXAMPLE)
    out = tmp_path / "out"
    assert _invoke(str(EXAMPLE), "-o", str(out), "--chain").exit_code == 0
    early = _invoke(str(EXAMPLE), "-o", str(out), "--reclaim")
    assert early.exit_code == 4
    assert "BatteryRewardsNotExpired" in early.output
    record = read_chain_record(out)
    assert record is not None and record.reclaim is None
    late = _invoke(
        str(EXAMPLE), "-o", str(out), "--reclaim", "--advance-clock-hours", f"{PAST_EXPIRY_HOURS}"
    )
    assert late.exit_code == 0, late.output
    expected = evaluation.funded_micro_eur - evaluation.total_released_micro_eur
    assert expected == 9_249_999 - 7_499_999
    again = _invoke(str(EXAMPLE), "-o", str(out), "--reclaim")
    assert again.exit_code == 4
    assert "BatteryRewardsReclaimed" in again.output
    record = read_chain_record(out)
    assert record is not None and record.reclaim is not None
    assert record.reclaim.reclaimed_micro_eur == record.reclaim.sponsor_gain_micro_eur == expected
    # Independently, from the chain: the sponsor minted exactly the funding and spent it
    # on the agreement, so its balance now is what came back; nothing is left held.
    with local_chain(out / "settlement" / "chain-state.json") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        payment = contract_at("PaymentToken", record.payment)
        rewards = contract_at("BatteryRewards", record.rewards_contract)
        (sponsor_balance,) = call_view(w3, payment, "balanceOf", record.sponsor)
        funded, released, held, reclaimed = call_view(
            w3, rewards, "balancesOf", record.agreement_id
        )
        (contract_balance,) = call_view(w3, payment, "balanceOf", record.rewards_contract)
        (sponsor_owed,) = call_view(w3, rewards, "owedOf", record.sponsor)
        withdrawn = w3.eth.get_transaction_receipt(record.reclaim.withdraw_tx_hash)  # type: ignore[arg-type]
    assert sponsor_balance == expected == funded - released == reclaimed
    assert held == 0 == contract_balance
    # Pull: the reclaim credited the sponsor, its own withdraw paid the credit out.
    assert sponsor_owed == 0 and withdrawn["status"] == 1
    assert record.reclaim.withdraw_gas_used == withdrawn["gasUsed"]


def test_a_failed_withdraw_after_the_reclaim_is_recorded_and_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reclaim credits the sponsor; if the withdraw then fails (a node gone, a token
    refusing), chain.json records the final reclaim without a withdraw and the chain
    still owes the sponsor; the next --reclaim only withdraws."""
    evaluation = evaluate_folder(EXAMPLE)
    expected = evaluation.funded_micro_eur - evaluation.total_released_micro_eur
    out = tmp_path / "out"
    assert _invoke(str(EXAMPLE), "-o", str(out), "--chain").exit_code == 0
    send = chain._send

    def withdraw_refused(sender: Any, contract: Any, name: str, *args: object) -> Any:
        if name == "withdraw":
            raise ChainError("the node refused the transaction: withdraw (test)")
        return send(sender, contract, name, *args)

    monkeypatch.setattr(chain, "_send", withdraw_refused)
    failed = _invoke(
        str(EXAMPLE), "-o", str(out), "--reclaim", "--advance-clock-hours", f"{PAST_EXPIRY_HOURS}"
    )
    assert failed.exit_code == 4 and "withdraw (test)" in failed.output
    record = read_chain_record(out)
    assert record is not None and record.reclaim is not None
    assert record.reclaim.reclaimed_micro_eur == expected and record.reclaim.withdraw_tx_hash == ""
    with local_chain(out / "settlement" / "chain-state.json") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        rewards = contract_at("BatteryRewards", record.rewards_contract)
        (owed,) = call_view(w3, rewards, "owedOf", record.sponsor)
    assert owed == expected  # reclaimed on chain, the credit kept
    monkeypatch.setattr(chain, "_send", send)
    resumed = _invoke(str(EXAMPLE), "-o", str(out), "--reclaim")
    assert resumed.exit_code == 0, resumed.output
    record = read_chain_record(out)
    assert record is not None and record.reclaim is not None
    assert record.reclaim.withdraw_tx_hash and record.reclaim.sponsor_gain_micro_eur == expected
    with local_chain(out / "settlement" / "chain-state.json") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        payment = contract_at("PaymentToken", record.payment)
        (owed,) = call_view(w3, rewards, "owedOf", record.sponsor)
        (balance,) = call_view(w3, payment, "balanceOf", record.sponsor)
    assert owed == 0 and balance == expected
    # Nothing left to withdraw: a further --reclaim (past expiry) is the contract's refusal.
    again = _invoke(
        str(EXAMPLE), "-o", str(out), "--reclaim", "--advance-clock-hours", f"{PAST_EXPIRY_HOURS}"
    )
    assert again.exit_code == 4 and "BatteryRewardsReclaimed" in again.output


def test_reclaim_without_a_chain_run_is_a_usage_error(tmp_path: Path) -> None:
    result = _invoke(str(EXAMPLE), "-o", str(tmp_path / "out"), "--reclaim")
    assert result.exit_code == 2
    assert "chain.json" in result.output


# ------------------------------------------------------------------ a reused settlement


def _settled(root: Path, *settle_options: str) -> Path:
    scenario = root / "scenario"
    scenario.mkdir()
    (scenario / "scenario.yaml").write_text(
        "name: settle\nnetwork:\n  pandapower: case33bw\nsecurity:\n  enabled: false\n"
        "day_start: 2026-12-01T00:00:00Z\n"
        "market:\n  pricing: midpoint\n  grid_fee_eur_per_kwh: 0.01\n"
    )
    (scenario / "orders.csv").write_text(
        "order_id,participant_id,side,bus,slot,quantity_kwh,limit_price_eur_per_kwh,divisible\n"
        "b1,alice,buy,5,0,1.5,0.30,false\ns1,carol,sell,17,0,3.0,0.10,true\n"
    )
    out = root / "market"
    runner = CliRunner()
    assert runner.invoke(app, ["clear", str(scenario), "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["settle", str(out), *settle_options])
    assert result.exit_code == 0, result.output
    return out


def test_battery_rewards_reuse_the_settlements_registry(tmp_path: Path) -> None:
    """Settle a market, then release battery rewards against its validator registry and
    payment token: the settlement's four validators sign (quorum 3), no second registry."""
    market = _settled(tmp_path)
    deployment = read_record(record_path(market))
    evaluation = evaluate_folder(EXAMPLE)
    out = tmp_path / "battery"
    result = _invoke(str(EXAMPLE), "-o", str(out), "--settlement", str(market))
    assert result.exit_code == 0, result.output
    record = read_chain_record(out)
    assert record is not None
    assert (record.registry, record.payment) == (deployment.registry, deployment.payment)
    assert record.validators == deployment.validators
    assert record.sponsor == deployment.operator
    assert record.reused_settlement == str(market.resolve())
    assert record.balances_micro_eur == evaluation.payouts_micro_eur
    # The release happened on the settlement's own chain (its saved anvil state), where
    # the settlement is still intact beside the agreement.
    with local_chain(market / "settlement" / "chain-state.json") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        rewards = contract_at("BatteryRewards", record.rewards_contract)
        (registry,) = call_view(w3, rewards, "validators")
        (token,) = call_view(w3, rewards, "token")
        _, released, _, _ = call_view(w3, rewards, "balancesOf", record.agreement_id)
        assert w3.eth.get_code(Web3.to_checksum_address(deployment.settlement))
    assert (Web3.to_checksum_address(registry), Web3.to_checksum_address(token)) == (
        deployment.registry,
        deployment.payment,
    )
    assert released == evaluation.total_released_micro_eur
    assert split(evaluation.agreement, evaluation.released_micro_eur[0])["owner"] > 0
    # The sponsor (the settlement's operator) reclaims from the same chain.
    late = _invoke(
        str(EXAMPLE), "-o", str(out), "--reclaim", "--advance-clock-hours", f"{PAST_EXPIRY_HOURS}"
    )
    assert late.exit_code == 0, late.output


def test_reuse_a_settlement_on_a_node_of_its_own(tmp_path: Path) -> None:
    """Settled on a running node (``settle --rpc-url``, 3 validators): the battery run
    finds the node in the deployment record and its registry's quorum of 3 signs."""
    evaluation = evaluate_folder(EXAMPLE)
    with local_chain(tmp_path / "node.json") as url:
        market = _settled(tmp_path, "--rpc-url", url, "--validators", "3")
        deployment = read_record(record_path(market))
        out = tmp_path / "battery"
        result = _invoke(str(EXAMPLE), "-o", str(out), "--settlement", str(market))
        assert result.exit_code == 0, result.output
        record = read_chain_record(out)
        assert record is not None
        w3 = Web3(Web3.HTTPProvider(url))
        payment = contract_at("PaymentToken", deployment.payment)
        gained = {
            p: int(call_view(w3, payment, "balanceOf", a)[0])
            for p, a in record.participants.items()
        }
    assert record.rpc_url == url and len(record.validators) == 3
    assert record.registry == deployment.registry
    assert not (market / "settlement" / "chain-state.json").exists()
    assert gained == evaluation.payouts_micro_eur


def test_reuse_needs_a_settlement(tmp_path: Path) -> None:
    result = _invoke(str(EXAMPLE), "-o", str(tmp_path / "o"), "--settlement", str(tmp_path))
    assert result.exit_code == 2
    assert "gridmatch settle" in result.output
    assert not (tmp_path / "o" / "summary.json").exists()


# ------------------------------------------------------------------ the report


def test_report_of_a_chain_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _invoke(str(EXAMPLE), "-o", str(out), "--chain").exit_code == 0
    # Both folders hold a verdicts.csv: the detectors still tell them apart.
    assert is_battery_rewards_result(out) and not is_der_result(out)
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert "battery rewards report of 3 periods, with the on-chain release" in result.output
    page = (out / "report.html").read_text()
    record = read_chain_record(out)
    assert record is not None
    assert record.rewards_contract in page and record.create_tx_hash in page
    assert all(r.tx_hash is not None and r.tx_hash in page for r in record.releases)
    assert "NOT MET" in page and "equal to the last micro-EUR" in page
    assert "7.499999 EUR" in page  # released, Python and chain
    assert "http://" not in page and "https://" not in page  # self-contained


def _row_cells(page: str, first_cell: str) -> list[str]:
    """The cells of the report table row that starts with ``first_cell``."""
    found = re.search(rf"<tr><td[^>]*>{re.escape(first_cell)}</td>(.*?)</tr>", page)
    assert found is not None, f"no row {first_cell!r}"
    return [first_cell, *re.findall(r"<td[^>]*>(.*?)</td>", found.group(1))]


def test_report_reconciles_credits_and_claims(tmp_path: Path) -> None:
    """Per participant: released (Python) = credited = claimed + still owed, each read
    from the chain here too; a record whose claims fall short shows NO, an older record
    without credits shows "not recorded" (never "yes")."""
    evaluation = evaluate_folder(EXAMPLE)
    out = tmp_path / "out"
    assert _invoke(str(EXAMPLE), "-o", str(out), "--chain").exit_code == 0
    record = read_chain_record(out)
    assert record is not None and record.owed_micro_eur is not None
    with local_chain(out / "settlement" / "chain-state.json") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        rewards = contract_at("BatteryRewards", record.rewards_contract)
        owed_now = {
            p: int(call_view(w3, rewards, "owedOf", a)[0]) for p, a in record.participants.items()
        }
    claimed = {c.participant: c.claimed_micro_eur for c in record.claims}
    assert record.owed_micro_eur == owed_now == {p: 0 for p in record.participants}
    assert claimed == record.credited_micro_eur == evaluation.payouts_micro_eur
    assert sum(claimed.values()) == record.released_micro_eur == 7_499_999

    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    page = (out / "report.html").read_text()
    assert "credited EUR (chain)" in page and "still owed EUR (chain)" in page
    for participant, payout in evaluation.payouts_micro_eur.items():
        eur = f"{payout / 1e6:.6f}"
        cells = _row_cells(page, participant)
        # released, credited, claimed, still owed, gained, reconciled
        assert cells[2:8] == [eur, eur, eur, "0.000000", eur, "yes"], cells
    assert _row_cells(page, "total")[2:8] == ["7.499999"] * 3 + ["0.000000", "7.499999", "yes"]
    assert _row_cells(page, "released = credited = claimed + still owed")[1] == "yes"

    # One claim recorded short by a micro-EUR with nothing owed: not reconciled.
    short = [
        c.model_copy(update={"claimed_micro_eur": c.claimed_micro_eur - 1})
        if c.participant == "owner"
        else c
        for c in record.claims
    ]
    write_chain_record(out, record.model_copy(update={"claims": short}))
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    page = (out / "report.html").read_text()
    assert _row_cells(page, "owner")[7] == "NO"
    assert _row_cells(page, "aggregator")[7] == "yes"
    assert _row_cells(page, "total")[7] == "NO"
    assert _row_cells(page, "released = credited = claimed + still owed")[1] == "NO"

    # The same shortfall still owed on chain: reconciled again.
    owed = {**record.owed_micro_eur, "owner": 1}
    write_chain_record(out, record.model_copy(update={"claims": short, "owed_micro_eur": owed}))
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    page = (out / "report.html").read_text()
    owner = _row_cells(page, "owner")
    assert owner[4:6] == [f"{(evaluation.payouts_micro_eur['owner'] - 1) / 1e6:.6f}", "0.000001"]
    assert _row_cells(page, "owner")[7] == "yes"
    assert _row_cells(page, "total")[7] == "yes"

    # A record from before credits were kept: nothing to reconcile with.
    write_chain_record(
        out, record.model_copy(update={"credited_micro_eur": {}, "owed_micro_eur": None})
    )
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    page = (out / "report.html").read_text()
    assert _row_cells(page, "owner")[7] == "not recorded"
    assert _row_cells(page, "released = credited = claimed + still owed")[1] == "not recorded"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium (apt chromium)")
def test_chromium_decodes_the_report_offline(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _invoke(str(EXAMPLE), "-o", str(out)).exit_code == 0
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    run = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}",
            # No network: a page that needed an external URL would fail to load it.
            "--proxy-server=http://127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=5000",
            "--dump-dom",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    # The page's script counts the images the browser decoded.
    total = re.search(r'data-images-total="(\d+)"', run.stdout)
    ok = re.search(r'data-images-ok="(\d+)"', run.stdout)
    assert total is not None and ok is not None
    assert total.group(1) == ok.group(1) == "1"


def test_report_off_chain_and_a_stale_chain_record(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _invoke(str(EXAMPLE), "-o", str(out), "--chain").exit_code == 0
    # A later run off chain: its report does not show the earlier run's chain record.
    assert _invoke(str(EXAMPLE), "-o", str(out)).exit_code == 0
    assert read_battery_summary(out).on_chain is False
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert "On chain: BatteryRewards.sol" not in page
    assert "run with --chain" in page


def test_report_names_a_bad_cell(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _invoke(str(EXAMPLE), "-o", str(out)).exit_code == 0
    path = out / "periods.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(",true,", ",maybe,", 1)
    path.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 2
    assert "periods.csv" in result.output and "row 3" in result.output
    assert "summarised" in result.output


def test_coverage_shown_in_periods_file(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    _with_gap(folder, "2026-01-03T00:00", "2026-01-03T08:00")
    out = tmp_path / "out"
    assert _invoke(str(folder), "-o", str(out)).exit_code == 0
    rows = read_periods(out)
    assert rows[2].coverage_bps == (288 - 96) * 10_000 // 288 and not rows[2].covered
    summary = json.loads((out / "summary.json").read_text())
    assert summary["thresholds"]["min_coverage_bps"] == 9000
    assert next(iter(summary["amounts_micro_eur"])) == "soc_window"  # the contract's order
    assert (datetime.fromtimestamp(rows[2].start_s, UTC) + timedelta(days=1)).day == 4


def test_reuse_refuses_its_own_validator_count(tmp_path: Path) -> None:
    """With --settlement the settlement's validators sign: a count of its own is an error."""
    result = _invoke(
        str(EXAMPLE), "-o", str(tmp_path / "o"), "--settlement", str(tmp_path), "--validators", "2"
    )
    assert result.exit_code == 2
    assert "settlement's validators" in result.output
    assert not (tmp_path / "o").exists()


def test_validators_without_a_chain_run_is_an_error(tmp_path: Path) -> None:
    """--validators signs releases: off chain, or with --reclaim, it would be ignored."""
    for extra in ((), ("--reclaim",)):
        result = _invoke(str(EXAMPLE), "-o", str(tmp_path / "o"), "--validators", "5", *extra)
        assert result.exit_code == 2
        assert "--validators goes with --chain" in result.output
        assert not (tmp_path / "o").exists()
