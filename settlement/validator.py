"""One validator: check what the meters signed, work out each trade's delivery, vote.

Each validator runs in a process of its own, with its own key and its own copy of the
signed readings, and trusts nothing it did not check itself:

1. every order signature and every meter binding in the deployment record is checked
   against the participants' addresses (a record is a file; anyone could edit it);
2. a reading counts only if the meter bound to its participant signed it, under this
   deployment's domain, for exactly a traded slot's interval; a reading given twice
   counts once, two different readings of one meter and slot count not at all;
3. per slot, a seller's export is shared among its trades in proportion to their
   quantities (as an exchange allocates a shortfall): the same kWh is never paid
   twice, and a seller that sold more than it exported is paid for what it exported;
   the same for a buyer's import. A trade's delivery is the smaller of its two
   shares, rounded down to whole Wh;
4. sent (the seller's share) minus received (the buyer's share) may not exceed the
   loss tolerance: the slot's grid losses caused by the trades (from the clearing's
   AC power flow) plus the meters' accuracy class on both ends. Beyond it the
   validator does not vote (something between the meters is wrong);
5. it votes each trade's delivery in batches; the contract pays only when strictly
   more than two thirds of the current validators agree.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridmatch.settlement.eip712 import MeterBinding, signer_of
from gridmatch.settlement.meters import SignedReading, read_signed_readings
from gridmatch.settlement.record import DeploymentRecord, TradeRecord, read_record

# Meters of accuracy class 1 (IEC 62053-21): 1 % of the reading, on each end.
DEFAULT_ACCURACY_PER_MILLE = 10
# Trades per vote transaction, and gas per vote. A vote costs ~40k gas, the vote that
# completes a quorum ~110k more (payouts, energy tokens); which vote completes one
# depends on the other validators' votes landing first, so each transaction is given
# room for every vote to settle its trade rather than its own estimate.
VOTE_BATCH = 100
_GAS_PER_VOTE = 150_000
_GAS_PER_BATCH = 200_000


@dataclass(frozen=True)
class Deliveries:
    """What one validator found.

    Attributes
    ----------
    wh
        Trade id -> delivered Wh it votes.
    refused
        Human-readable reasons for every reading or trade it would not vouch for.
    """

    wh: dict[str, int]
    refused: tuple[str, ...]


@dataclass
class _Ledger:
    """Per slot interval and participant: verified Wh and the trades sharing them."""

    export_wh: dict[tuple[int, str], int] = field(default_factory=dict)
    import_wh: dict[tuple[int, str], int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


def deliveries(
    record: DeploymentRecord,
    readings: Sequence[SignedReading],
    accuracy_per_mille: int = DEFAULT_ACCURACY_PER_MILLE,
) -> Deliveries:
    """Work out the Wh each trade delivered, from verified signed readings only."""
    ledger = _Ledger()
    trusted = _trusted_trades(record, ledger)
    meters = _bound_meters(record, ledger)
    intervals = {(t.slot_start, t.slot_end) for t in trusted}
    _take_readings(record, readings, meters, intervals, ledger)
    sold: dict[tuple[int, str], int] = defaultdict(int)
    bought: dict[tuple[int, str], int] = defaultdict(int)
    for trade in trusted:
        sold[trade.slot_start, trade.seller_id] += trade.quantity_wh
        bought[trade.slot_start, trade.buyer_id] += trade.quantity_wh
    _note_shortfalls(sold, ledger.export_wh, "exported", "sold", ledger)
    _note_shortfalls(bought, ledger.import_wh, "imported", "bought", ledger)
    votes: dict[str, int] = {}
    for trade in trusted:
        voted = _delivery(trade, record, ledger, sold, bought, accuracy_per_mille)
        if voted is not None:
            votes[trade.trade_id] = voted
    return Deliveries(votes, tuple(ledger.refused))


def _trusted_trades(record: DeploymentRecord, ledger: _Ledger) -> list[TradeRecord]:
    """Return the record's trades whose two orders carry their participants' valid signatures."""
    domain = record.domain
    orders = {}
    for order in record.orders:
        digest = domain.digest(order.message().struct_hash())
        signature = bytes.fromhex(order.signature.removeprefix("0x"))
        if "0x" + digest.hex() != order.digest or signer_of(digest, signature) != order.participant:
            ledger.refused.append(f"order {order.order_id}: not signed by {order.participant_id}")
            continue
        orders[order.digest] = order
    trusted = []
    for trade in record.trades:
        buy, sell = orders.get(trade.buy_order), orders.get(trade.sell_order)
        if (
            buy is None
            or sell is None
            or (buy.participant, sell.participant)
            != (
                trade.buyer,
                trade.seller,
            )
        ):
            ledger.refused.append(f"trade {_name(trade)}: its orders are not signed as recorded")
            continue
        trusted.append(trade)
    return trusted


def _bound_meters(record: DeploymentRecord, ledger: _Ledger) -> dict[str, str]:
    """Meter address -> participant id, for bindings the participant really signed."""
    participants = record.participants()
    meters = {}
    for binding in record.meters:
        message = MeterBinding(binding.participant, binding.meter)
        digest = record.domain.digest(message.struct_hash())
        signer = signer_of(digest, bytes.fromhex(binding.signature.removeprefix("0x")))
        if (
            participants.get(binding.participant_id) != binding.participant
            or signer != binding.participant
        ):
            ledger.refused.append(f"meter binding of {binding.participant_id}: not signed by it")
            continue
        meters[binding.meter] = binding.participant_id
    return meters


def _take_readings(
    record: DeploymentRecord,
    readings: Sequence[SignedReading],
    meters: dict[str, str],
    intervals: set[tuple[int, int]],
    ledger: _Ledger,
) -> None:
    """Keep the readings whose meter signed them for a traded slot; refuse the rest."""
    seen: dict[tuple[str, int], SignedReading] = {}
    conflicting: set[tuple[str, int]] = set()
    for reading in readings:
        where = f"reading of meter {reading.meter_id} at {reading.interval_start}"
        digest = record.domain.digest(reading.message().struct_hash())
        signer = signer_of(digest, bytes.fromhex(reading.signature.removeprefix("0x")))
        if signer is None or signer != reading.meter:
            ledger.refused.append(f"{where}: forged (not signed by its meter for this deployment)")
            continue
        if meters.get(reading.meter) != reading.meter_id:
            ledger.refused.append(f"{where}: the meter is not bound to {reading.meter_id}")
            continue
        if (reading.interval_start, reading.interval_end) not in intervals:
            ledger.refused.append(f"{where}: not the interval of a traded slot")
            continue
        key = (reading.meter_id, reading.interval_start)
        if key in seen:
            if seen[key] == reading:
                ledger.refused.append(f"{where}: replayed (given twice); counted once")
            else:
                conflicting.add(key)
            continue
        seen[key] = reading
    for key in sorted(conflicting):
        ledger.refused.append(
            f"reading of meter {key[0]} at {key[1]}: two different signed readings; neither counts"
        )
        seen.pop(key)
    for (participant_id, start), reading in seen.items():
        ledger.export_wh[start, participant_id] = reading.exported_wh
        ledger.import_wh[start, participant_id] = reading.imported_wh


def _note_shortfalls(
    traded: dict[tuple[int, str], int],
    metered: dict[tuple[int, str], int],
    verb: str,
    noun: str,
    ledger: _Ledger,
) -> None:
    for (start, participant_id), wh in sorted(traded.items()):
        have = metered.get((start, participant_id))
        if have is not None and have < wh:
            ledger.refused.append(
                f"{participant_id} {verb} {have} Wh at {start} for {wh} Wh {noun}: each trade is "
                "paid its share, the same Wh is never paid twice"
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
    export = ledger.export_wh.get((trade.slot_start, trade.seller_id))
    imported = ledger.import_wh.get((trade.slot_start, trade.buyer_id))
    if export is None or imported is None:
        missing = trade.seller_id if export is None else trade.buyer_id
        ledger.refused.append(f"trade {_name(trade)}: no valid reading of {missing}'s meter")
        return None
    sent = _share(trade.quantity_wh, export, sold[trade.slot_start, trade.seller_id])
    received = _share(trade.quantity_wh, imported, bought[trade.slot_start, trade.buyer_id])
    losses = record.trade_losses_share.get(str(trade.slot), 0.0)
    allowed = math.ceil(sent * (losses + 2 * accuracy_per_mille / 1000)) + 1
    if sent - received > allowed:
        ledger.refused.append(
            f"trade {_name(trade)}: {trade.seller_id} sent {sent} Wh, {trade.buyer_id} received "
            f"{received} Wh: more lost than the slot's losses and the meters' accuracy allow "
            f"({allowed} Wh)"
        )
        return None
    return min(sent, received)


def _share(quantity_wh: int, metered_wh: int, traded_wh: int) -> int:
    """Return a trade's pro-rata share of what a meter measured, whole Wh, at most its quantity."""
    if metered_wh >= traded_wh:
        return quantity_wh
    return quantity_wh * metered_wh // traded_wh


def _name(trade: TradeRecord) -> str:
    return f"{trade.buy_order_id} <- {trade.sell_order_id} (slot {trade.slot})"


# ---------------------------------------------------------------- the process


@dataclass(frozen=True)
class ValidatorJob:
    """What a validator process is given: its key, its own copy of the readings, the node."""

    name: str
    keystore: Path
    record: Path
    readings: Path
    rpc_url: str
    accuracy_per_mille: int = DEFAULT_ACCURACY_PER_MILLE


@dataclass(frozen=True)
class ValidatorReport:
    """What a validator process did."""

    name: str
    address: str
    votes: int
    skipped: int
    transactions: int
    gas_used: int
    refused: tuple[str, ...]
    seconds: float


def prepare_copy(readings: Path, folder: Path) -> Path:
    """Give a validator its own copy of the readings (what it reads, nobody else changes)."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / "readings.json"
    shutil.copyfile(readings, copy)
    return copy


def run_validator(job: ValidatorJob) -> ValidatorReport:
    """Run one validator: decrypt its key, check the readings, vote (a process of its own)."""
    from web3 import Web3

    from gridmatch.settlement.abi_calls import ContractAbi, call_view
    from gridmatch.settlement.artifacts import load
    from gridmatch.settlement.keys import Keystore
    from gridmatch.settlement.transactions import TX_GAS_CAP, Sender

    began = time.perf_counter()
    record = read_record(job.record)
    account = Keystore.open(job.keystore, create=False).role(job.name)
    found = deliveries(record, read_signed_readings(job.readings), job.accuracy_per_mille)
    w3 = Web3(Web3.HTTPProvider(job.rpc_url, request_kwargs={"timeout": 300}))
    settlement = ContractAbi(record.settlement, tuple(load("Settlement").abi))
    sender = Sender(w3, account)
    trades = [t for t in record.trades if t.trade_id in found.wh]
    states = _states(w3, settlement, trades, call_view)
    open_trades = [t for t, state in zip(trades, states, strict=True) if state == _OPEN]
    hashes = []
    for start in range(0, len(open_trades), VOTE_BATCH):
        batch = open_trades[start : start + VOTE_BATCH]
        data = settlement.calldata(
            "attestBatch", [t.as_tuple() for t in batch], [found.wh[t.trade_id] for t in batch]
        )
        gas = min(_GAS_PER_BATCH + _GAS_PER_VOTE * len(batch), TX_GAS_CAP)
        hashes.append(sender.send(settlement.address, data, abi=settlement.abi, gas=gas))
    receipts = sender.wait(hashes, settlement.abi)
    skipped = sum(_count_events(r, settlement, "VoteSkipped") for r in receipts)
    return ValidatorReport(
        job.name,
        account.address,
        len(open_trades) - skipped,
        skipped,
        sender.sent,
        sender.gas_used,
        found.refused,
        time.perf_counter() - began,
    )


_OPEN = 1
_STATES_GROUP = 1000


def _states(w3: Any, settlement: Any, trades: list[TradeRecord], call_view: Any) -> list[int]:
    states: list[int] = []
    for start in range(0, len(trades), _STATES_GROUP):
        ids = [bytes.fromhex(t.trade_id[2:]) for t in trades[start : start + _STATES_GROUP]]
        (found,) = call_view(w3, settlement, "tradeStates", ids)
        states += [int(s) for s in found]
    return states


def _count_events(receipt: Any, contract: Any, name: str) -> int:
    topic = contract.event_topic(name)
    return sum(1 for log in receipt["logs"] if log["topics"] and bytes(log["topics"][0]) == topic)
