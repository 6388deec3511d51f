"""The rows of the result folder's tables: trades.csv, orders.csv and grid.csv.

Each file's columns are the fields of one row class (:mod:`gridmatch.results_io.tables`
derives them), so a column is declared exactly once; writers and readers of every
workflow (clear, rounds, batch, report, settlement) go through these classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from gridmatch.grid_models.secure_clearing import SecureClearing
from gridmatch.matching.clearing import TOLERANCE_KWH, ClearingResult
from gridmatch.matching.orders import Order, OrderBook
from gridmatch.results_io.tables import ANY_FLOAT, NON_NEGATIVE, NONEMPTY
from gridmatch.units import exact_wh, remaining_wh


class OrderStatus(StrEnum):
    """What became of an order (orders.csv ``status``)."""

    FILLED = "filled"  # nothing left that could trade: less than 1 Wh remains
    PARTIALLY_FILLED = "partially_filled"
    UNFILLED = "unfilled"
    BUDGET = "budget"  # left short because its prepaid account could not pay for the rest
    CUT_OFF = "cut_off"  # rolling rounds: its account was exhausted, the order was withdrawn
    LATE = "late"  # rolling rounds: no round could see it
    PENDING = "pending"  # rolling rounds: a round still to come will see it


@dataclass(frozen=True)
class TradeRow:
    """One line of trades.csv: an accepted (buy, sell) pair.

    ``welfare_eur`` is ``quantity_kwh * (buy limit - sell limit - fee)``.
    """

    slot: int = field(metadata=NON_NEGATIVE)
    buy_order_id: str = field(metadata=NONEMPTY)
    sell_order_id: str = field(metadata=NONEMPTY)
    buyer_id: str = field(metadata=NONEMPTY)
    seller_id: str = field(metadata=NONEMPTY)
    buy_bus: int = field(metadata=NON_NEGATIVE)
    sell_bus: int = field(metadata=NON_NEGATIVE)
    quantity_kwh: float = field(metadata=NON_NEGATIVE)
    price_eur_per_kwh: float = field(metadata=NON_NEGATIVE)
    fee_eur_per_kwh: float = field(metadata=NON_NEGATIVE)
    buy_limit_eur_per_kwh: float = field(metadata=NON_NEGATIVE)
    sell_limit_eur_per_kwh: float = field(metadata=NON_NEGATIVE)
    welfare_eur: float

    @property
    def key(self) -> tuple[int, str, str]:
        """``(slot, buy_order_id, sell_order_id)``: at most one trade per key."""
        return (self.slot, self.buy_order_id, self.sell_order_id)


@dataclass(frozen=True)
class OrderRow:
    """One line of orders.csv: an input order (its own columns), its fill and status."""

    order: Order
    filled_kwh: float = field(metadata=NON_NEGATIVE)
    status: OrderStatus


@dataclass(frozen=True)
class DayTradeRow:
    """One line of a rolling day's trades.csv: a round's trade with the round first."""

    round_no: int = field(metadata=NON_NEGATIVE)
    cleared_at_min: int = field(metadata=NON_NEGATIVE)
    trade: TradeRow


@dataclass(frozen=True)
class DayOrderRow:
    """One line of a rolling day's orders.csv: the order, when it came, what all rounds did."""

    order: Order
    submitted_at_min: int = field(metadata=NON_NEGATIVE)
    filled_kwh: float = field(metadata=NON_NEGATIVE)
    status: OrderStatus


@dataclass(frozen=True)
class GridRow:
    """One line of grid.csv: an element of one traded slot before and after the trades.

    ``quantity`` is ``loading_percent`` (lines, transformers) or ``vm_pu`` (buses);
    values are NaN where a power flow did not converge.
    """

    slot: int = field(metadata=NON_NEGATIVE)
    element: str = field(metadata=NONEMPTY)
    index: int = field(metadata=NON_NEGATIVE)
    quantity: str = field(metadata=NONEMPTY)
    before: float = field(metadata=ANY_FLOAT)
    after: float = field(metadata=ANY_FLOAT)
    limit_low: float = field(metadata=ANY_FLOAT)
    limit_high: float = field(metadata=ANY_FLOAT)
    violated: bool
    binding: bool


@dataclass(frozen=True)
class BudgetRow:
    """One line of budgets.csv: a prepaid account in a clearing.

    ``opening_eur`` is what the account could spend (balance plus emergency credit, or
    in a rolling round what it had left), ``spent_eur`` what its trades cost
    (quantity x (price + fee)), ``left_eur`` the difference.
    """

    participant_id: str = field(metadata=NONEMPTY)
    opening_eur: float
    spent_eur: float = field(metadata=NON_NEGATIVE)
    left_eur: float


def budget_rows(
    book: OrderBook, trades: Sequence[TradeRow], available_eur: Mapping[str, float]
) -> list[BudgetRow]:
    """Every account with what it could spend, what its trades cost and what is left."""
    spent = dict.fromkeys(available_eur, 0.0)
    for trade in trades:
        if trade.buyer_id in spent:
            spent[trade.buyer_id] += trade.quantity_kwh * (
                trade.price_eur_per_kwh + trade.fee_eur_per_kwh
            )
    return [
        BudgetRow(p, float(available_eur[p]), spent[p], float(available_eur[p]) - spent[p])
        for p in sorted(available_eur)
    ]


def order_status(quantity_kwh: float, filled_kwh: float) -> OrderStatus:
    """Return the status of an order a clearing (or a day's rounds) saw: the one rule.

    ``unfilled`` if nothing traded (a trade is at least ``TOLERANCE_KWH``), ``filled``
    if less than one whole Wh is left (no later trade could use it), else
    ``partially_filled``.
    """
    if filled_kwh <= TOLERANCE_KWH:
        return OrderStatus.UNFILLED
    if remaining_wh(exact_wh(quantity_kwh), filled_kwh) == 0:
        return OrderStatus.FILLED
    return OrderStatus.PARTIALLY_FILLED


def trade_rows(book: OrderBook, result: ClearingResult) -> list[TradeRow]:
    """Return the trades of a clearing as trades.csv rows, in the clearing's order."""
    rows = []
    for trade in result.trades:
        buy = book.orders[trade.buy_order]
        sell = book.orders[trade.sell_order]
        rows.append(
            TradeRow(
                slot=trade.slot,
                buy_order_id=buy.order_id,
                sell_order_id=sell.order_id,
                buyer_id=buy.participant_id,
                seller_id=sell.participant_id,
                buy_bus=buy.bus,
                sell_bus=sell.bus,
                quantity_kwh=trade.quantity_kwh,
                price_eur_per_kwh=trade.price_eur_per_kwh,
                fee_eur_per_kwh=trade.fee_eur_per_kwh,
                buy_limit_eur_per_kwh=buy.limit_price_eur_per_kwh,
                sell_limit_eur_per_kwh=sell.limit_price_eur_per_kwh,
                welfare_eur=trade.quantity_kwh * trade.welfare_eur_per_kwh,
            )
        )
    return rows


def order_rows(
    book: OrderBook,
    filled_kwh: npt.NDArray[np.float64],
    budget_limited: frozenset[int] = frozenset(),
) -> list[OrderRow]:
    """Every order of ``book`` with its fill and :func:`order_status`.

    A buy order that money left short (``budget_limited``: book indices) says ``budget``
    instead of ``unfilled`` or ``partially_filled``.
    """
    rows = []
    for k, (order, filled) in enumerate(zip(book.orders, filled_kwh.tolist(), strict=True)):
        status = order_status(order.quantity_kwh, filled)
        if k in budget_limited and status is not OrderStatus.FILLED:
            status = OrderStatus.BUDGET
        rows.append(OrderRow(order, filled, status))
    return rows


def day_trade_rows(
    round_no: int, cleared_at_min: int, trades: Sequence[TradeRow]
) -> list[DayTradeRow]:
    """Return a round's trades as rows of the day's trades.csv."""
    return [DayTradeRow(round_no, cleared_at_min, trade) for trade in trades]


def grid_rows(security: SecureClearing) -> list[GridRow]:
    """Return the final AC check of every traded slot as grid.csv rows (binding marked)."""
    table = security.report.table()
    binding = security.binding
    return [
        GridRow(
            slot=int(slot),
            element=str(element),
            index=int(index),
            quantity=str(quantity),
            before=float(before),
            after=float(after),
            limit_low=float(low),
            limit_high=float(high),
            violated=bool(violated),
            binding=(int(slot), str(element), int(index)) in binding,
        )
        # The table's columns are the core's ELEMENT_COLUMNS, in this order.
        for slot, element, index, quantity, before, after, low, high, violated in table.itertuples(
            index=False, name=None
        )
    ]
