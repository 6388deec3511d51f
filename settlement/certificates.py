"""Energy certificates of verified generation: issuance, holdings, retirements, statements.

The settlement contract is the only issuer of ``EnergyCertificates`` (see
``contracts/src/EnergyCertificates.sol``): one certificate per seller (the generating
device) and clock hour, holding exactly the Wh a validator quorum verified for that
seller's trades in that hour, minted to the buyers who received them. A seller-hour is
issued once all its trades are final (settled or reclaimed); ``attest`` and ``reclaim``
ask for every seller-hour that became ready (:func:`issue_ready`; anyone may, the result
is fixed by the votes).

A holder transfers certificates in any part (ERC-1155) and retires ("claims") Wh for a
named beneficiary and purpose, irreversibly (:func:`claim`); each retirement takes the
next unit numbers of its certificate, so it names exactly the Wh it retired.
:func:`write_statement` exports a beneficiary's retirements as granular certificate
bundles with the field names of EnergyTag's GC registry data model.

Everything here is read from the chain (events and views), never from a local file that
could have been edited; the deployment record only names the contracts and maps
addresses to participant ids.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.types import RPCEndpoint

from gridmatch.errors import ChainError, UsageError
from gridmatch.results_io.atomic import write_file_atomically
from gridmatch.results_io.layout import CERTIFICATES_SNAPSHOT_FILE, SETTLEMENT_DIR
from gridmatch.settlement.abi_calls import ContractAbi, call_view
from gridmatch.settlement.chain import connect, contract_at, fund_gas, in_chunks
from gridmatch.settlement.keys import Keystore
from gridmatch.settlement.outputs import claim_output
from gridmatch.settlement.receipts import Log
from gridmatch.settlement.record import DeploymentRecord, read_record, record_path
from gridmatch.settlement.transactions import Sender
from gridmatch.units import SECONDS_PER_HOUR

# As EnergyCertificates.sol: the period of a certificate, and the claim texts' bounds.
PERIOD_S = SECONDS_PER_HOUR
MAX_BENEFICIARY_BYTES = 128
MAX_PURPOSE_BYTES = 256
# Gas for a participant's claim on a local chain (anvil's funding cheat).
HOLDER_GAS_WEI = 10**21
# Views per eth_call.
_VIEW_BATCH = 500


class CertificateStatus(StrEnum):
    """Status words of EnergyTag's granular certificate bundles.

    ``Cancelled`` (a certificate withdrawn by its issuer) never occurs here: issuance
    follows a final quorum, and nothing on chain can withdraw a certificate.
    """

    ACTIVE = "Active"
    CLAIMED = "Claimed"
    CANCELLED = "Cancelled"


class CertificateClaimError(UsageError):
    """A claim the contract would refuse: no such certificate, or more Wh than held."""


@dataclass(frozen=True)
class Certificate:
    """An issued certificate (its metadata as the contract fixed it at issuance).

    Units run from ``first_unit`` to ``first_unit + issued_wh - 1``; the first
    ``claimed_wh`` of them are retired.
    """

    certificate_id: int
    device: str
    start: int
    end: int
    issued_wh: int
    first_unit: int
    claimed_wh: int = 0

    @property
    def active_wh(self) -> int:
        """Wh not retired yet (held by someone, transferable)."""
        return self.issued_wh - self.claimed_wh


@dataclass(frozen=True)
class Holding:
    """What one account holds of one certificate."""

    certificate_id: int
    holder: str
    active_wh: int
    claimed_wh: int


@dataclass(frozen=True)
class Retirement:
    """One claim: ``wh`` Wh of a certificate retired for a beneficiary and purpose.

    Its units are ``first_unit`` .. ``first_unit + wh - 1`` of the certificate's range.
    """

    claim_id: int
    certificate_id: int
    holder: str
    wh: int
    first_unit: int
    beneficiary: str
    purpose: str
    transaction: str
    timestamp: int


@dataclass(frozen=True)
class CertificateBook:
    """Every certificate, holding and retirement of a deployment, read from the chain."""

    chain_id: int
    settlement: str
    contract: str
    certificates: list[Certificate]
    holdings: list[Holding]
    retirements: list[Retirement]
    names: dict[str, str] = field(default_factory=dict)

    def name(self, address: str) -> str:
        """Return the participant id of ``address`` in the deployment, else the address."""
        return self.names.get(address.lower(), address)

    @property
    def issued_wh(self) -> int:
        """Wh issued over all certificates."""
        return sum(c.issued_wh for c in self.certificates)


# ---------------------------------------------------------------- the contract


def certificates_contract(w3: Web3, record: DeploymentRecord) -> ContractAbi:
    """Return the deployment's certificates contract, as its settlement contract names it.

    Raises
    ------
    UsageError
        The deployment's settlement contract has no certificates (an older deployment).
    ChainError
        The chain and the deployment record name different contracts.
    """
    if record.certificates is None:
        raise UsageError(
            f"the settlement contract {record.settlement} issues no energy certificates "
            "(a deployment made before them): settle the clearing again"
        )
    (address,) = call_view(w3, contract_at("Settlement", record.settlement), "certificates")
    address = Web3.to_checksum_address(str(address))
    if record.certificates.lower() != address.lower():
        raise ChainError(
            f"the settlement contract names certificates {address}, the deployment record "
            f"{record.certificates}: the record was changed"
        )
    return contract_at("EnergyCertificates", address)


def _issuer_abi(settlement: str, certificates: ContractAbi) -> ContractAbi:
    """Return the settlement's ABI plus the certificates' errors (refusals decoded)."""
    errors = tuple(item for item in certificates.abi if item.get("type") == "error")
    return ContractAbi(settlement, (*contract_at("Settlement", settlement).abi, *errors))


def hour_start(time_s: int) -> int:
    """Return the start of the clock hour holding ``time_s`` (a certificate's period key)."""
    return time_s - time_s % PERIOD_S


# ---------------------------------------------------------------- issuance


def issue_ready(sender: Sender, record: DeploymentRecord) -> list[Certificate]:
    """Issue every seller-hour of the deployment whose trades are all final.

    Seller-hours already issued, with a trade still open, or with nothing verified are
    left alone. Each request lists the hour's buyers from the record; the contract mints
    only what it recorded as verified for each and refuses a request that leaves one
    out, so an edited record cannot change what is issued.

    Returns
    -------
    list[Certificate]
        The certificates issued now, in id order.
    """
    w3 = sender.w3
    contract = certificates_contract(w3, record)
    buyers: dict[tuple[str, int], set[str]] = defaultdict(set)
    for trade in record.trades:
        buyers[trade.seller, hour_start(trade.slot_start)].add(trade.buyer)
    keys = sorted(buyers)
    ready = []
    for start in range(0, len(keys), _VIEW_BATCH):
        part = keys[start : start + _VIEW_BATCH]
        (periods,) = call_view(w3, contract, "periods", [s for s, _ in part], [h for _, h in part])
        for key, (validated, _, _, open_trades, certificate_id) in zip(part, periods, strict=True):
            if certificate_id == 0 and open_trades == 0 and validated > 0:
                ready.append(key)
    if not ready:
        return []
    requests = [(seller, hour, sorted(buyers[seller, hour])) for seller, hour in ready]
    issuer = _issuer_abi(record.settlement, contract)
    issued = []
    for _, receipt, _ in in_chunks(
        sender, issuer, requests, lambda part: ("issueCertificates", part)
    ):
        issued += [_certificate(e) for e in contract.decode_logs(receipt.logs, "CertificateIssued")]
    return sorted(issued, key=lambda c: c.certificate_id)


def _certificate(event: dict[str, Any]) -> Certificate:
    return Certificate(
        certificate_id=int(event["id"]),
        device=Web3.to_checksum_address(event["device"]),
        start=int(event["start"]),
        end=int(event["end"]),
        issued_wh=int(event["wh"]),
        first_unit=int(event["firstUnit"]),
    )


# ---------------------------------------------------------------- reading


def read_book(out_dir: Path, *, rpc_url: str | None = None) -> CertificateBook:
    """Read every certificate, holding and retirement of the deployment from the chain."""
    record = read_record(record_path(out_dir))
    with connect(out_dir, rpc_url or record.rpc_url) as (w3, _):
        return book_of(w3, record)


def book_of(w3: Web3, record: DeploymentRecord) -> CertificateBook:
    """:func:`read_book` on an open connection."""
    contract = certificates_contract(w3, record)
    claims = _retirements(w3, contract)
    claimed: dict[int, int] = defaultdict(int)
    for r in claims:
        claimed[r.certificate_id] += r.wh
    certificates = [
        replace(c, claimed_wh=claimed[c.certificate_id])
        for c in sorted(
            (_certificate(e) for e in _events(w3, contract, "CertificateIssued")),
            key=lambda c: c.certificate_id,
        )
    ]
    names = {a.lower(): p for p, a in record.participants().items()}
    accounts = sorted(
        {a.lower() for a in record.participants().values()} | _receivers(w3, contract)
    )
    holdings = _holdings(w3, contract, accounts, [c.certificate_id for c in certificates])
    return CertificateBook(
        chain_id=int(w3.eth.chain_id),
        settlement=record.settlement,
        contract=contract.address,
        certificates=certificates,
        holdings=holdings,
        retirements=claims,
        names=names,
    )


def _events(w3: Web3, contract: ContractAbi, name: str) -> list[dict[str, Any]]:
    """Return every ``name`` event the contract logged, with its block and transaction."""
    query = {
        "address": contract.address,
        "topics": ["0x" + contract.event_topic(name).hex()],
        "fromBlock": "0x0",
        "toBlock": "latest",
    }
    response = w3.provider.make_request(RPCEndpoint("eth_getLogs"), [query])
    if "error" in response or not isinstance(response.get("result"), list):
        raise ChainError(f"the node refused eth_getLogs: {response.get('error', response)}")
    found = []
    for raw in response["result"]:
        log = Log(
            address=raw["address"],
            topics=tuple(bytes.fromhex(t[2:]) for t in raw["topics"]),
            data=bytes.fromhex(raw["data"][2:]),
        )
        for event in contract.decode_logs([log], name):
            event["_block"] = int(raw["blockNumber"], 16)
            event["_transaction"] = raw["transactionHash"]
            found.append(event)
    return found


def _retirements(w3: Web3, contract: ContractAbi) -> list[Retirement]:
    events = _events(w3, contract, "CertificateClaimed")
    stamps: dict[int, int] = {}
    for block in sorted({e["_block"] for e in events}):
        stamps[block] = int(w3.eth.get_block(block)["timestamp"])
    return sorted(
        (
            Retirement(
                claim_id=int(e["claimId"]),
                certificate_id=int(e["id"]),
                holder=Web3.to_checksum_address(e["holder"]),
                wh=int(e["wh"]),
                first_unit=int(e["firstUnit"]),
                beneficiary=str(e["beneficiary"]),
                purpose=str(e["purpose"]),
                transaction=str(e["_transaction"]),
                timestamp=stamps[e["_block"]],
            )
            for e in events
        ),
        key=lambda r: r.claim_id,
    )


def _receivers(w3: Web3, contract: ContractAbi) -> set[str]:
    """Return every account a certificate was ever minted or transferred to (lower-case)."""
    found = {str(e["to"]).lower() for e in _events(w3, contract, "TransferSingle")}
    found |= {str(e["to"]).lower() for e in _events(w3, contract, "TransferBatch")}
    found.discard("0x" + "00" * 20)
    return found


def _holdings(
    w3: Web3, contract: ContractAbi, accounts: list[str], ids: list[int]
) -> list[Holding]:
    pairs = [(a, i) for i in ids for a in accounts]
    holdings = []
    for start in range(0, len(pairs), _VIEW_BATCH):
        part = pairs[start : start + _VIEW_BATCH]
        owners, tokens = [a for a, _ in part], [i for _, i in part]
        (active,) = call_view(w3, contract, "balanceOfBatch", owners, tokens)
        (claimed,) = call_view(w3, contract, "claimedBalanceOfBatch", owners, tokens)
        for (account, token), a, c in zip(part, active, claimed, strict=True):
            if a or c:
                holdings.append(Holding(token, Web3.to_checksum_address(account), int(a), int(c)))
    return holdings


# ---------------------------------------------------------------- claims


def checked_text(value: str, option: str, max_bytes: int) -> str:
    """Return ``value`` if it is a claim text the contract takes, else name the option.

    Raises
    ------
    UsageError
        Empty, with surrounding blanks, a control character, not encodable as UTF-8, or
        longer than ``max_bytes`` in UTF-8.
    """
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise UsageError(f"{option}: not valid text (undecodable bytes)") from None
    if not value.strip():
        raise UsageError(f"{option}: must not be empty")
    if value != value.strip():
        raise UsageError(f"{option}: starts or ends with blanks; give it without them")
    if any(not ch.isprintable() for ch in value):
        raise UsageError(f"{option}: holds a control character")
    if size > max_bytes:
        raise UsageError(f"{option}: {size} bytes in UTF-8, at most {max_bytes}")
    return value


def claim(
    out_dir: Path,
    *,
    certificate_id: int,
    wh: int,
    holder_id: str,
    beneficiary: str,
    purpose: str,
    rpc_url: str | None = None,
) -> Retirement:
    """Retire ``wh`` Wh of certificate ``certificate_id`` held by participant ``holder_id``.

    The holder signs the claim with its own key (the demo keystore's); the contract
    burns the active Wh and records them as claimed for ``beneficiary`` and ``purpose``,
    for good.

    Raises
    ------
    UsageError
        An option is out of range or not a participant of the deployment.
    CertificateClaimError
        No such certificate, or the holder's active Wh do not cover the claim (checked
        on chain before sending, so nothing is spent on a refused claim).
    ChainError
        The transaction was refused, or the node failed.
    """
    if not 1 <= certificate_id < 2**256:
        raise UsageError("--claim: must be a certificate id, 1 or more")
    if not 1 <= wh < 2**64:
        raise UsageError("--wh: must be a whole number of Wh, 1 or more (below 2^64)")
    checked_text(beneficiary, "--beneficiary", MAX_BENEFICIARY_BYTES)
    checked_text(purpose, "--purpose", MAX_PURPOSE_BYTES)
    record = read_record(record_path(out_dir))
    participants = record.participants()
    if holder_id not in participants:
        known = ", ".join(sorted(participants)[:10])
        raise UsageError(f"--holder: {holder_id!r} is no participant of this deployment ({known})")
    keystore = Keystore.open(out_dir / SETTLEMENT_DIR / "keys", create=False)
    account = Account.from_key(keystore.participant(holder_id).key)
    with connect(out_dir, rpc_url or record.rpc_url) as (w3, _):
        contract = certificates_contract(w3, record)
        (count,) = call_view(w3, contract, "certificateCount")
        if certificate_id > int(count):
            raise CertificateClaimError(
                f"--claim: no certificate {certificate_id} "
                f"({'none issued yet' if not count else f'ids 1 to {count}'})"
            )
        (active,) = call_view(w3, contract, "balanceOf", account.address, certificate_id)
        (claimed,) = call_view(w3, contract, "claimedBalanceOf", account.address, certificate_id)
        if int(active) < wh:
            raise CertificateClaimError(
                f"--wh: {holder_id} holds {int(active)} active Wh of certificate {certificate_id} "
                f"({int(claimed)} Wh retired already, which never count again); "
                f"cannot retire {wh}"
            )
        fund_gas(w3, account.address, HOLDER_GAS_WEI, local=(rpc_url or record.rpc_url) is None)
        sender = Sender(w3, account)
        data = contract.calldata("claim", certificate_id, wh, beneficiary, purpose)
        tx_hash = sender.send(contract.address, data, abi=contract.abi)
        receipt = sender.wait([tx_hash], contract.abi)[0]
        (event,) = contract.decode_logs(receipt.logs, "CertificateClaimed")
        stamp = int(w3.eth.get_block(receipt.block_number)["timestamp"])
    return Retirement(
        claim_id=int(event["claimId"]),
        certificate_id=certificate_id,
        holder=account.address,
        wh=int(event["wh"]),
        first_unit=int(event["firstUnit"]),
        beneficiary=beneficiary,
        purpose=purpose,
        transaction="0x" + tx_hash.hex(),
        timestamp=stamp,
    )


# ---------------------------------------------------------------- statements


def parse_time(text: str | None, option: str) -> int | None:
    """Return the Unix seconds of an ISO 8601 time with a UTC offset (``...T00:00:00Z``).

    Raises
    ------
    UsageError
        Not such a time, naming the option.
    """
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option}: {text!r} is not an ISO 8601 time (e.g. 2026-12-01T00:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise UsageError(f"{option}: {text!r} has no UTC offset (add Z or +01:00)")
    return int(moment.timestamp())


def iso(time_s: int) -> str:
    """Return ``time_s`` as ISO 8601 UTC with a Z."""
    return datetime.fromtimestamp(time_s, UTC).isoformat().replace("+00:00", "Z")


def bundles(book: CertificateBook, retirements: Iterable[Retirement]) -> list[dict[str, Any]]:
    """Return the retirements as Claimed certificate bundles (EnergyTag field names)."""
    certificates = {c.certificate_id: c for c in book.certificates}
    found = []
    for r in retirements:
        c = certificates[r.certificate_id]
        found.append(
            {
                **_bundle_base(book, c),
                "certificate_bundle_status": CertificateStatus.CLAIMED.value,
                "certificate_bundle_id_range_start": r.first_unit,
                "certificate_bundle_id_range_end": r.first_unit + r.wh - 1,
                "bundle_quantity": r.wh,
                "account_id": r.holder,
                "account_name": book.name(r.holder),
                "beneficiary": r.beneficiary,
                "claim_purpose": r.purpose,
                "claim_id": r.claim_id,
                "claim_transaction": r.transaction,
                "claim_datestamp": iso(r.timestamp),
            }
        )
    return found


def active_bundles(book: CertificateBook) -> list[dict[str, Any]]:
    """Return each certificate's unretired units as one Active bundle, and who holds them.

    Active units are interchangeable among their holders (an ERC-1155 balance), so a
    bundle's range is the certificate's whole unretired range; ``holdings`` says which
    account holds how many of those Wh.
    """
    held: dict[int, dict[str, int]] = defaultdict(dict)
    for h in book.holdings:
        if h.active_wh:
            held[h.certificate_id][book.name(h.holder)] = h.active_wh
    return [
        {
            **_bundle_base(book, c),
            "certificate_bundle_status": CertificateStatus.ACTIVE.value,
            "certificate_bundle_id_range_start": c.first_unit + c.claimed_wh,
            "certificate_bundle_id_range_end": c.first_unit + c.issued_wh - 1,
            "bundle_quantity": c.active_wh,
            "holdings": dict(sorted(held[c.certificate_id].items())),
        }
        for c in book.certificates
        if c.active_wh > 0
    ]


def _bundle_base(book: CertificateBook, c: Certificate) -> dict[str, Any]:
    return {
        "issuance_id": f"{c.device}-{iso(c.start)}",
        "certificate_id": c.certificate_id,
        "face_value": 1,
        "energy_carrier": "electricity",
        "device_id": c.device,
        "device_name": book.name(c.device),
        "production_starting_interval": iso(c.start),
        "production_ending_interval": iso(c.end),
        "issuance_quantity": c.issued_wh,
        "issuing_body": f"gridmatch EnergyCertificates {book.contract} (chain {book.chain_id})",
    }


def snapshot(book: CertificateBook) -> dict[str, Any]:
    """Return the holdings and retirements as one document (``certificates list --json``)."""
    return {
        "certificates_contract": book.contract,
        "chain_id": book.chain_id,
        "issued_wh": book.issued_wh,
        "active": active_bundles(book),
        "claimed": bundles(book, book.retirements),
    }


def write_snapshot(out_dir: Path, book: CertificateBook) -> Path:
    """Keep the latest snapshot in the result folder, for ``gridmatch report`` to show."""
    path = out_dir / CERTIFICATES_SNAPSHOT_FILE
    # Inside the folder's settlement/ part, which only gridmatch writes.
    write_file_atomically(path, json.dumps(snapshot(book), indent=1, ensure_ascii=False) + "\n")
    return path


@dataclass(frozen=True)
class Statement:
    """What :func:`write_statement` wrote: its bundles and their Wh."""

    path: Path
    bundles: int
    claimed_wh: int


def statement(
    book: CertificateBook, beneficiary: str, start: int | None, end: int | None
) -> dict[str, Any]:
    """Return ``beneficiary``'s retirement statement for production starting in [start, end)."""
    starts = {c.certificate_id: c.start for c in book.certificates}
    chosen = [
        r
        for r in book.retirements
        if r.beneficiary == beneficiary
        and (start is None or starts[r.certificate_id] >= start)
        and (end is None or starts[r.certificate_id] < end)
    ]
    return {
        "statement": "retirement of granular energy certificates",
        "format": "EnergyTag granular certificate bundles (GC registry data model field names); "
        "1 certificate = 1 Wh",
        "beneficiary": beneficiary,
        "period_start": None if start is None else iso(start),
        "period_end": None if end is None else iso(end),
        "registry": {
            "chain_id": book.chain_id,
            "certificates_contract": book.contract,
            "settlement_contract": book.settlement,
        },
        "claimed_wh": sum(r.wh for r in chosen),
        "bundles": bundles(book, chosen),
    }


def write_statement(
    out_dir: Path,
    path: Path,
    *,
    beneficiary: str,
    start: str | None = None,
    end: str | None = None,
    rpc_url: str | None = None,
) -> Statement:
    """Write ``beneficiary``'s retirement statement for production in [start, end) to ``path``.

    Raises
    ------
    UsageError
        A bad beneficiary or time, or an empty period.
    OutputFolderError
        ``path`` lies in a result folder itself, or is a file gridmatch did not write.
    """
    checked_text(beneficiary, "--beneficiary", MAX_BENEFICIARY_BYTES)
    start_s, end_s = parse_time(start, "--start"), parse_time(end, "--end")
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise UsageError(f"--end: {end} is not after --start {start}")
    book = read_book(out_dir, rpc_url=rpc_url)
    document = statement(book, beneficiary, start_s, end_s)
    claim_output(path)
    write_file_atomically(path, json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    return Statement(path, len(document["bundles"]), int(document["claimed_wh"]))
