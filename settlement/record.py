"""``OUT_DIR/settlement/deployment.json``: what ``settle`` did, validated when read back.

It holds the contract addresses, every signed order, every trade as the contract
stores it, the participants' signed meter bindings, the trades dropped (a buyer short
of escrow) or left off chain (below 1 Wh), and the loss shares validators allow. It
is public: keys stay in the keystore. Validators check every signature in it again
rather than trusting it.
"""

from __future__ import annotations

from pathlib import Path

import pydantic

from gridmatch.errors import InputError
from gridmatch.settlement.eip712 import Domain, Order
from gridmatch.user_files import RECORD_LIMIT_BYTES, read_text

RECORD_FILE = "deployment.json"


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True)


class SignedOrder(_Model):
    """An order as its participant signed it (fields as ``Settlement.Order``)."""

    order_id: str
    participant_id: str
    participant: str
    is_buy: bool
    slot_start: int
    slot_end: int
    quantity_wh: int
    limit_micro_eur_per_kwh: int
    max_fee_micro_eur_per_kwh: int
    expiry: int
    nonce: int
    digest: str
    signature: str

    def message(self) -> Order:
        """Return the signed message."""
        return Order(
            self.participant,
            self.is_buy,
            self.slot_start,
            self.slot_end,
            self.quantity_wh,
            self.limit_micro_eur_per_kwh,
            self.max_fee_micro_eur_per_kwh,
            self.expiry,
            self.nonce,
        )

    def as_input(self) -> tuple[object, ...]:
        """Return the order as ``Settlement.Order`` takes it."""
        return self.message().as_tuple()


class TradeRecord(_Model):
    """A trade the contract accepted, with its keys in trades.csv.

    The fields from ``round_id`` on are ``Settlement.Trade``, in order.
    """

    trade_id: str
    slot: int
    buy_order_id: str
    sell_order_id: str
    buyer_id: str
    seller_id: str
    round_id: int
    buy_order: str
    sell_order: str
    buyer: str
    seller: str
    slot_start: int
    slot_end: int
    quantity_wh: int
    price_micro_eur_per_kwh: int
    fee_micro_eur_per_kwh: int

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
        total = self.quantity_wh * (self.price_micro_eur_per_kwh + self.fee_micro_eur_per_kwh)
        return -(-total // 1000)


class MeterBindingRecord(_Model):
    """A participant's signed statement that a meter key measures its connection."""

    participant_id: str
    participant: str
    meter: str
    signature: str


class DroppedTrade(_Model):
    """A trade the contract left out: its buyer's free balance did not cover the lock."""

    slot: int
    buy_order_id: str
    sell_order_id: str
    buyer_id: str
    required_micro_eur: int
    available_micro_eur: int


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
    chain_id: int
    settlement: str
    payment: str
    energy: str
    registry: str
    operator: str
    validators: dict[str, str]
    round_id: int
    deadline: int
    tolerance_per_mille: int
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
    return out_dir / "settlement" / RECORD_FILE


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
    text = read_text(path, RECORD_LIMIT_BYTES, "deployment record")
    try:
        return DeploymentRecord.model_validate_json(text)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise InputError(path, f"not a deployment record: {first['msg']}", field=field) from None
