"""One validator: check what the meters signed, work out each trade's delivery, vote.

Each validator runs in a process of its own, with its own key and its own copy of the
signed readings, and trusts nothing it did not check itself:

1. the trades are those the contract accepted (its ``TradeAdded`` events, read from the
   node): a trade of the deployment record counts only if its id, buyer, seller and Wh
   are the chain's and its two orders carry their participants' valid signatures
   (which fix its slot); a trade on chain that the record does not account for makes
   the validator abstain on every trade of its buyer and seller (their meters' energy
   would be shared with a trade it cannot place);
2. which meter key measures which participant's connection is what the grid operator
   certified (``Settlement.feeRecipient``, read from the chain): one meter per
   participant, one participant per meter; a reading counts only if that meter signed
   it, under this deployment's domain, for exactly a traded slot's interval, and only
   once that interval has ended by the chain's clock (the latest block's time: a
   reading of a slot still running is not final, and the contract counts no vote on a
   trade before its slot's end); the same reading given twice counts once, two
   different readings of one meter and slot count not at all. Everything is keyed by
   addresses, never by the ids the files show;
3. per slot, a seller's export is shared among its trades in proportion to their
   quantities (as an exchange allocates a shortfall): the same Wh is never paid twice,
   and a seller that sold more than it exported is paid for what it exported; the same
   for a buyer's import. A trade's delivery is the smaller of its two shares, rounded
   down to whole Wh; without a valid reading of the seller's meter there is no vote;
   without one of the buyer's, the seller's share is voted (a buyer cannot escape
   paying by hiding its meter);
4. sent (the seller's share) minus received (the buyer's share) may not exceed the
   loss tolerance: the slot's grid losses caused by the trades (from the clearing's
   AC power flow) plus the meters' accuracy class on both ends. Beyond it the
   validator does not vote (something between the meters is wrong);
5. it signs its vote on each trade's delivery (an EIP-712 ``Attestation`` under the
   deployment's domain and its registration epoch); anyone may submit the signed votes,
   and the contract pays only when strictly more than two thirds of the current
   validators' signatures agree.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydantic

from gridmatch.errors import ChainError, GridmatchError
from gridmatch.results_io.atomic import write_file_atomically
from gridmatch.settlement.chain_view import ChainView, read_chain_view, utc_text
from gridmatch.settlement.eip712 import MeterBinding, signer_of, trade_id_of
from gridmatch.settlement.meters import SignedReading, read_signed_readings
from gridmatch.settlement.record import DeploymentRecord, SignedOrder, TradeRecord, read_record

# Meters of accuracy class 1 (IEC 62053-21): 1 % of the reading, on each end.
ACCURACY_PER_MILLE = 10


@dataclass(frozen=True)
class Deliveries:
    """What one validator found.

    Attributes
    ----------
    wh
        Trade id -> delivered Wh it votes.
    refused
        Human-readable reasons for every reading or trade it would not vouch for.
    short
        Meters that measured less than was traded (beyond what the grid's losses
        explain), and buyers paid on their seller's meter alone.
    """

    wh: dict[str, int]
    refused: tuple[str, ...]
    short: tuple[str, ...] = ()


@dataclass
class _Ledger:
    """Per slot start and participant address: verified Wh; and what was noted."""

    names: dict[str, str]
    export_wh: dict[tuple[int, str], int] = field(default_factory=dict)
    import_wh: dict[tuple[int, str], int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    short: list[str] = field(default_factory=list)

    def name(self, address: str) -> str:
        """Return a participant's id for messages (its address if the record names none)."""
        return self.names.get(address, address)


def deliveries(
    record: DeploymentRecord,
    readings: Sequence[SignedReading],
    chain: ChainView,
    accuracy_per_mille: int = ACCURACY_PER_MILLE,
) -> Deliveries:
    """Work out the Wh each trade delivered, from the chain and verified signed readings."""
    orders = _signed_orders(record)
    ledger = _Ledger({o.participant: o.participant_id for o in orders.values()})
    trusted = _delivered(_trusted_trades(record, orders, chain, ledger), chain, ledger)
    meters = _certified_meters(record, chain, ledger)
    intervals = {(t.slot_start, t.slot_end) for t in trusted}
    _take_readings(record, readings, meters, intervals, chain.timestamp, ledger)
    slot_of = {t.slot_start: t.slot for t in trusted}
    sold: dict[tuple[int, str], int] = defaultdict(int)
    bought: dict[tuple[int, str], int] = defaultdict(int)
    for trade in trusted:
        sold[trade.slot_start, trade.seller] += trade.quantity_wh
        bought[trade.slot_start, trade.buyer] += trade.quantity_wh
    _note_shortfalls(sold, ledger.export_wh, "exported", "sold", ledger, lambda _s, _w: 0)
    _note_shortfalls(
        bought,
        ledger.import_wh,
        "imported",
        "bought",
        ledger,
        lambda start, wh: _loss_allowance_wh(wh, record, slot_of[start], accuracy_per_mille),
    )
    votes: dict[str, int] = {}
    for trade in trusted:
        voted = _delivery(trade, record, ledger, sold, bought, accuracy_per_mille)
        if voted is not None:
            votes[trade.trade_id] = voted
    return Deliveries(votes, tuple(ledger.refused), tuple(ledger.short))


def _signed_orders(record: DeploymentRecord) -> dict[str, SignedOrder]:
    """Return the record's orders whose signature is their participant's, by digest."""
    domain = record.domain
    found = {}
    for order in record.orders:
        digest = domain.digest(order.message().struct_hash())
        signature = bytes.fromhex(order.signature.removeprefix("0x"))
        if "0x" + digest.hex() == order.digest.lower() and _same(
            signer_of(digest, signature), order.participant
        ):
            found[order.digest.lower()] = order
    return found


def _trusted_trades(
    record: DeploymentRecord,
    orders: dict[str, SignedOrder],
    chain: ChainView,
    ledger: _Ledger,
) -> list[TradeRecord]:
    """Return the record's trades that are the chain's, of validly signed orders."""
    trusted, placed = [], set()
    for trade in record.trades:
        problem = _trade_problem(trade, orders, chain)
        if problem is not None:
            ledger.refused.append(f"trade {_name(trade)}: {problem}")
            continue
        trusted.append(trade)
        placed.add(trade.trade_id.lower())
    # A trade on chain the validator cannot place in a slot shares its participants'
    # metered energy unknowably: abstain on everything of theirs.
    tainted = set()
    for trade_id, added in chain.added.items():
        if trade_id not in placed:
            tainted |= {added.buyer, added.seller}
            ledger.refused.append(
                f"trade {trade_id} of {ledger.name(added.buyer)} <- {ledger.name(added.seller)} "
                "is on chain but not in the record as signed: no vote on their trades"
            )
    return [t for t in trusted if t.buyer not in tainted and t.seller not in tainted]


def _delivered(trades: list[TradeRecord], chain: ChainView, ledger: _Ledger) -> list[TradeRecord]:
    """Return the trades whose slot has ended by the chain's clock; note the others.

    All trades of a slot share its end, so a slot's pro-rata shares are never split
    between delivered and undelivered trades.
    """
    ended = [t for t in trades if t.slot_end <= chain.timestamp]
    for trade in trades:
        if trade.slot_end > chain.timestamp:
            ledger.refused.append(
                f"trade {_name(trade)}: its slot ends at {utc_text(trade.slot_end)}, after the "
                f"chain's clock ({utc_text(chain.timestamp)}): not delivered yet, no vote"
            )
    return ended


def _trade_problem(
    trade: TradeRecord, orders: dict[str, SignedOrder], chain: ChainView
) -> str | None:
    """Return why a record trade cannot be trusted, or ``None``."""
    buy, sell = orders.get(trade.buy_order.lower()), orders.get(trade.sell_order.lower())
    if buy is None or sell is None or not buy.is_buy or sell.is_buy:
        return "its orders are not signed as recorded"
    trade_id = trade_id_of(
        trade.round_id,
        bytes.fromhex(trade.buy_order.removeprefix("0x")),
        bytes.fromhex(trade.sell_order.removeprefix("0x")),
    )
    added = chain.added.get("0x" + trade_id.hex())
    if trade.trade_id.lower() != "0x" + trade_id.hex() or added is None:
        return "not a trade the contract accepted"
    as_signed = (
        _same(trade.buyer, buy.participant)
        and _same(trade.seller, sell.participant)
        and _same(added.buyer, buy.participant)
        and _same(added.seller, sell.participant)
        and added.quantity_wh == trade.quantity_wh
        and (trade.slot_start, trade.slot_end) == (buy.slot_start, buy.slot_end)
        and (trade.slot_start, trade.slot_end) == (sell.slot_start, sell.slot_end)
    )
    return None if as_signed else "the record differs from the chain or the signed orders"


def _certified_meters(
    record: DeploymentRecord, chain: ChainView, ledger: _Ledger
) -> dict[str, str]:
    """Meter address (lower case) -> participant address, as the grid operator certified."""
    certified: dict[str, set[str]] = defaultdict(set)
    for binding in record.meters:
        message = MeterBinding(binding.participant, binding.meter)
        digest = record.domain.digest(message.struct_hash())
        signer = signer_of(digest, bytes.fromhex(binding.signature.removeprefix("0x")))
        if not _same(signer, chain.grid_operator):
            ledger.refused.append(
                f"meter binding of {binding.participant_id}: not certified by the grid operator"
            )
            continue
        certified[binding.meter.lower()].add(binding.participant)
    per_participant: dict[str, set[str]] = defaultdict(set)
    for meter, participants in certified.items():
        for participant in participants:
            per_participant[participant].add(meter)
    meters = {}
    for meter, participants in sorted(certified.items()):
        (participant, *others) = sorted(participants)
        if others or len(per_participant[participant]) > 1:
            ledger.refused.append(
                f"meter {meter}: certified for {len(participants)} participant(s), its "
                "participant for several meters: none of them counts"
            )
            continue
        meters[meter] = participant
    return meters


def _take_readings(
    record: DeploymentRecord,
    readings: Sequence[SignedReading],
    meters: dict[str, str],
    intervals: set[tuple[int, int]],
    now: int,
    ledger: _Ledger,
) -> None:
    """Keep the readings a certified meter signed for a traded slot ended by ``now``.

    ``now`` is the chain's clock; every other reading is refused, with its reason.
    """
    seen: dict[tuple[str, int], SignedReading] = {}
    conflicting: set[tuple[str, int]] = set()
    for reading in readings:
        where = f"reading of meter {reading.meter_id} at {reading.interval_start}"
        digest = record.domain.digest(reading.message().struct_hash())
        signer = signer_of(digest, bytes.fromhex(reading.signature.removeprefix("0x")))
        if signer is None or not _same(signer, reading.meter):
            ledger.refused.append(f"{where}: forged (not signed by its meter for this deployment)")
            continue
        participant = meters.get(signer.lower())
        if participant is None:
            ledger.refused.append(f"{where}: the meter is not certified for a participant")
            continue
        if reading.interval_end > now:
            ledger.refused.append(
                f"{where}: its interval ends at {utc_text(reading.interval_end)}, after the "
                f"chain's clock ({utc_text(now)}): not final"
            )
            continue
        if (reading.interval_start, reading.interval_end) not in intervals:
            ledger.refused.append(f"{where}: not the interval of a traded slot")
            continue
        key = (participant, reading.interval_start)
        if key in seen:
            # The message, not the signature: a second signature of the same reading
            # is the same reading (and cannot make the first one not count).
            if seen[key].message() == reading.message():
                ledger.refused.append(f"{where}: replayed (given twice); counted once")
            else:
                conflicting.add(key)
            continue
        seen[key] = reading
    for participant, start in sorted(conflicting):
        ledger.refused.append(
            f"reading of {ledger.name(participant)}'s meter at {start}: two different signed "
            "readings; neither counts"
        )
        seen.pop((participant, start))
    for (participant, start), reading in seen.items():
        ledger.export_wh[start, participant] = reading.exported_wh
        ledger.import_wh[start, participant] = reading.imported_wh


def _note_shortfalls(
    traded: dict[tuple[int, str], int],
    metered: dict[tuple[int, str], int],
    verb: str,
    noun: str,
    ledger: _Ledger,
    allowance_wh: Callable[[int, int], int],
) -> None:
    """Note each meter that measured less than its trades, beyond ``allowance_wh(start, wh)``."""
    for (start, participant), wh in sorted(traded.items()):
        have = metered.get((start, participant))
        if have is not None and have < wh - allowance_wh(start, wh):
            ledger.short.append(
                f"{ledger.name(participant)} {verb} {have} Wh at {start} for {wh} Wh {noun}: "
                "each trade is paid its share, the same Wh is never paid twice"
            )


def _delivery(
    trade: TradeRecord,
    record: DeploymentRecord,
    ledger: _Ledger,
    sold: dict[tuple[int, str], int],
    bought: dict[tuple[int, str], int],
    accuracy_per_mille: int,
) -> int | None:
    """Return the Wh this validator votes for ``trade``, or ``None`` if it cannot vouch for it."""
    export = ledger.export_wh.get((trade.slot_start, trade.seller))
    if export is None:
        ledger.refused.append(
            f"trade {_name(trade)}: no valid reading of {ledger.name(trade.seller)}'s meter"
        )
        return None
    sent = _share(trade.quantity_wh, export, sold[trade.slot_start, trade.seller])
    imported = ledger.import_wh.get((trade.slot_start, trade.buyer))
    if imported is None:
        ledger.short.append(
            f"trade {_name(trade)}: no valid reading of {ledger.name(trade.buyer)}'s meter; "
            "paid on the seller's meter"
        )
        return sent
    received = _share(trade.quantity_wh, imported, bought[trade.slot_start, trade.buyer])
    allowed = _loss_allowance_wh(sent, record, trade.slot, accuracy_per_mille)
    if sent - received > allowed:
        ledger.refused.append(
            f"trade {_name(trade)}: {ledger.name(trade.seller)} sent {sent} Wh, "
            f"{ledger.name(trade.buyer)} received {received} Wh: more lost than the slot's "
            f"losses and the meters' accuracy allow ({allowed} Wh)"
        )
        return None
    return min(sent, received)


def _loss_allowance_wh(
    sent_wh: int, record: DeploymentRecord, slot: int, accuracy_per_mille: int
) -> int:
    """Return how many of ``sent_wh`` may go missing: the slot's losses and meter accuracy."""
    losses = record.trade_losses_share.get(str(slot), 0.0)
    return math.ceil(sent_wh * (losses + 2 * accuracy_per_mille / 1000)) + 1


def _same(a: str | None, b: str | None) -> bool:
    """Return whether two addresses are the same (checksummed or not)."""
    return a is not None and b is not None and a.lower() == b.lower()


def _share(quantity_wh: int, metered_wh: int, traded_wh: int) -> int:
    """Return a trade's pro-rata share of what a meter measured, whole Wh, at most its quantity."""
    if metered_wh >= traded_wh:
        return quantity_wh
    return quantity_wh * metered_wh // traded_wh


def _name(trade: TradeRecord) -> str:
    return f"{trade.buy_order_id} <- {trade.sell_order_id} (slot {trade.slot})"


# ---------------------------------------------------------------- the process


class ValidatorJob(pydantic.BaseModel):
    """What a validator process is given: its key and its own copy of the readings."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str
    keystore: Path
    record: Path
    readings: Path
    rpc_url: str


class SignedVoteRecord(pydantic.BaseModel):
    """One vote as the validator signed it (EIP-712 ``Attestation``)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True)

    trade_id: str
    delivered_wh: int
    signature: str


class ValidatorReport(pydantic.BaseModel):
    """What a validator process did: its signed votes, and what it refused."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str
    address: str
    epoch: int
    votes: tuple[SignedVoteRecord, ...]
    refused: tuple[str, ...]
    short: tuple[str, ...]
    seconds: float


JOB_FILE = "job.json"
REPORT_FILE = "report.json"


def start_validator(job: ValidatorJob, folder: Path) -> subprocess.Popen[bytes]:
    """Start a validator as an operating-system process of its own, on its job file."""
    (folder / JOB_FILE).write_text(job.model_dump_json(), encoding="utf-8")
    (folder / REPORT_FILE).unlink(missing_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "gridmatch.settlement.validator", str(folder / JOB_FILE)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish_validator(process: subprocess.Popen[bytes], folder: Path) -> ValidatorReport:
    """Wait for a validator process and read its report.

    Raises
    ------
    ChainError
        The process failed (its last error line is in the message).
    """
    _, stderr = process.communicate()
    report = folder / REPORT_FILE
    if process.returncode != 0 or not report.is_file():
        lines = stderr.decode(errors="replace").strip().splitlines()
        raise ChainError(f"validator {folder.name} failed: {lines[-1] if lines else 'no output'}")
    return ValidatorReport.model_validate_json(report.read_text(encoding="utf-8"))


def prepare_copy(readings: Path, folder: Path) -> Path:
    """Give a validator its own copy of the readings (what it reads, nobody else changes)."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / "readings.json"
    shutil.copyfile(readings, copy)
    return copy


def run_validator(job: ValidatorJob) -> ValidatorReport:
    """Run one validator: decrypt its own key, check everything, sign its votes."""
    from gridmatch.settlement.eip712 import Attestation, sign
    from gridmatch.settlement.keys import Keystore

    began = time.perf_counter()
    record = read_record(job.record)
    account = Keystore.open(job.keystore, create=False).signing_key(job.name)
    chain = read_chain_view(job.rpc_url, record.settlement, account.address)
    if chain.chain_id != record.chain_id:
        raise ChainError(
            f"the deployment record is of chain {record.chain_id}, the node's is {chain.chain_id}"
        )
    found = deliveries(record, read_signed_readings(job.readings), chain)
    epoch = chain.epoch  # the registration it votes under, as the registry says
    votes = []
    for trade_id, wh in sorted(found.wh.items()):
        message = Attestation(bytes.fromhex(trade_id.removeprefix("0x")), wh, epoch)
        signature = sign(account, record.domain.digest(message.struct_hash()))
        votes.append(
            SignedVoteRecord(trade_id=trade_id, delivered_wh=wh, signature="0x" + signature.hex())
        )
    return ValidatorReport(
        name=job.name,
        address=account.address,
        epoch=epoch,
        votes=tuple(votes),
        refused=found.refused,
        short=found.short,
        seconds=time.perf_counter() - began,
    )


def _main(job_file: str) -> int:
    """Entry of a validator process: run its job, write its report next to the job."""
    path = Path(job_file)
    try:
        job = ValidatorJob.model_validate_json(path.read_text(encoding="utf-8"))
        report = run_validator(job)
    except GridmatchError as exc:
        print(f"{exc.label}: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    write_file_atomically(path.parent / REPORT_FILE, report.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
