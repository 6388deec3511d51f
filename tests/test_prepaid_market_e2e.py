"""Prepaid accounts from matching to the chain, on a real anvil, nothing mocked.

The bundled ``scenarios/prepaid-market`` (four prepaid households and their neighbours
in the CIGRE LV grid) runs clear -> settle -> meters sign -> attest -> prepaid ->
prepaid events on chain -> certificates: budgets hold in the trades, the escrow each
household gets is its prepaid balance and pays for its trades without a drop, the
delivered energy is certified, the meter loop runs, and the chain accepts a usage limit
payable from each household's free escrow and a cutoff only for those it left with nothing.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from feasibility import check_result_folder
from metered_as_traded import attest_as_traded
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.errors import InputError
from gridmatch.settlement import attestation, certificates, deploy
from gridmatch.settlement.prepaid_chain import publish_prepaid_events
from gridmatch.settlement.record import read_record, record_path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "prepaid-market"
METER_LOOP = ROOT / "scenarios" / "prepaid_example"
TARIFF_MICRO_EUR_PER_KWH = 410_000  # the meter loop's peak band
CUT_OFF_BELOW_MICRO_EUR = 10_000
RECONNECT_AT_MICRO_EUR = 1_000_000


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _accounts() -> dict[str, int]:
    """Balance plus emergency credit per household, micro-EUR, read with csv alone."""
    with (SCENARIO / "accounts.csv").open(newline="") as handle:
        return {
            r["participant_id"]: round(
                (float(r["balance_eur"]) + float(r["emergency_credit_eur"] or 0)) * 1e6
            )
            for r in csv.DictReader(handle)
        }


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("prepaid-market")
    out = root / "out"
    result = _invoke("clear", str(SCENARIO), "--out", str(out))
    assert result.exit_code == 0, result.stderr
    deploy.settle(out)
    stderr = attest_as_traded(out, root)
    return out, stderr


def test_budgets_hold_and_the_escrow_is_the_prepaid_balance(settled: tuple[Path, str]) -> None:
    out, _ = settled
    check_result_folder(SCENARIO, out)  # the independent checker sums what buyers pay
    accounts = _accounts()
    status = {r["order_id"]: r["status"] for r in csv.DictReader((out / "orders.csv").open())}
    assert status["h3-s0"] == "budget" and status["h2-s1"] == "budget"
    # The chain paid every trade: nothing was dropped for want of escrow, and each
    # household's escrow was exactly its prepaid balance, now spent on what it bought.
    record = read_record(record_path(out))
    assert not record.dropped
    held = attestation.balances(out)
    paid: dict[str, int] = defaultdict(int)
    for trade in record.trades:
        paid[trade.buyer_id] += trade.lock_micro_eur()
    for household, balance in accounts.items():
        if household not in held:  # never traded, so never on chain (household-3: 0 EUR)
            assert balance == 0 and paid[household] == 0
            continue
        free, locked, _ = held[household]
        assert locked == 0  # all settled
        assert free == balance - paid[household] >= 0, household
    budgets = {r["participant_id"]: r for r in csv.DictReader((out / "budgets.csv").open())}
    assert set(budgets) == set(accounts)
    for household, row in budgets.items():
        assert float(row["spent_eur"]) <= float(row["opening_eur"]) + 1e-9
        # The chain settles whole Wh (rounded down), each lock rounded up to a micro-EUR:
        # never more than the market's cost plus a micro-EUR a trade.
        assert paid[household] <= float(row["spent_eur"]) * 1e6 + len(record.trades)


def test_the_delivered_energy_is_certified(settled: tuple[Path, str]) -> None:
    out, stderr = settled
    assert "certificates issued" in stderr
    book = certificates.read_book(out)
    delivered_wh = sum(
        math.floor(float(t["quantity_kwh"]) * 1000 + 1e-6)
        for t in csv.DictReader((out / "trades.csv").open())
    )
    assert sum(c.issued_wh for c in book.certificates) == delivered_wh > 0
    result = _invoke("certificates", "list", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    listed = json.loads(result.stdout)
    assert listed


def test_the_meter_loop_runs_and_the_chain_takes_limits_and_the_one_cutoff(
    settled: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = settled
    loop = tmp_path / "loop"
    result = _invoke("prepaid", str(METER_LOOP), "-o", str(loop), "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["conserved"] is True
    record = read_record(record_path(out))
    people = record.participants()
    free = {p: v[0] for p, v in attestation.balances(out).items() if p in _accounts()}
    meters = {"household-1": "M-001", "household-2": "M-002", "household-3": "M-003"}
    meters["household-4"] = "M-004"
    records = []
    for counter, household in enumerate(sorted(free), start=1):
        payable_wh = free[household] * 1000 // TARIFF_MICRO_EUR_PER_KWH
        records.append((meters[household], people[household], "limit", payable_wh, counter))
    # household-2 spent its 0.40 EUR down to micro-EUR: its meter is cut off.
    broke = sorted(h for h, eur in free.items() if eur < CUT_OFF_BELOW_MICRO_EUR)
    assert "household-2" in broke and "household-1" not in broke
    records += [(meters[h], people[h], "cutoff", 0, 0) for h in broke]
    params = {
        "max_tariff_micro_eur_per_kwh": TARIFF_MICRO_EUR_PER_KWH,
        "cut_off_below_micro_eur": CUT_OFF_BELOW_MICRO_EUR,
        "reconnect_at_micro_eur": RECONNECT_AT_MICRO_EUR,
    }
    published = publish_prepaid_events(out, records, **params)
    assert (published.limits, published.cutoffs) == (len(free), len(broke))
    # A cutoff of a household that still holds escrow is refused on chain's rules.
    rich = max(free, key=lambda h: free[h])
    with pytest.raises(InputError, match="no cutoff"):
        publish_prepaid_events(out, [(meters[rich], people[rich], "cutoff", 0, 0)], **params)


def test_the_report_shows_budgets_and_certificates(settled: tuple[Path, str]) -> None:
    out, _ = settled
    assert _invoke("certificates", "list", str(out)).exit_code == 0
    result = _invoke("report", str(out))
    assert result.exit_code == 0, result.stderr
    page = (out / "report.html").read_text()
    assert 'id="budgets"' in page and "household-2" in page
    assert 'id="certificates"' in page and "Energy certificates" in page
    snapshot = json.loads((out / "settlement" / "certificates.json").read_text())
    assert snapshot["issued_wh"] == sum(b["bundle_quantity"] for b in snapshot["active"])
