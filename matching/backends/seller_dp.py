"""Fill one seller at a time with an exact 0/1 knapsack: a start for the MILP solvers.

Merit-order greedy (:mod:`~gridmatch.matching.backends.greedy`) serves buyers by price
and leaves gaps in sellers that no remaining indivisible buy fits; on supply-short
slots that loses several percent of welfare. Here sellers are filled cheapest first,
each with the subset of still-unserved indivisible buys that is worth most and fits its
quantity, found exactly by dynamic programming over whole Wh; divisible buys then top
up what is left, best pair first. This is the multiple-knapsack heuristic of Martello
and Toth (one knapsack at a time), and it is deterministic.

Cost per seller: (compatible unserved indivisible buys) x (quantity in Wh) DP cells, at
most :data:`_DP_BUDGET_CELLS` (the most efficient buys are kept when there are more).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gridmatch.matching.backends.base import HeuristicBackend
from gridmatch.matching.problem import SlotProblem
from gridmatch.matching.secure_subset import drop_until_feasible

_TOLERANCE_KWH = 1e-9
# DP cells per seller (about 20 ms): the heuristic stays fast on sellers of any size.
_DP_BUDGET_CELLS = 20_000_000


def best_subset(
    weights_wh: npt.NDArray[np.int64], values_eur: npt.NDArray[np.float64], capacity_wh: int
) -> npt.NDArray[np.bool_]:
    """Solve one 0/1 knapsack exactly by dynamic programming over capacity.

    Returns
    -------
    numpy.ndarray of bool
        Which items to take. Ties go to the earlier items.
    """
    from gridmatch.matching.knapsack_exact import dp_knapsack

    return dp_knapsack(weights_wh, values_eur, capacity_wh)


def _best_fitting(
    weights_wh: npt.NDArray[np.int64], values_eur: npt.NDArray[np.float64], capacity_wh: int
) -> npt.NDArray[np.bool_]:
    """:func:`best_subset` over at most the DP's budget of the most efficient items.

    A seller of 85 kWh and 10,000 candidate buys would be a DP of 8.5e8 cells (about a
    second); the heuristic keeps the items worth most per Wh that fit the budget.
    """
    from gridmatch.matching.knapsack_exact import MAX_DP_CAPACITY_WH

    if capacity_wh > MAX_DP_CAPACITY_WH:
        # A seller of more than 20 MWh: no DP over its Wh, fill it by efficiency.
        return _by_efficiency(weights_wh, values_eur, capacity_wh)
    budget = max(_DP_BUDGET_CELLS // (capacity_wh + 1), 1)
    if weights_wh.size <= budget:
        return best_subset(weights_wh, values_eur, capacity_wh)
    keep = np.lexsort((np.arange(weights_wh.size), -values_eur / weights_wh))[:budget]
    keep.sort()
    chosen = np.zeros(weights_wh.size, dtype=bool)
    chosen[keep[best_subset(weights_wh[keep], values_eur[keep], capacity_wh)]] = True
    return chosen


def _by_efficiency(
    weights_wh: npt.NDArray[np.int64], values_eur: npt.NDArray[np.float64], capacity_wh: int
) -> npt.NDArray[np.bool_]:
    """Take items by value per Wh while they fit (the greedy knapsack)."""
    chosen = np.zeros(weights_wh.size, dtype=bool)
    room = capacity_wh
    for j in np.lexsort((np.arange(weights_wh.size), -values_eur / weights_wh)).tolist():
        if weights_wh[j] <= room and values_eur[j] > 0.0:
            chosen[j] = True
            room -= int(weights_wh[j])
    return chosen


def seller_dp_pair_kwh(problem: SlotProblem) -> npt.NDArray[np.float64]:
    """Fill sellers cheapest first, each with its best-fitting set of unserved buys.

    All-or-none sellers that cannot be filled completely sell nothing.

    Returns
    -------
    numpy.ndarray
        kWh per pair of ``problem``; a feasible allocation.
    """
    pair_kwh = np.zeros(problem.n_pairs)
    if problem.n_pairs == 0:
        return pair_kwh
    buy_left_kwh = problem.buy_quantity_kwh.copy()
    served = np.zeros(problem.buy_quantity_kwh.size, dtype=bool)
    indivisible_pair = problem.pair_indivisible
    buy_wh = problem.buy_quantity_wh()
    sell_wh = problem.sell_quantity_wh()
    # Pairs are sorted by buy; group them by seller once.
    by_seller = np.argsort(problem.pair_sell, kind="stable")
    bounds = np.searchsorted(
        problem.pair_sell[by_seller], np.arange(problem.sell_quantity_kwh.size + 1)
    )
    seller_order = np.lexsort(
        (np.arange(problem.sell_quantity_kwh.size), problem.sell_limit_eur_per_kwh)
    )
    for s in seller_order.tolist():
        pairs = by_seller[bounds[s] : bounds[s + 1]]
        if pairs.size == 0:
            continue
        capacity_kwh = float(problem.sell_quantity_kwh[s])
        buys = problem.pair_buy[pairs]
        fill = np.zeros(pairs.size)

        items = indivisible_pair[pairs] & ~served[buys]
        item_pairs = np.flatnonzero(items)
        if item_pairs.size:
            weights = buy_wh[buys[item_pairs]]
            values = (
                problem.pair_welfare_eur_per_kwh[pairs[item_pairs]]
                * problem.buy_quantity_kwh[buys[item_pairs]]
            )
            chosen = _best_fitting(weights, values, int(sell_wh[s]))
            fill[item_pairs[chosen]] = problem.buy_quantity_kwh[buys[item_pairs[chosen]]]
        room = capacity_kwh - float(fill.sum())

        # Divisible buys top up the rest, most valuable pair first.
        divisible = np.flatnonzero(~indivisible_pair[pairs] & (buy_left_kwh[buys] > 0))
        ranked = divisible[
            np.lexsort((buys[divisible], -problem.pair_welfare_eur_per_kwh[pairs[divisible]]))
        ]
        for k in ranked.tolist():
            if room <= _TOLERANCE_KWH:
                break
            take = min(room, float(buy_left_kwh[buys[k]]))
            fill[k] = take
            room -= take

        if problem.sell_all_or_none[s] and room > _TOLERANCE_KWH:
            continue  # cannot be sold completely: sells nothing
        pair_kwh[pairs] = fill
        used = fill > 0
        served[buys[used & indivisible_pair[pairs]]] = True
        np.subtract.at(buy_left_kwh, buys[used], fill[used])

    return pair_kwh


def best_start_pair_kwh(problem: SlotProblem) -> npt.NDArray[np.float64]:
    """Return the better of the seller-DP and the merit-order allocation (a MILP start).

    Both are first cut down to the slot's budget and grid rows, if it has any, so the
    start is feasible for the model it starts.
    """
    from gridmatch.matching.backends.greedy import greedy_pair_kwh

    candidates = [
        drop_until_feasible(problem, seller_dp_pair_kwh(problem)),
        drop_until_feasible(problem, greedy_pair_kwh(problem)),
    ]
    # max() keeps the first of equals: the DP allocation wins ties.
    return max(candidates, key=problem.welfare_eur)


class SellerDpBackend(HeuristicBackend):
    """Sellers filled one at a time by exact knapsack DP; a heuristic, no bound."""

    name = "seller-dp"
    description = "sellers filled cheapest first by exact knapsack DP (heuristic)"

    def allocate(self, problem: SlotProblem) -> npt.NDArray[np.float64]:  # noqa: D102
        return seller_dp_pair_kwh(problem)
