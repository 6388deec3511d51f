"""``OUT_DIR/settlement/deployment.json``: what ``settle`` did, validated when read back.

It holds the contract addresses, every signed order, every trade as the contract
stores it, the participants' signed meter bindings, the trades dropped (a buyer short
of escrow) or left off chain (below 1 Wh), and the loss shares validators allow. It
is public: keys stay in the keystore. Validators check every signature in it again
rather than trusting it.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Literal

import pydantic

from gridmatch.errors import InputError
from gridmatch.results_io.layout import SETTLEMENT_DIR
from gridmatch.settlement.eip712 import Domain, Order
from gridmatch.settlement.fields import Address, Bytes32Hex, SignatureHex, Uint64
from gridmatch.units import WH_PER_KWH
from gridmatch.user_files import RECORD_LIMIT_BYTES, parse_json, read_text, validated

RECORD_FILE = "deployment.json"


def lock_micro_eur(
    quantity_wh: int, price_micro_eur_per_kwh: int, fee_micro_eur_per_kwh: int
) -> int:
    """Return ``Settlement.lockAmount``: quantity x (price + fee), rounded up to a micro-EUR."""
    total = quantity_wh * (price_micro_eur_per_kwh + fee_micro_eur_per_kwh)
    return -(-total // WH_PER_KWH)


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True)


class SignedOrder(_Model):
    """An order as its participant signed it (fields as ``Settlement.Order``)."""

    order_id: str
    participant_id: str
    participant: Address
    is_buy: bool
    slot_start: Uint64
    slot_end: Uint64
    quantity_wh: Uint64
    limit_micro_eur_per_kwh: Uint64
    max_fee_micro_eur_per_kwh: Uint64
    expiry: Uint64
    nonce: Uint64
    digest: Bytes32Hex
    signature: SignatureHex

    def message(self) -> Order:
        """Return the signed message."""
        return Order(**{f.name: getattr(self, f.name) for f in fields(Order)})

    def as_input(self) -> tuple[object, ...]:
        """Return the order as ``Settlement.Order`` takes it."""
        return self.message().as_tuple()


class TradeRecord(_Model):
    """A trade the contract accepted, with its keys in trades.csv.

    The fields from ``round_id`` on are ``Settlement.Trade``, in order.
    """

    trade_id: Bytes32Hex
    slot: int
    buy_order_id: str
    sell_order_id: str
    buyer_id: str
    seller_id: str
    round_id: Uint64
    buy_order: Bytes32Hex
    sell_order: Bytes32Hex
    buyer: Address
    seller: Address
    slot_start: Uint64
    slot_end: Uint64
    quantity_wh: Uint64
    price_micro_eur_per_kwh: Uint64
    fee_micro_eur_per_kwh: Uint64

    def as_tuple(self) -> tuple[object, ...]:
        """Return the trade as ``Settlement.Trade`` takes it."""
        return (
            self.round_id,
            bytes.fromhex(self.buy_order.removeprefix("0x")),
            bytes.fromhex(self.sell_order.removeprefix("0x")),
            self.buyer,
            self.seller,
            self.slot_start,
            self.slot_end,
            self.quantity_wh,
            self.price_micro_eur_per_kwh,
            self.fee_micro_eur_per_kwh,
        )

    @property
    def key(self) -> tuple[int, str, str]:
        """``(slot, buy_order_id, sell_order_id)`` as in trades.csv."""
        return (self.slot, self.buy_order_id, self.sell_order_id)

    def lock_micro_eur(self) -> int:
        """Return what the contract locked for it."""
        return lock_micro_eur(
            self.quantity_wh, self.price_micro_eur_per_kwh, self.fee_micro_eur_per_kwh
        )


class MeterBindingRecord(_Model):
    """The grid operator's certificate that a meter key measures a participant's connection."""

    participant_id: str
    participant: Address
    meter: Address
    signature: SignatureHex


class DroppedTrade(_Model):
    """A trade the contract left out of the round, and why.

    ``reason`` is ``escrow`` (the buyer's free balance did not cover the lock:
    ``required_micro_eur`` and ``available_micro_eur``; the contract's ``TradeDropped``),
    ``order_cancelled`` (its signer cancelled one of its orders; ``participant_id``) or
    ``hour_certified`` (the seller's hour is certified already; the contract's
    ``TradeWithdrawn``, amounts 0).
    """

    slot: int
    buy_order_id: str
    sell_order_id: str
    buyer_id: str
    required_micro_eur: int
    available_micro_eur: int
    reason: Literal["escrow", "order_cancelled", "hour_certified"] = "escrow"
    participant_id: str = ""


class UnsettledTrade(_Model):
    """Energy of a trade that is not settled on chain, and why."""

    slot: int
    buy_order_id: str
    sell_order_id: str
    traded_kwh: float
    settled_wh: int
    unsettled_kwh: float
    reason: str


class DeploymentRecord(_Model):
    """Everything ``attest``, ``reclaim`` and the validators need after ``settle``."""

    rpc_url: str | None
    chain_id: Uint64
    settlement: Address
    payment: Address
    energy: Address
    registry: Address
    # The settlement's certificates contract; None in records made before certificates.
    certificates: Address | None = None
    operator: Address
    validators: dict[str, Address]
    round_id: Uint64
    deadline: Uint64
    tolerance_per_mille: Uint64
    trade_losses_share: dict[str, float]
    orders: list[SignedOrder]
    trades: list[TradeRecord]
    meters: list[MeterBindingRecord]
    dropped: list[DroppedTrade]
    unsettled: list[UnsettledTrade]
    total_locked_micro_eur: int
    commit_transactions: int
    commit_gas: int

    @property
    def domain(self) -> Domain:
        """The signing domain of the deployment."""
        return Domain(self.chain_id, self.settlement)

    def participants(self) -> dict[str, str]:
        """Participant id -> address, over every order."""
        return {o.participant_id: o.participant for o in self.orders}


def record_path(out_dir: Path) -> Path:
    """Where a result folder's deployment record lies."""
    return out_dir / SETTLEMENT_DIR / RECORD_FILE


def read_record(path: Path) -> DeploymentRecord:
    """Read and validate a deployment record.

    Raises
    ------
    InputError
        Missing (no settlement yet), unreadable, or not a deployment record, naming the
        field of the first problem.
    """
    if not path.exists():
        raise InputError(path, "no settlement here: run `gridmatch settle` first")
    document = parse_json(read_text(path, RECORD_LIMIT_BYTES, "deployment record"), path)
    return validated(DeploymentRecord, document, path, "deployment record")
