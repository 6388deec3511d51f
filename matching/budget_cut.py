"""Make an allocation keep a slot's budget rows, and say which buys money limited."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gridmatch.matching.budgets import CHECK_TOLERANCE_EUR
from gridmatch.matching.problem import SlotProblem
from gridmatch.matching.shrink import WELFARE_FLOOR_EUR_PER_KWH, shrink_or_drop

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def drop_until_budgets_hold(problem: SlotProblem, pair_kwh: FloatArray) -> FloatArray:
    """Remove trades until no account of ``problem.budget`` spends more than its model cap.

    Per over-spent account, its trades go least welfare per EUR first; a divisible trade
    of a divisible seller only shrinks as far as needed (in whole Wh), a trade of an
    all-or-none seller takes the seller's other trades with it (so the seller's other
    buyers lose theirs too). Dropping never breaks the market rules, and spending
    nothing always keeps a cap. Returns a new array.
    """
    kwh = np.array(pair_kwh, dtype=float)
    rows = problem.budget
    if rows is None:
        return kwh
    # The models' caps (less their slack), so a cut allocation settles like a solved one.
    caps = rows.model_cap_eur()
    sellers = problem.pair_sell
    all_or_none = problem.sell_all_or_none[sellers]
    shrinkable = ~problem.pair_indivisible & ~all_or_none
    cost = np.maximum(rows.cost_eur_per_kwh, 1e-12)
    value_per_eur = np.maximum(problem.pair_welfare_eur_per_kwh, WELFARE_FLOOR_EUR_PER_KWH) / cost
    while True:
        excess = rows.spend_eur(kwh) - caps
        worst = int(np.argmax(excess))
        if excess[worst] <= CHECK_TOLERANCE_EUR:
            return kwh
        mine = np.flatnonzero((rows.pair_account == worst) & (kwh > 0.0))
        # Least value per EUR first; pair order on ties, so a rerun cuts the same trade.
        victim = int(mine[np.lexsort((mine, value_per_eur[mine]))[0]])
        shrink_or_drop(
            kwh,
            victim,
            excess[worst] / cost[victim],
            shrinkable=shrinkable,
            all_or_none=all_or_none,
            sellers=sellers,
        )


def budget_limited_buys(
    problem: SlotProblem, pair_kwh: FloatArray, held_eur: FloatArray | None = None
) -> IntArray:
    """Book indices of buy orders left short for lack of money.

    A buy order of an account is budget-limited when at least one Wh of it is left and
    what its account still holds after the slot's trades would not pay for the rest at
    the order's cheapest pair (for an indivisible buy: the whole order).

    Parameters
    ----------
    held_eur
        What each account of the slot held before its trades (default: what it held
        when the slot was solved). After secure clearing dropped trades of earlier
        slots, the money they would have cost counts as held again.
    """
    rows = problem.budget
    if rows is None or problem.n_pairs == 0:
        return np.zeros(0, dtype=np.int64)
    held = rows.available_eur if held_eur is None else held_eur
    left_eur = held - rows.spend_eur(pair_kwh)
    bought = np.bincount(problem.pair_buy, pair_kwh, problem.buy_order.size)
    short_kwh = problem.buy_quantity_kwh - bought
    cheapest = np.full(problem.buy_order.size, np.inf)
    np.minimum.at(cheapest, problem.pair_buy, rows.cost_eur_per_kwh)
    account = np.full(problem.buy_order.size, -1, dtype=np.int64)
    account[problem.pair_buy] = rows.pair_account
    has = (account >= 0) & (short_kwh >= 1e-3 - 1e-9)
    need_eur = np.where(problem.buy_divisible, short_kwh, problem.buy_quantity_kwh) * cheapest
    limited = has & (need_eur > np.where(account >= 0, left_eur[account], np.inf) + 1e-9)
    limited &= ~(~problem.buy_divisible & (bought > 0.0))
    orders: IntArray = problem.buy_order[limited]
    return orders
