"""The solver-neutral matching problem of one slot, and how it is built from orders.

Slots are independent while the grid is not coupled in, so every backend receives
one :class:`SlotProblem` per slot. Buy orders are the knapsack items, sell orders the
knapsacks; only compatible (buy, sell) pairs exist as variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridmatch.matching.budgets import BudgetRows, budget_rows, pair_cost_eur_per_kwh
from gridmatch.matching.grid_rows import GridRows
from gridmatch.matching.market_rules import MarketRules
from gridmatch.matching.orders import OrderBook
from gridmatch.units import exact_wh

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Prices are given to at most ~1e-6 EUR/kWh; differences below this are rounding.
WELFARE_NOISE_EUR_PER_KWH = 1e-12


@dataclass(frozen=True)
class SlotProblem:
    """Multiple-knapsack instance of one slot.

    Buy and sell arrays are indexed locally (0..n-1); ``buy_order`` and ``sell_order``
    map them back to positions in the :class:`OrderBook`. Pairs are sorted by
    (buy, sell), which fixes the variable order and so the solvers' tie-breaking.

    Attributes
    ----------
    buy_bus, sell_bus
        Grid bus (pandapower ``net.bus`` index) of each buy and sell order.
    pair_welfare_eur_per_kwh
        ``buy limit - sell limit - fee`` of each pair, never negative.
    grid
        Linearised security rows the allocation must also satisfy (issue #3), or
        ``None`` for a slot matched without grid constraints.
    budget
        What the slot's buyers with a prepaid account may spend (issue #18), or
        ``None`` when no buyer of the slot has one.
    """

    slot: int
    buy_order: IntArray
    buy_quantity_kwh: FloatArray
    buy_divisible: BoolArray
    buy_limit_eur_per_kwh: FloatArray
    buy_bus: IntArray
    sell_order: IntArray
    sell_quantity_kwh: FloatArray
    sell_all_or_none: BoolArray
    sell_limit_eur_per_kwh: FloatArray
    sell_bus: IntArray
    pair_buy: IntArray
    pair_sell: IntArray
    pair_fee_eur_per_kwh: FloatArray
    pair_welfare_eur_per_kwh: FloatArray
    grid: GridRows | None = None
    budget: BudgetRows | None = None

    @property
    def n_pairs(self) -> int:
        """Number of compatible pairs (model columns before the seller switches)."""
        return int(self.pair_buy.size)

    @property
    def pair_indivisible(self) -> BoolArray:
        """True where the pair's buy order is indivisible (a binary column)."""
        return ~self.buy_divisible[self.pair_buy]

    def buy_quantity_wh(self) -> IntArray:
        """Buy quantities in whole Wh (exact: orders are validated to Wh)."""
        return exact_wh(self.buy_quantity_kwh)

    def sell_quantity_wh(self) -> IntArray:
        """Sell quantities in whole Wh (exact: orders are validated to Wh)."""
        return exact_wh(self.sell_quantity_kwh)

    def pair_max_kwh(self) -> FloatArray:
        """Largest quantity each pair can carry: the buy quantity, capped by the seller."""
        return np.minimum(
            self.buy_quantity_kwh[self.pair_buy], self.sell_quantity_kwh[self.pair_sell]
        )

    def welfare_eur(self, pair_quantity_kwh: FloatArray) -> float:
        """Welfare of an allocation of kWh to pairs."""
        return float(np.dot(pair_quantity_kwh, self.pair_welfare_eur_per_kwh))

    def bus_injection_kwh(self, buses: IntArray, pair_quantity_kwh: FloatArray) -> FloatArray:
        """Net kWh injected at each of ``buses`` by an allocation (sold minus bought).

        Every order bus of the slot must be among ``buses``.
        """
        if buses.size == 0:
            return np.zeros(0)
        sell_column = np.searchsorted(buses, self.sell_bus)
        buy_column = np.searchsorted(buses, self.buy_bus)
        sold = np.bincount(
            sell_column[self.pair_sell], weights=pair_quantity_kwh, minlength=buses.size
        )
        bought = np.bincount(
            buy_column[self.pair_buy], weights=pair_quantity_kwh, minlength=buses.size
        )
        injection: FloatArray = (sold - bought).astype(np.float64)
        return injection

    def order_buses(self) -> IntArray:
        """Sorted distinct buses of the slot's orders."""
        return np.unique(np.concatenate([self.buy_bus, self.sell_bus]))


def build_slot_problems(
    book: OrderBook,
    rules: MarketRules,
    distance_km: FloatArray | None = None,
    available_eur: Mapping[str, float] | None = None,
) -> list[SlotProblem]:
    """Build one :class:`SlotProblem` per slot that has orders.

    Parameters
    ----------
    book
        The validated orders.
    rules
        Grid fees decide which pairs are compatible and what they are worth.
    distance_km
        Symmetric matrix of line distances between order buses, indexed by position in
        ``np.unique(book.bus)``. ``None`` means all distances are 0 (no per-km fee).
    available_eur
        What each prepaid account holds (participant id -> EUR): its buyers' pairs get
        budget rows (:mod:`gridmatch.matching.budgets`) with that as their cap; the
        caps of later slots are set as the slots are cleared in order.

    Returns
    -------
    list of SlotProblem
        Sorted by slot.

    Notes
    -----
    A pair (b, s) is compatible when ``limit_b >= limit_s + fee(b, s)`` and the two
    orders are not the same participant's (a prosumer covering its own consumption does
    so behind its meter, not by trading with itself; such a "trade" could not be
    settled either). An indivisible buy larger than a seller's whole quantity can never
    be served by that seller, so that pair is left out: this keeps the model small
    without changing its optimum.
    """
    is_buy = book.is_buy
    slots = book.slot
    quantity = book.quantity_kwh
    price = book.limit_price_eur_per_kwh
    divisible = book.divisible
    bus = book.bus
    participant = book.participant_code
    bus_ids, bus_pos = np.unique(bus, return_inverse=True)
    if distance_km is not None and distance_km.shape != (bus_ids.size, bus_ids.size):
        raise ValueError("distance_km must be square over the distinct order buses")
    if distance_km is None and rules.grid_fee_eur_per_kwh_per_km > 0.0:
        raise ValueError("a per-km grid fee needs distance_km; it would be dropped silently")

    problems = []
    for slot in book.slots:
        in_slot = slots == slot
        buys = np.flatnonzero(in_slot & is_buy)
        sells = np.flatnonzero(in_slot & ~is_buy)
        if distance_km is None:
            fee = np.full((buys.size, sells.size), rules.grid_fee_eur_per_kwh)
        else:
            fee = rules.fee_eur_per_kwh(distance_km[np.ix_(bus_pos[buys], bus_pos[sells])])
        welfare = price[buys][:, None] - price[sells][None, :] - fee
        # 0.30 - 0.29 - 0.01 is -2e-18 in floats: such a pair is compatible by the
        # rules, and its welfare is 0, not noise a solver would warn about.
        welfare[np.abs(welfare) < WELFARE_NOISE_EUR_PER_KWH] = 0.0
        compatible = (welfare >= 0.0) & (participant[buys][:, None] != participant[sells][None, :])
        too_big = (~divisible[buys])[:, None] & (quantity[buys][:, None] > quantity[sells][None, :])
        pair_buy, pair_sell = np.nonzero(compatible & ~too_big)  # row-major: sorted by (buy, sell)
        budget = None
        if available_eur:
            pair_fee = fee[pair_buy, pair_sell]
            cost = pair_cost_eur_per_kwh(
                rules, price[buys][pair_buy], price[sells][pair_sell], pair_fee
            )
            budget = budget_rows(
                [book.orders[i].participant_id for i in buys],
                pair_buy.astype(np.int64),
                cost,
                available_eur,
            )
        problems.append(
            SlotProblem(
                slot=int(slot),
                buy_order=buys.astype(np.int64),
                buy_quantity_kwh=quantity[buys],
                buy_divisible=divisible[buys],
                buy_limit_eur_per_kwh=price[buys],
                buy_bus=bus[buys],
                sell_order=sells.astype(np.int64),
                sell_quantity_kwh=quantity[sells],
                sell_all_or_none=~divisible[sells],
                sell_limit_eur_per_kwh=price[sells],
                sell_bus=bus[sells],
                pair_buy=pair_buy.astype(np.int64),
                pair_sell=pair_sell.astype(np.int64),
                pair_fee_eur_per_kwh=fee[pair_buy, pair_sell],
                pair_welfare_eur_per_kwh=welfare[pair_buy, pair_sell],
                budget=budget,
            )
        )
    return problems
