"""Hand the engine's trades to the independent checker (feasibility.py) as file rows."""

from __future__ import annotations

from collections.abc import Sequence

from feasibility import OrderRow, TradeRow, check_trades

from gridmatch.matching.clearing import Trade
from gridmatch.matching.orders import OrderBook


def checked_welfare(
    book: OrderBook,
    trades: Sequence[Trade],
    fee: float = 0.0,
    pricing: str = "midpoint",
    available_eur: dict[str, float] | None = None,
) -> float:
    """Check the trades with the independent checker; return their welfare."""
    rows = {
        o.order_id: OrderRow(
            o.order_id,
            o.participant_id,
            o.side.value,
            o.bus,
            o.slot,
            o.quantity_kwh,
            o.limit_price_eur_per_kwh,
            o.divisible,
        )
        for o in book.orders
    }
    checked = [
        TradeRow(
            t.slot,
            book.orders[t.buy_order].order_id,
            book.orders[t.sell_order].order_id,
            t.quantity_kwh,
            t.price_eur_per_kwh,
            t.fee_eur_per_kwh,
        )
        for t in trades
    ]
    return check_trades(
        rows, checked, flat_fee_eur_per_kwh=fee, pricing=pricing, available_eur=available_eur
    )
