"""Synthetic order books for examples, property tests and benchmarks.

A "community day": every participant posts one order per slot. Participants with PV
sell around noon, battery owners sell in the evening, everybody else buys. Buys are
indivisible by default (households want all or nothing), sells divisible.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gridmatch.matching.orders import Order, OrderBook, Side
from gridmatch.scenario_io.orders_csv import OPTIONAL_COLUMNS, REQUIRED_COLUMNS


def community_day(
    n_participants: int,
    buses: npt.ArrayLike,
    *,
    n_slots: int = 24,
    seed: int = 0,
    pv_share: float = 0.4,
    battery_share: float = 0.1,
    divisible_buy_share: float = 0.0,
    size_factor: float = 1.0,
) -> OrderBook:
    """Generate a day of orders, one per participant and slot.

    Parameters
    ----------
    buses
        Buses to place participants on (drawn uniformly).
    divisible_buy_share
        Share of buy orders marked divisible.
    size_factor
        Multiplies every quantity: 1 is a household with rooftop PV and a small
        battery; 4 is one with a 10-20 kWp array and an EV charging at up to 8 kW,
        enough to load a suburban cable grid to its limits.
    """
    rng = np.random.default_rng(seed)
    bus_choices = np.asarray(buses, dtype=np.int64)
    participant_bus = rng.choice(bus_choices, size=n_participants)
    has_pv = rng.random(n_participants) < pv_share
    has_battery = rng.random(n_participants) < battery_share
    pv_peak_kwh = rng.uniform(1.0, 6.0, n_participants)
    hours = np.arange(n_slots) * 24.0 / n_slots
    sun = np.clip(np.sin((hours - 6.0) / 12.0 * np.pi), 0.0, None)

    orders = []
    for slot in range(n_slots):
        evening = 17.0 <= hours[slot] < 22.0
        for p in range(n_participants):
            pv_kwh = pv_peak_kwh[p] * sun[slot] * rng.uniform(0.7, 1.0)
            if has_pv[p] and pv_kwh > 0.3:
                side, quantity, price = Side.SELL, pv_kwh, rng.uniform(0.04, 0.18)
            elif has_battery[p] and evening:
                side, quantity, price = Side.SELL, rng.uniform(0.5, 2.5), rng.uniform(0.12, 0.24)
            else:
                side, quantity, price = Side.BUY, rng.uniform(0.2, 2.0), rng.uniform(0.15, 0.35)
            divisible = side is Side.SELL or bool(rng.random() < divisible_buy_share)
            orders.append(
                Order(
                    order_id=f"o{slot:02d}-{p:04d}",
                    participant_id=f"p{p:04d}",
                    side=side,
                    bus=int(participant_bus[p]),
                    slot=slot,
                    quantity_kwh=round(float(quantity) * size_factor, 3),
                    limit_price_eur_per_kwh=round(float(price), 4),
                    divisible=divisible,
                )
            )
    return OrderBook(tuple(orders))


def write_orders_csv(path: Path, book: OrderBook) -> None:
    """Write an order book in the ``orders.csv`` input format."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
        for o in book.orders:
            writer.writerow(
                [
                    o.order_id,
                    o.participant_id,
                    o.side.value,
                    o.bus,
                    o.slot,
                    repr(o.quantity_kwh),
                    repr(o.limit_price_eur_per_kwh),
                    "true" if o.divisible else "false",
                ]
            )
