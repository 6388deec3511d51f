"""A result folder's trades and orders in the terms the contract takes.

Energy in whole Wh (trades rounded down, :func:`gridmatch.units.floor_wh`: never more
than was traded), prices in micro-EUR per kWh, times in Unix seconds from the
summary's time basis (``day_start_utc + slot * slot_minutes``). The files are read
through the result folder's own readers, which validate them like every file a user
hands over; what the contract's 64-bit fields and rules need is checked here.

Limits are rounded in the participant's favour: a buyer signs ``floor(limit)`` micro-EUR
per kWh (price plus fee), a seller ``ceil(limit)``. A trade's fee is rounded to the
micro-EUR, and its price to the micro-EUR within ``[seller's limit, buyer's limit -
fee]``; a trade whose limits are closer than that, or that moves less than 1 Wh, stays
off chain and is recorded as unsettled, never dropped silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from eth_utils.crypto import keccak

from gridmatch.errors import InputError
from gridmatch.matching.orders import Order, Side
from gridmatch.results_io.folder import read_numbered_trades, read_orders, read_summary
from gridmatch.results_io.layout import ORDERS_FILE, SUMMARY_FILE, TRADES_FILE
from gridmatch.results_io.rows import TradeRow
from gridmatch.units import (
    MICRO_EUR_PER_EUR,
    WH_FLOAT_SLACK,
    WH_PER_KWH,
    eur_to_micro_eur,
    exact_wh,
    floor_wh,
    wh_to_kwh,
)

# Settlement stores energy, prices and times as uint64.
UINT64_LIMIT = 2**64


@dataclass(frozen=True)
class OrderTerms:
    """An input order as its participant signs it (addresses and expiry come later)."""

    order_id: str
    participant_id: str
    is_buy: bool
    slot_start: int
    slot_end: int
    quantity_wh: int
    limit_micro_eur_per_kwh: int

    @property
    def nonce(self) -> int:
        """The order's nonce: derived from its id, so one order id is one nonce."""
        return int.from_bytes(keccak(text=f"gridmatch order:{self.order_id}")[:8], "big")


@dataclass(frozen=True)
class PlannedTrade:
    """A trade of trades.csv as it goes on chain."""

    slot: int
    buy: OrderTerms
    sell: OrderTerms
    quantity_wh: int
    price_micro_eur_per_kwh: int
    fee_micro_eur_per_kwh: int

    @property
    def key(self) -> tuple[int, str, str]:
        """``(slot, buy_order_id, sell_order_id)`` as in trades.csv."""
        return (self.slot, self.buy.order_id, self.sell.order_id)

    def lock_micro_eur(self) -> int:
        """Return what the contract locks for it: quantity x (price + fee), rounded up."""
        total = self.quantity_wh * (self.price_micro_eur_per_kwh + self.fee_micro_eur_per_kwh)
        return -(-total // WH_PER_KWH)


@dataclass(frozen=True)
class Unsettled:
    """Energy of a trade that does not go on chain, and why.

    ``settled_wh`` is what does go on chain (0: the whole trade stays off).
    """

    slot: int
    buy_order_id: str
    sell_order_id: str
    traded_kwh: float
    settled_wh: int
    reason: str

    @property
    def unsettled_kwh(self) -> float:
        """What was traded and is not settled."""
        return max(self.traded_kwh - wh_to_kwh(self.settled_wh), 0.0)


@dataclass(frozen=True)
class ChainRound:
    """A clearing as it goes on chain.

    Attributes
    ----------
    trade_losses_share
        Per slot, the share of the traded energy the grid lost to the trades (from the
        clearing's final AC check; 0 without security): what validators allow between
        what sellers sent and buyers received, on top of the meters' accuracy.
    """

    trades: list[PlannedTrade]
    unsettled: list[Unsettled]
    trade_losses_share: dict[int, float]


def read_round(out_dir: Path) -> ChainRound:
    """Read a result folder's trades, orders and time basis for settlement.

    Raises
    ------
    InputError
        A file is missing or malformed, a trade names an order orders.csv lacks, a value
        does not fit the contract's 64-bit fields, or no trade of 1 Wh or more is left.
    """
    summary = read_summary(out_dir)
    day_start = _day_start(out_dir, summary.day_start_utc)
    slot_s = round(summary.slot_minutes * 60)
    orders = {row.order.order_id: row.order for row in read_orders(out_dir)}
    trades: list[PlannedTrade] = []
    unsettled: list[Unsettled] = []
    traded_kwh: dict[int, float] = {}
    for line, row in read_numbered_trades(out_dir):
        buy = _terms(out_dir, line, orders, row.buy_order_id, day_start, slot_s)
        sell = _terms(out_dir, line, orders, row.sell_order_id, day_start, slot_s)
        planned, problem = _planned(row, buy, sell)
        traded_kwh[row.slot] = traded_kwh.get(row.slot, 0.0) + row.quantity_kwh
        if problem is not None:
            unsettled.append(problem)
        if planned is not None:
            trades.append(planned)
    if not trades:
        raise InputError(
            out_dir / TRADES_FILE, "the clearing has no trade of 1 Wh or more to settle"
        )
    losses = {
        s.slot: s.trade_losses_kwh / traded_kwh[s.slot]
        for s in summary.slots
        if s.trade_losses_kwh is not None and traded_kwh.get(s.slot, 0.0) > 0
    }
    return ChainRound(trades, unsettled, losses)


def _day_start(out_dir: Path, text: str | None) -> int:
    if text is None:
        raise InputError(
            out_dir / SUMMARY_FILE,
            "no day_start_utc: clear the scenario again with this gridmatch (settlement signs "
            "absolute slot times)",
            field="day_start_utc",
        )
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        raise InputError(
            out_dir / SUMMARY_FILE, f"'{text}' is not a time", field="day_start_utc"
        ) from None


def _terms(
    out_dir: Path, line: int, orders: dict[str, Order], order_id: str, day_start: int, slot_s: int
) -> OrderTerms:
    order = orders.get(order_id)
    if order is None:
        raise InputError(
            out_dir / TRADES_FILE,
            f"order '{order_id}' is not in {ORDERS_FILE}",
            row=line,
            field="buy_order_id",
        )
    start = day_start + order.slot * slot_s
    limit = order.limit_price_eur_per_kwh * MICRO_EUR_PER_EUR
    # In the participant's favour: a buyer signs at most, a seller at least, its limit.
    limit_micro = math.floor(limit + 1e-6) if order.side is Side.BUY else math.ceil(limit - 1e-6)
    terms = OrderTerms(
        order_id=order.order_id,
        participant_id=order.participant_id,
        is_buy=order.side is Side.BUY,
        slot_start=start,
        slot_end=start + slot_s,
        quantity_wh=int(exact_wh(order.quantity_kwh)),
        limit_micro_eur_per_kwh=limit_micro,
    )
    for field_name, value in (("slot", terms.slot_end), ("limit_price_eur_per_kwh", limit_micro)):
        if not 0 <= value < UINT64_LIMIT:
            raise InputError(
                out_dir / ORDERS_FILE, "too large for the contract's 64-bit field", field=field_name
            )
    return terms


def _planned(
    row: TradeRow, buy: OrderTerms, sell: OrderTerms
) -> tuple[PlannedTrade | None, Unsettled | None]:
    quantity_wh = floor_wh(row.quantity_kwh)
    fee = eur_to_micro_eur(row.fee_eur_per_kwh)
    low, high = sell.limit_micro_eur_per_kwh, buy.limit_micro_eur_per_kwh - fee
    price = min(max(eur_to_micro_eur(row.price_eur_per_kwh), low), high)

    def off(reason: str, settled_wh: int = 0) -> Unsettled:
        return Unsettled(
            row.slot, row.buy_order_id, row.sell_order_id, row.quantity_kwh, settled_wh, reason
        )

    if quantity_wh == 0:
        return None, off("below 1 Wh")
    if high < low:
        return None, off("the limits are closer than 1 micro-EUR per kWh")
    planned = PlannedTrade(row.slot, buy, sell, quantity_wh, price, fee)
    if row.quantity_kwh * WH_PER_KWH - quantity_wh > WH_FLOAT_SLACK:
        return planned, off("a fraction of a Wh", quantity_wh)
    return planned, None
