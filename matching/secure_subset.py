"""Make an allocation satisfy a slot's grid rows by dropping trades.

Used wherever a backend cannot put the rows into its model (the heuristics, the
textbook baseline), to give HiGHS and CP-SAT a start that satisfies them, and as the
last resort of the security iteration. Dropping trades never breaks the market
rules, and the empty allocation changes nothing in the grid, so it always ends in
something the AC check can accept.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gridmatch.matching.budget_cut import drop_until_budgets_hold
from gridmatch.matching.grid_rows import ROW_TOLERANCE
from gridmatch.matching.problem import SlotProblem
from gridmatch.matching.shrink import WELFARE_FLOOR_EUR_PER_KWH, shrink_or_drop

FloatArray = npt.NDArray[np.float64]


def drop_until_feasible(problem: SlotProblem, pair_kwh: FloatArray) -> FloatArray:
    """Remove trades until the slot's budget rows and then its grid rows hold.

    Budgets first: dropping for the grid only lowers what any account spends, while
    dropping for budgets could push a grid row either way.
    """
    return drop_until_rows_hold(problem, drop_until_budgets_hold(problem, pair_kwh))


def drop_until_rows_hold(problem: SlotProblem, pair_kwh: FloatArray) -> FloatArray:
    """Remove trades until ``problem.grid`` holds for the remaining allocation.

    Repeatedly takes the row furthest outside its bounds and removes the trade that
    pushes it outwards most per EUR of welfare; a trade of an all-or-none seller takes
    the seller's other trades with it, and a divisible trade of a divisible seller
    only shrinks as far as the row needs (in whole Wh). Returns a new array; without
    rows, a copy.
    """
    kwh = np.array(pair_kwh, dtype=float)
    rows = problem.grid
    if rows is None or rows.n_rows == 0:
        return kwh
    used = np.flatnonzero(kwh > 0.0)
    coefficients = rows.pair_coefficients(
        problem.sell_bus[problem.pair_sell[used]], problem.buy_bus[problem.pair_buy[used]]
    )
    welfare = np.maximum(problem.pair_welfare_eur_per_kwh[used], WELFARE_FLOOR_EUR_PER_KWH)
    sellers = problem.pair_sell[used]
    all_or_none = problem.sell_all_or_none[sellers]
    # A divisible buy from a divisible seller can shrink instead of going whole.
    shrinkable = ~problem.pair_indivisible[used] & ~all_or_none
    left = kwh[used].copy()  # 0 once dropped
    while True:
        activity = coefficients @ left
        above = activity - rows.upper
        below = rows.lower - activity
        excess = np.maximum(np.maximum(above, below), 0.0)
        worst = int(np.argmax(excess)) if excess.size else 0
        if excess.size == 0 or excess[worst] <= ROW_TOLERANCE:
            break
        direction = 1.0 if above[worst] > 0.0 else -1.0
        harm = direction * coefficients[worst]
        candidates = (left > 0.0) & (harm > 0.0)
        if not candidates.any():
            # The row cannot hold whatever is dropped: only the empty set is left.
            left[:] = 0.0
            break
        score = np.where(candidates, harm / welfare, -np.inf)
        victim = int(np.argmax(score))
        # Just enough less to bring the row back, in whole Wh (as orders are given).
        shrink_or_drop(
            left,
            victim,
            excess[worst] / harm[victim],
            shrinkable=shrinkable,
            all_or_none=all_or_none,
            sellers=sellers,
        )
    kwh[used] = left
    return kwh
