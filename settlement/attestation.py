"""``gridmatch attest``, ``reclaim``, ``balances`` and the meter files.

``attest`` runs every validator as an operating-system process of its own, filters
what they signed, and submits the votes; the contract settles what a quorum agrees
on. Who gained what comes from the contract's events.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from web3 import Web3

from gridmatch.errors import ChainError, InputError
from gridmatch.results_io.layout import SETTLEMENT_DIR
from gridmatch.settlement.abi_calls import ContractAbi
from gridmatch.settlement.certificates import Certificate, issue_ready
from gridmatch.settlement.chain import (
    OPEN,
    advance_clock,
    checked_contracts,
    connect,
    holdings,
    in_chunks,
    trade_states,
)
from gridmatch.settlement.chain_view import utc_text
from gridmatch.settlement.eip712 import Attestation, signer_of
from gridmatch.settlement.keys import OPERATOR, Keystore
from gridmatch.settlement.meters import (
    read_meter_csv,
    read_signed_readings_file,
    sign_readings,
    simulate_readings,
    write_meter_csv,
    write_signed_readings,
)
from gridmatch.settlement.outputs import claim_output
from gridmatch.settlement.record import DeploymentRecord, read_record, record_path
from gridmatch.settlement.transactions import Sender
from gridmatch.settlement.validator import (
    ValidatorJob,
    ValidatorReport,
    finish_validator,
    prepare_copy,
    start_validator,
)
from gridmatch.units import WH_PER_KWH, micro_eur_to_eur

# Why a trade whose slot is still running is not settled (the contract's SlotNotEnded,
# or held back before submission).
NOT_DELIVERED_YET = "its delivery slot has not ended by the chain's clock; attest again after it"

# Settlement.SkipReason, as the contract numbers it.
_SKIP_REASONS = {
    1: "unknown trade",
    2: "round not sealed",
    3: "already final",
    4: "voting closed",
    5: "not expired",
    6: "an invalid vote",
    7: "no quorum",
    8: NOT_DELIVERED_YET,
}


@dataclass(frozen=True)
class Payout:
    """What one participant's free balance and energy holdings changed by."""

    participant_id: str
    balance_change_eur: float
    energy_received_kwh: float


@dataclass(frozen=True)
class AttestOutcome:
    """What ``attest`` did: the validators' reports, the submission, who gained what.

    Attributes
    ----------
    skipped
        Trade id -> why the contract did not settle it (e.g. no quorum).
    problems
        Validator processes that failed, and votes dropped before submission.
    certificates
        Energy certificates issued afterwards: every seller-hour whose trades are now
        all final.
    """

    payouts: list[Payout]
    validators: list[ValidatorReport]
    transactions: int
    gas_used: int
    skipped: dict[str, str]
    problems: tuple[str, ...] = ()
    certificates: tuple[Certificate, ...] = ()

    def refused(self) -> list[str]:
        """Return what at least one validator would not vouch for (each reason once)."""
        return sorted({reason for v in self.validators for reason in v.refused})

    def short(self) -> list[str]:
        """Return the meters at least one validator found short of their trades (once each)."""
        return sorted({note for v in self.validators for note in v.short})


def sign_meter_file(out_dir: Path, meter_csv: Path, signed_path: Path) -> int:
    """Sign a meter CSV with the deployment's meter keys (the meters' own job); count them.

    Raises
    ------
    InputError
        The CSV is malformed or names a meter of no participant of the deployment.
    OutputFolderError
        ``signed_path`` is a result folder's file or one gridmatch did not write.
    """
    record = read_record(record_path(out_dir))
    keystore = Keystore.open(out_dir / SETTLEMENT_DIR / "keys", create=False)
    intervals = {t.slot: (t.slot_start, t.slot_end) for t in record.trades}
    plain = read_meter_csv(meter_csv, set(record.participants()))
    signed = sign_readings(plain, keystore, record.domain, intervals)
    claim_output(signed_path)
    write_signed_readings(signed_path, record.domain, signed)
    return len(signed)


def simulate_meter_file(out_dir: Path, meter_csv: Path) -> int:
    """Write the meter CSV of honest meters for the deployment's trades; count its rows."""
    readings = simulate_readings(read_record(record_path(out_dir)))
    claim_output(meter_csv)
    write_meter_csv(meter_csv, readings)
    return len(readings)


def attest(
    out_dir: Path, readings: Path, *, rpc_url: str | None = None, advance_s: int = 0
) -> AttestOutcome:
    """Run every validator as a process of its own on the signed readings; quorums settle.

    Each validator is an operating-system process started on a job file, with its own
    copy of the readings in ``OUT_DIR/settlement/<name>/`` and the node's URL (it reads
    the accepted trades itself); it decrypts only its own key. A validator that fails
    is reported, and the others' votes still go in. Before submitting, every vote is
    checked to carry its validator's signature, once.

    Payment follows delivery: a trade whose slot has not ended by the chain's clock
    (the latest block's time) gets no vote and is reported in ``skipped``; when no open
    trade's slot has ended, nothing is started at all. ``advance_s`` moves a local
    anvil's clock forward first (a demo of a day not yet delivered; moves last only
    while the node runs, so the validators read the moved clock in this same session).

    Raises
    ------
    InputError
        The readings file is malformed or of another deployment.
    ChainError
        Too early (no open trade's slot has ended by the chain's clock), no validator
        finished, a transaction was refused, or the node failed.
    """
    path = record_path(out_dir)
    record = read_record(path)
    _check_readings_file(readings, record)
    keys = out_dir / SETTLEMENT_DIR / "keys"
    with connect(out_dir, rpc_url or record.rpc_url) as (w3, url):
        contracts = checked_contracts(w3, record)
        advance_clock(w3, advance_s)
        now = int(w3.eth.get_block("latest")["timestamp"])
        _refuse_too_early(w3, contracts["settlement"], record, now)
        reports, failed = _run_validators(out_dir, record, readings, url)
        if not reports:
            raise ChainError("no validator finished: " + "; ".join(failed))
        votes, dropped = _checked_votes(record, reports)
        # Anyone may submit signed votes: the operator does.
        sender = Sender(w3, Keystore.open(keys, create=False).role(OPERATOR))
        settled, skipped = _submit_votes(sender, contracts["settlement"], record, votes)
        paid = {m.trade_id for m in settled}
        for trade in record.trades:
            if trade.slot_end > now and trade.trade_id not in paid:
                skipped.setdefault(trade.trade_id, NOT_DELIVERED_YET)
        # Anyone may ask for the certificates of seller-hours now final: the operator does.
        issued = issue_ready(sender, record) if record.certificates is not None else []
    return AttestOutcome(
        _payouts(record, settled),
        reports,
        sender.sent,
        sender.gas_used,
        skipped,
        tuple(failed + dropped),
        tuple(issued),
    )


def _refuse_too_early(
    w3: Web3, settlement: ContractAbi, record: DeploymentRecord, now: int
) -> None:
    """Refuse to attest when no open trade's slot has ended by the chain's clock ``now``.

    The contract counts no vote before a trade's slot ends (``SettlementSlotNotEnded``):
    on a real chain the operator waits for delivery; a local anvil's clock can be moved.
    """
    states = trade_states(w3, settlement, record.trades)
    open_trades = [t for t, s in zip(record.trades, states, strict=True) if s == OPEN]
    if open_trades and all(t.slot_end > now for t in open_trades):
        first = min(open_trades, key=lambda t: t.slot_end)
        raise ChainError(
            f"too early to attest: no open trade has been delivered yet (the chain's clock is "
            f"{utc_text(now)}; the first slot, {first.slot}, ends at {utc_text(first.slot_end)}): "
            "payment follows delivery, attest after that (on a local anvil, --advance-clock-hours "
            "moves its clock)"
        )


def _check_readings_file(readings: Path, record: DeploymentRecord) -> None:
    """Read the readings once here, so a bad file is named as the user gave it."""
    document = read_signed_readings_file(readings)
    if (document.chain_id, document.settlement.lower()) != (
        record.chain_id,
        record.settlement.lower(),
    ):
        raise InputError(
            readings,
            f"signed for the deployment {document.settlement} on chain {document.chain_id}, "
            f"not this one ({record.settlement} on chain {record.chain_id})",
            field="settlement",
        )


def _run_validators(
    out_dir: Path, record: DeploymentRecord, readings: Path, rpc_url: str
) -> tuple[list[ValidatorReport], list[str]]:
    keys = out_dir / SETTLEMENT_DIR / "keys"
    started = []
    for name in sorted(record.validators):
        folder = out_dir / SETTLEMENT_DIR / name
        job = ValidatorJob(
            name=name,
            keystore=keys,
            record=record_path(out_dir),
            readings=prepare_copy(readings, folder),
            rpc_url=rpc_url,
        )
        started.append((start_validator(job, folder), folder))
    reports, failed = [], []
    for process, folder in started:
        try:
            reports.append(finish_validator(process, folder))
        except ChainError as exc:
            failed.append(str(exc))
    return reports, failed


_Vote = tuple[str, int, int, bytes]


def _checked_votes(
    record: DeploymentRecord, reports: list[ValidatorReport]
) -> tuple[dict[str, list[_Vote]], list[str]]:
    """Return each trade's votes that carry their validator's signature, once per validator.

    The contract refuses a whole vote set with one bad signature in it: one broken or
    malicious validator must not hold up everyone's trades.
    """
    known = {a.lower() for a in record.validators.values()}
    votes: dict[str, list[_Vote]] = {}
    voters: set[tuple[str, str]] = set()
    dropped = []
    for report in reports:
        for vote in report.votes:
            signature = bytes.fromhex(vote.signature.removeprefix("0x"))
            message = Attestation(
                bytes.fromhex(vote.trade_id.removeprefix("0x")), vote.delivered_wh, report.epoch
            )
            signer = signer_of(record.domain.digest(message.struct_hash()), signature)
            voter = (vote.trade_id, report.address.lower())
            if signer is None or signer.lower() != voter[1] or voter[1] not in known:
                dropped.append(f"{report.name}'s vote on {vote.trade_id}: not its signature")
                continue
            if voter in voters:
                dropped.append(f"{report.name} voted twice on {vote.trade_id}: counted once")
                continue
            voters.add(voter)
            votes.setdefault(vote.trade_id, []).append(
                (report.address, report.epoch, vote.delivered_wh, signature)
            )
    return votes, dropped


def _submit_votes(
    sender: Sender,
    settlement: ContractAbi,
    record: DeploymentRecord,
    votes: dict[str, list[_Vote]],
) -> tuple[list[_Movement], dict[str, str]]:
    """Submit every open trade's signed votes in batches.

    Returns what the contract's ``TradeSettled`` events moved, and why it skipped any
    trade (its ``SettleSkipped`` events).
    """
    states = trade_states(sender.w3, settlement, record.trades)
    items = [
        (trade.as_tuple(), votes[trade.trade_id])
        for trade, state in zip(record.trades, states, strict=True)
        if state == OPEN and trade.trade_id in votes
    ]
    settled: list[_Movement] = []
    skipped: dict[str, str] = {}
    for _, receipt, _ in in_chunks(
        sender,
        settlement,
        items,
        lambda part: ("settleBatch", [t for t, _ in part], [v for _, v in part]),
    ):
        for event in settlement.events(receipt, "TradeSettled"):
            settled.append(
                _Movement(
                    "0x" + bytes(event["tradeId"]).hex(),
                    int(event["paidToSeller"]),
                    int(event["refundedToBuyer"]),
                    int(event["paidWh"]),
                )
            )
        for event in settlement.events(receipt, "SettleSkipped"):
            skipped["0x" + bytes(event["tradeId"]).hex()] = _SKIP_REASONS.get(
                int(event["reason"]), str(event["reason"])
            )
    return settled, skipped


@dataclass(frozen=True)
class ReclaimOutcome:
    """What ``reclaim`` returned to buyers, and the certificates issued afterwards."""

    payouts: list[Payout]
    certificates: tuple[Certificate, ...] = ()


def reclaim_expired(
    out_dir: Path, *, rpc_url: str | None = None, advance_s: int = 0
) -> ReclaimOutcome:
    """Return the lock of every trade still open after the deadline to its buyer.

    ``advance_s`` moves the local chain's clock forward first (anvil only). Anyone may
    trigger a refund (it can only go to the buyer): the operator does. Seller-hours
    whose last open trades these were are then issued their certificates.
    """
    record = read_record(record_path(out_dir))
    keystore = Keystore.open(out_dir / SETTLEMENT_DIR / "keys", create=False)
    with connect(out_dir, rpc_url or record.rpc_url) as (w3, _):
        contracts = checked_contracts(w3, record)
        advance_clock(w3, advance_s)
        settlement = contracts["settlement"]
        states = trade_states(w3, settlement, record.trades)
        open_trades = [t for t, s in zip(record.trades, states, strict=True) if s == OPEN]
        sender = Sender(w3, keystore.role(OPERATOR))
        refunds = []
        for start in range(0, len(open_trades), 200):
            batch = [t.as_tuple() for t in open_trades[start : start + 200]]
            receipt = sender.transact(settlement, "reclaimBatch", batch)
            refunds += [
                _Movement("0x" + bytes(e["tradeId"]).hex(), 0, int(e["refundedToBuyer"]), 0)
                for e in settlement.events(receipt, "TradeReclaimed")
            ]
        issued = issue_ready(sender, record) if record.certificates is not None else []
    return ReclaimOutcome(_payouts(record, refunds), tuple(issued))


def balances(
    out_dir: Path, *, rpc_url: str | None = None
) -> dict[str, tuple[int, int, dict[int, int]]]:
    """Per participant id: free and locked micro-EUR, and energy Wh held per slot start."""
    record = read_record(record_path(out_dir))
    with connect(out_dir, rpc_url or record.rpc_url) as (w3, _):
        return holdings(w3, checked_contracts(w3, record), record)


@dataclass(frozen=True)
class _Movement:
    """What the contract's event says one trade moved (micro-EUR, Wh)."""

    trade_id: str
    to_seller: int
    to_buyer: int
    wh: int


def _payouts(record: DeploymentRecord, movements: list[_Movement]) -> list[Payout]:
    """Sum the events' movements per participant (free balance and energy received)."""
    trades = {t.trade_id: t for t in record.trades}
    micro_eur: dict[str, int] = defaultdict(int)
    wh: dict[str, int] = defaultdict(int)
    for moved in movements:
        trade = trades[moved.trade_id]
        micro_eur[trade.seller_id] += moved.to_seller
        micro_eur[trade.buyer_id] += moved.to_buyer
        wh[trade.buyer_id] += moved.wh
    return [
        Payout(p, micro_eur_to_eur(micro_eur[p]), wh[p] / WH_PER_KWH)
        for p in sorted(micro_eur.keys() | wh.keys())
        if micro_eur[p] or wh[p]
    ]
