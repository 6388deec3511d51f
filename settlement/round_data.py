"""The trades of a result folder in the units the contract takes.

Energy in whole Wh (rounded down: never more than was traded), prices in micro-EUR per
kWh. ``trades.csv`` is read through the result folder's own reader, which validates it
like every file a user hands over; the contract's 64-bit ranges are checked here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from gridmatch.errors import InputError
from gridmatch.results_io.folder import read_numbered_trades
from gridmatch.results_io.layout import TRADES_FILE
from gridmatch.results_io.rows import TradeRow
from gridmatch.settlement.accounts import address_of
from gridmatch.units import WH_PER_KWH, eur_to_micro_eur, floor_wh, wh_to_kwh


@dataclass(frozen=True)
class ChainTrade:
    """One trade as ``Settlement.Trade`` holds it, with its keys in trades.csv."""

    round_id: int
    trade_id: int
    buyer: str
    seller: str
    slot: int
    quantity_wh: int
    price_micro_eur_per_kwh: int
    fee_micro_eur_per_kwh: int
    buy_order_id: str
    sell_order_id: str
    buyer_id: str
    seller_id: str

    def as_tuple(self) -> tuple[int, int, str, str, int, int, int, int]:
        """Field tuple in ``Settlement.Trade`` order."""
        return (
            self.round_id,
            self.trade_id,
            self.buyer,
            self.seller,
            self.slot,
            self.quantity_wh,
            self.price_micro_eur_per_kwh,
            self.fee_micro_eur_per_kwh,
        )

    def lock_micro_eur(self) -> int:
        """Return what the contract locks for it: quantity x (price + fee), rounded up."""
        total = self.quantity_wh * (self.price_micro_eur_per_kwh + self.fee_micro_eur_per_kwh)
        return -(-total // WH_PER_KWH)


# Settlement.Trade stores energy, prices and slots as uint64.
_UINT64_LIMIT = 2**64


@dataclass(frozen=True)
class UnsettledEnergy:
    """Energy of a trade that does not go on chain: the part below a whole Wh.

    Settlement counts whole Wh, rounded down (:func:`gridmatch.units.floor_wh`), so
    no trade is ever settled for more energy than it traded. A trade below 1 Wh is
    left out of the round altogether (nothing is locked for it); any other trade's
    fraction of a Wh is simply not settled. Both are recorded, never dropped silently.
    """

    slot: int
    buy_order_id: str
    sell_order_id: str
    traded_kwh: float
    settled_wh: int

    @property
    def unsettled_kwh(self) -> float:
        """What was traded and is not settled."""
        return max(self.traded_kwh - wh_to_kwh(self.settled_wh), 0.0)


@dataclass(frozen=True)
class ChainRound:
    """The trades of a result folder as the contract takes them, and what stays off chain."""

    trades: list[ChainTrade]
    unsettled: list[UnsettledEnergy]


def read_round(out_dir: Path, round_id: int) -> ChainRound:
    """Read ``OUT_DIR/trades.csv`` as the trades of round ``round_id``.

    Raises
    ------
    InputError
        Missing file or column, a value that is not a number of the right kind, a
        value the contract's 64-bit fields cannot hold, or no trade of 1 Wh or more.
    """
    path = out_dir / TRADES_FILE
    trades: list[ChainTrade] = []
    unsettled: list[UnsettledEnergy] = []
    for line, row in read_numbered_trades(out_dir):
        trade = _trade(path, line, row, round_id, len(trades) + 1)
        if trade.quantity_wh == 0 or wh_to_kwh(trade.quantity_wh) < row.quantity_kwh:
            unsettled.append(
                UnsettledEnergy(
                    row.slot,
                    row.buy_order_id,
                    row.sell_order_id,
                    row.quantity_kwh,
                    trade.quantity_wh,
                )
            )
        if trade.quantity_wh > 0:
            trades.append(trade)
    if not trades:
        raise InputError(path, "the clearing has no trade of 1 Wh or more to settle")
    return ChainRound(trades, unsettled)


def locks_by_buyer(trades: list[ChainTrade]) -> dict[str, int]:
    """Per buyer address, the sum of its trades' locks."""
    locks: dict[str, int] = defaultdict(int)
    for trade in trades:
        locks[trade.buyer] += trade.lock_micro_eur()
    return dict(locks)


def parse_slot(path: Path, number: int, text: str) -> int:
    """Read a slot number of a settlement file: a whole number the contract's uint64 holds.

    Raises
    ------
    InputError
        Naming the file, row and field ``slot``.
    """
    try:
        slot = int(text)
    except ValueError:
        raise InputError(path, f"'{text}' is not a slot number", row=number, field="slot") from None
    if not 0 <= slot < _UINT64_LIMIT:
        raise InputError(path, "a slot number is >= 0 and < 2**64", row=number, field="slot")
    return slot


def _trade(path: Path, line: int, row: TradeRow, round_id: int, trade_id: int) -> ChainTrade:
    def uint64(field: str, value: int) -> int:
        if not 0 <= value < _UINT64_LIMIT:
            raise InputError(
                path, "too large for the contract's 64-bit field", row=line, field=field
            )
        return value

    return ChainTrade(
        round_id=round_id,
        trade_id=trade_id,
        buyer=address_of(row.buyer_id),
        seller=address_of(row.seller_id),
        slot=uint64("slot", row.slot),
        quantity_wh=uint64("quantity_kwh", floor_wh(row.quantity_kwh)),
        price_micro_eur_per_kwh=uint64(
            "price_eur_per_kwh", eur_to_micro_eur(row.price_eur_per_kwh)
        ),
        fee_micro_eur_per_kwh=uint64("fee_eur_per_kwh", eur_to_micro_eur(row.fee_eur_per_kwh)),
        buy_order_id=row.buy_order_id,
        sell_order_id=row.sell_order_id,
        buyer_id=row.buyer_id,
        seller_id=row.seller_id,
    )
