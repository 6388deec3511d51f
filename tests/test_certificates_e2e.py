"""Energy certificates and prepaid publications end to end on a real anvil, nothing mocked.

clear -> settle -> meters sign -> attest (which issues the certificates of every
seller-hour whose trades are final) -> certificates list -> claim -> export, on the
settlement tests' market (tests/test_settlement_e2e.py): carol sells in slot 0 (an
hour), dave in slot 1, whose meter reading is forged so that his trades get no quorum.
Expected Wh are computed here from trades.csv and the meter file with the documented
pro-rata rule, independently of gridmatch.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode as reference_encode
from eth_abi.grammar import parse
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from test_settlement_e2e import METERS, _meter_csv, _scenario, _terms, _trades
from test_settlement_encoding import _input_types, _values
from typer.testing import CliRunner
from web3 import Web3

from gridmatch.cli import app
from gridmatch.errors import InputError, UsageError
from gridmatch.settlement import attestation, certificates, deploy
from gridmatch.settlement.abi_calls import call_view
from gridmatch.settlement.abi_encoding import encode
from gridmatch.settlement.anvil import local_chain
from gridmatch.settlement.artifacts import build, load
from gridmatch.settlement.chain import connect, contract_at
from gridmatch.settlement.meters import read_signed_readings, write_signed_readings
from gridmatch.settlement.prepaid_chain import publish_prepaid_events
from gridmatch.settlement.record import read_record, record_path

BENEFICIARY = "Schule am Park"
PURPOSE = "2026 scope 2 report, hourly matched"
HOUR = 3600


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A settled and attested clearing: carol's hour certified, dave's trades open."""
    root = tmp_path_factory.mktemp("certificates")
    out = root / "out"
    assert _invoke("clear", str(_scenario(root)), "--out", str(out)).exit_code == 0
    deploy.settle(out)
    signed = root / "readings.json"
    result = _invoke(
        "meters", "sign", str(out), str(_meter_csv(root / "meters.csv")), "-o", str(signed)
    )
    assert result.exit_code == 0, result.stderr
    record = read_record(record_path(out))
    forged = [
        r.model_copy(update={"exported_wh": r.exported_wh + 500}) if r.meter_id == "dave" else r
        for r in read_signed_readings(signed)
    ]
    write_signed_readings(signed, record.domain, forged)
    result = _invoke("attest", str(out), str(signed))
    assert result.exit_code == 0, result.stderr
    return out, result.stderr


def _expected_paid(out: Path) -> dict[tuple[str, int], dict[str, int]]:
    """Wh paid per seller and slot, per buyer, by the pro-rata rule (dave: no quorum)."""
    rows = _trades(out)
    sold: dict[tuple[str, int], int] = {}
    bought: dict[tuple[str, int], int] = {}
    for row in rows:
        wh, slot = _terms(out, row)[0], int(row["slot"])
        sold[row["seller_id"], slot] = sold.get((row["seller_id"], slot), 0) + wh
        bought[row["buyer_id"], slot] = bought.get((row["buyer_id"], slot), 0) + wh
    paid: dict[tuple[str, int], dict[str, int]] = {}
    for row in rows:
        if row["seller_id"] == "dave":
            continue
        wh, slot = _terms(out, row)[0], int(row["slot"])
        exported = math.floor(METERS[row["seller_id"], slot][0] * 1000 + 1e-6)
        imported = math.floor(METERS[row["buyer_id"], slot][1] * 1000 + 1e-6)
        s_total, b_total = sold[row["seller_id"], slot], bought[row["buyer_id"], slot]
        sent = wh if exported >= s_total else wh * exported // s_total
        got = wh if imported >= b_total else wh * imported // b_total
        share = paid.setdefault((row["seller_id"], slot), {})
        share[row["buyer_id"]] = share.get(row["buyer_id"], 0) + min(sent, got)
    return paid


def _book(out: Path) -> certificates.CertificateBook:
    return certificates.read_book(out)


def test_issued_wh_equal_the_attested_delivered_wh(certified: tuple[Path, str]) -> None:
    out, stderr = certified
    assert "certificates issued: 1" in stderr
    book = _book(out)
    expected = _expected_paid(out)
    (certificate,) = book.certificates  # carol's hour; dave's trades are still open
    assert book.name(certificate.device) == "carol"
    carol = expected["carol", 0]
    assert certificate.issued_wh == sum(carol.values()) > 0
    held = {book.name(h.holder): h.active_wh for h in book.holdings}
    assert held == {b: wh for b, wh in carol.items() if wh}
    # The certificate holds exactly the energy tokens the settlement minted for it, and
    # the chain's own counters agree: issued == verified == paid.
    energy = attestation.balances(out)
    record = read_record(record_path(out))
    slot0 = min(t.slot_start for t in record.trades)
    assert sum(e[2].get(slot0, 0) for e in energy.values()) == certificate.issued_wh
    with connect(out, None) as (w3, _):
        contract = certificates.certificates_contract(w3, record)
        settlement = contract_at("Settlement", record.settlement)
        (paid,) = call_view(w3, settlement, "totalPaidWh")
        (validated,) = call_view(w3, contract, "totalValidatedWh")
        (units,) = call_view(w3, contract, "unitsIssued")
    assert paid == validated == units == certificate.issued_wh
    # Its production interval is the hour of slot 0, its units start at 1.
    assert certificate.start == slot0 and certificate.end == slot0 + HOUR
    assert certificate.first_unit == 1


def test_an_hour_with_open_trades_is_issued_only_once_they_are_final(
    certified: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = certified
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    signed = tmp_path / "readings.json"
    meters = _meter_csv(tmp_path / "meters.csv")
    assert _invoke("meters", "sign", str(copy), str(meters), "-o", str(signed)).exit_code == 0
    # Honest readings now: dave's trades settle, his hour becomes final and is issued.
    result = _invoke("attest", str(copy), str(signed))
    assert result.exit_code == 0, result.stderr
    assert "certificates issued: 1 (ids 2-2" in result.stderr
    book = _book(copy)
    assert [book.name(c.device) for c in book.certificates] == ["carol", "dave"]
    # A third attest finds nothing new to issue, and issues nothing twice.
    again = _invoke("attest", str(copy), str(signed))
    assert again.exit_code == 0 and "certificates issued" not in again.stderr
    assert len(_book(copy).certificates) == 2


def test_reclaimed_trades_close_their_hour_with_nothing_to_certify(
    certified: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = certified
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    outcome = attestation.reclaim_expired(copy, advance_s=48 * HOUR)
    assert outcome.payouts and outcome.certificates == ()
    assert len(_book(copy).certificates) == 1


def test_list_shows_holdings_as_a_table_and_as_bundles(certified: tuple[Path, str]) -> None:
    out, _ = certified
    result = _invoke("certificates", "list", str(out))
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stderr.split())
    assert "energy certificates" in text and "carol" in text and "alice" in text
    shown = _invoke("certificates", "list", str(out), "--json")
    assert shown.exit_code == 0, shown.stderr
    document = json.loads(shown.stdout)
    (bundle,) = document["active"]
    assert bundle["certificate_bundle_status"] == "Active"
    assert bundle["device_name"] == "carol"
    size = bundle["certificate_bundle_id_range_end"] - bundle["certificate_bundle_id_range_start"]
    assert (
        size + 1
        == bundle["bundle_quantity"]
        == document["issued_wh"] - sum(b["bundle_quantity"] for b in document["claimed"])
    )
    assert sum(bundle["holdings"].values()) == bundle["bundle_quantity"]


def test_claim_export_and_a_claim_beyond_the_holding(
    certified: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = certified
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    alice = _expected_paid(copy)["carol", 0]["alice"]
    part = alice // 3
    result = _invoke(
        "certificates",
        "claim",
        str(copy),
        "--claim",
        "1",
        "--wh",
        str(part),
        "--holder",
        "alice",
        "--beneficiary",
        BENEFICIARY,
        "--purpose",
        PURPOSE,
    )
    assert result.exit_code == 0, result.stderr
    assert f"retired {part} Wh of certificate 1 (units 1-{part})" in " ".join(result.stderr.split())
    # More than alice still holds: refused before any transaction, naming the option.
    beyond = _invoke(
        "certificates",
        "claim",
        str(copy),
        "--claim",
        "1",
        "--wh",
        str(alice - part + 1),
        "--holder",
        "alice",
        "--beneficiary",
        BENEFICIARY,
        "--purpose",
        PURPOSE,
    )
    assert beyond.exit_code == 2, beyond.stderr
    text = " ".join(beyond.stderr.split())
    assert f"--wh: alice holds {alice - part} active Wh of certificate 1" in text
    assert f"{part} Wh retired already" in text and "Traceback" not in text
    # The rest goes; then nothing is left, and retired Wh never count again.
    rest = _invoke(
        "certificates",
        "claim",
        str(copy),
        "--claim",
        "1",
        "--wh",
        str(alice - part),
        "--holder",
        "alice",
        "--beneficiary",
        "ACME GmbH",
        "--purpose",
        "own use",
    )
    assert rest.exit_code == 0, rest.stderr
    again = _invoke(
        "certificates",
        "claim",
        str(copy),
        "--claim",
        "1",
        "--wh",
        "1",
        "--holder",
        "alice",
        "--beneficiary",
        BENEFICIARY,
        "--purpose",
        PURPOSE,
    )
    assert again.exit_code == 2 and "holds 0 active Wh" in again.stderr
    book = _book(copy)
    claimed = {book.name(h.holder): h.claimed_wh for h in book.holdings}
    assert claimed["alice"] == alice
    assert [(r.claim_id, r.wh, r.first_unit) for r in book.retirements] == [
        (1, part, 1),
        (2, alice - part, part + 1),
    ]
    # The statement: the beneficiary's retirements only, as Claimed bundles.
    statement = tmp_path / "statement.json"
    written = _invoke(
        "certificates",
        "export",
        str(copy),
        "--beneficiary",
        BENEFICIARY,
        "--start",
        "2026-12-01T00:00:00Z",
        "--end",
        "2026-12-02T00:00:00+00:00",
        "-o",
        str(statement),
    )
    assert written.exit_code == 0, written.stderr
    document = json.loads(statement.read_text())
    (bundle,) = document["bundles"]
    assert document["beneficiary"] == BENEFICIARY and document["claimed_wh"] == part
    assert bundle["certificate_bundle_status"] == "Claimed"
    assert (
        bundle["certificate_bundle_id_range_start"],
        bundle["certificate_bundle_id_range_end"],
    ) == (
        1,
        part,
    )
    assert bundle["bundle_quantity"] == part and bundle["claim_purpose"] == PURPOSE
    assert bundle["device_name"] == "carol" and bundle["account_name"] == "alice"
    assert bundle["production_starting_interval"] == "2026-12-01T00:00:00Z"
    assert bundle["production_ending_interval"] == "2026-12-01T01:00:00Z"
    assert bundle["claim_transaction"].startswith("0x")
    # Another period holds none of them.
    later = tmp_path / "later.json"
    result = _invoke(
        "certificates",
        "export",
        str(copy),
        "--beneficiary",
        BENEFICIARY,
        "--start",
        "2026-12-02T00:00:00Z",
        "-o",
        str(later),
    )
    assert result.exit_code == 0 and json.loads(later.read_text())["bundles"] == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--claim", "9"], "--claim: no certificate 9 (ids 1 to 1)"),
        (["--holder", "mallory"], "--holder: 'mallory' is no participant"),
        (["--beneficiary", ""], "--beneficiary: must not be empty"),
        (["--beneficiary", " ACME"], "--beneficiary: starts or ends with blanks"),
        (["--beneficiary", "A" * 129], "--beneficiary: 129 bytes in UTF-8, at most 128"),
        (["--purpose", "line\nbreak"], "--purpose: holds a control character"),
        (["--purpose", "ü" * 129], "--purpose: 258 bytes in UTF-8, at most 256"),
        (["--wh", "0"], "--wh"),
        (["--claim", "0"], "--claim"),
    ],
)
def test_claim_arguments_are_validated_at_the_edge(
    certified: tuple[Path, str], args: list[str], fragment: str
) -> None:
    out, _ = certified
    options = {
        "--claim": "1",
        "--wh": "1",
        "--holder": "alice",
        "--beneficiary": BENEFICIARY,
        "--purpose": PURPOSE,
    }
    options.update(dict(zip(args[::2], args[1::2], strict=True)))
    result = _invoke("certificates", "claim", str(out), *[x for kv in options.items() for x in kv])
    assert result.exit_code == 2, result.stderr
    assert fragment in " ".join(result.stderr.split()) or fragment in result.output
    assert "Traceback" not in result.stderr
    assert sum(h.claimed_wh for h in _book(out).holdings) == 0  # nothing was claimed


def test_export_arguments_and_output_are_validated(
    certified: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = certified
    base = ["certificates", "export", str(out), "--beneficiary", BENEFICIARY]
    cases = [
        (["--start", "2026-12-01T00:00:00", "-o", str(tmp_path / "a.json")], "has no UTC offset"),
        (["--end", "yesterday", "-o", str(tmp_path / "a.json")], "--end: 'yesterday' is not an"),
        (
            ["--start", "2026-12-02T00:00:00Z", "--end", "2026-12-01T00:00:00Z", "-o", "x.json"],
            "--end: 2026-12-01T00:00:00Z is not after --start",
        ),
        (["-o", str(out / "statement.json")], "inside a result folder"),
    ]
    for args, fragment in cases:
        result = _invoke(*base, *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert fragment in " ".join(result.stderr.split()), (args, result.stderr)
    foreign = tmp_path / "foreign.json"
    foreign.write_text("{}")
    result = _invoke(*base, "-o", str(foreign))
    assert result.exit_code == 2 and "was not written by gridmatch" in result.stderr
    assert foreign.read_text() == "{}"


def test_a_deployment_record_naming_other_certificates_is_refused(
    certified: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = certified
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    path = record_path(copy)
    document = json.loads(path.read_text())
    document["certificates"] = "0x000000000000000000000000000000000000dEaD"
    path.write_text(json.dumps(document))
    result = _invoke("certificates", "list", str(copy))
    assert result.exit_code == 4 and "the record was changed" in result.stderr
    document["certificates"] = None
    path.write_text(json.dumps(document))
    result = _invoke("certificates", "list", str(copy))
    assert result.exit_code == 2 and "issues no energy certificates" in result.stderr


# ---------------------------------------------------------------- prepaid on chain


def test_prepaid_limits_cutoffs_and_reconnections_are_published_and_checked(
    certified: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = certified
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    record = read_record(record_path(copy))
    people = record.participants()
    free = {p: v[0] for p, v in attestation.balances(copy).items()}
    rich = max(free, key=lambda p: free[p])
    broke = next(p for p, f in free.items() if f == 0)  # dave: paid nothing
    tariff = 400_000  # micro-EUR per kWh at the highest tariff
    payable = free[rich] * 1000 // tariff
    params = {
        "max_tariff_micro_eur_per_kwh": tariff,
        "cut_off_below_micro_eur": 100_000,
        "reconnect_at_micro_eur": 500_000,
    }
    records = [
        ("meter-rich", people[rich], "limit", payable, 1),
        ("meter-broke", people[broke], "token_issued", 0, 1),
        ("meter-broke", people[broke], "disconnected", 0, 0),
    ]
    published = publish_prepaid_events(copy, records, **params)
    assert (published.limits, published.cutoffs, published.reconnections) == (2, 1, 0)
    # The events are on chain, under the meter id's keccak.
    contract = contract_at("PrepaidMeters", published.contract)
    with local_chain(copy / "settlement" / "chain-state.json") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        logs = w3.eth.get_logs(
            {
                "address": contract.address,
                "fromBlock": 0,
                "topics": [contract.event_topic("CutOff")],
            }
        )
    assert len(logs) == 1 and bytes(logs[0]["topics"][2]) == keccak(text="meter-broke")
    # Each rule, refused before any transaction, naming the record and field.
    refused = [
        ([("meter-rich", people[rich], "limit", payable + 10, 2)], "row 1, field 'limit_wh'"),
        ([("meter-rich", people[rich], "limit", 1, 1)], "counter 1 is not above its last 1"),
        ([("meter-rich", people[rich], "cutoff", 0, 0)], "is not below 100000: no cutoff"),
        ([("meter-broke", people[broke], "reconnect", 0, 0)], "top up before reconnecting"),
        ([("meter-broke", people[broke], "limit", 0, 2)], "is cut off: reconnect it"),
        ([("meter-rich", people[broke], "cutoff", 0, 0)], "field 'account'"),
        ([("meter-x", "0xnot", "limit", 1, 1)], "field 'account'"),
        ([("meter-x", people[rich], "unplug", 1, 1)], "field 'kind'"),
        ([("", people[rich], "limit", 1, 1)], "field 'meter_id'"),
        ([("meter-x", people[rich], "limit", -1, 1)], "field 'limit_wh'"),
    ]
    for bad, fragment in refused:
        with pytest.raises(InputError, match=re.escape(fragment)):
            publish_prepaid_events(copy, bad, **params)
    with pytest.raises(UsageError, match="give the same"):
        publish_prepaid_events(copy, records[:1], **{**params, "max_tariff_micro_eur_per_kwh": 1})


# ---------------------------------------------------------------- encoding


build()
_NEW_FUNCTIONS = [
    (f"{name}.{item.get('name', 'constructor')}", _input_types(item))
    for name in ("EnergyCertificates", "PrepaidMeters")
    for item in load(name).abi
    if item.get("type") in ("function", "constructor") and item["inputs"]
]


def test_the_new_contracts_functions_are_covered() -> None:
    names = {n for n, _ in _NEW_FUNCTIONS}
    assert {
        "EnergyCertificates.issue",
        "EnergyCertificates.claim",
        "PrepaidMeters.publish",
    } <= names


@pytest.mark.parametrize(("name", "types"), _NEW_FUNCTIONS, ids=[n for n, _ in _NEW_FUNCTIONS])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_encoding_of_the_new_contracts_equals_eth_abi(
    name: str, types: list[str], data: st.DataObject
) -> None:
    values = [data.draw(_values(parse(t)), label=t) for t in types]
    assert encode(types, values) == reference_encode(types, values), name
