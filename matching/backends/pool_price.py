r"""The uniform price of a slot: the dual of its pool balance with the integer decisions fixed.

As ASSUME does for block bids: once the MILP has decided which indivisible buys are
served and which all-or-none sellers sell, those quantities are fixed, and the LP of
what is left is solved as a pool,

.. math::

    \max \sum_b L_b d_b - \sum_s L_s g_s \quad \text{s.t.} \quad
    \sum_s g_s - \sum_b d_b = D_0 - S_0 \;(\lambda), \quad
    0 \le d_b \le q_b, \; 0 \le g_s \le Q_s,

over the slot's divisible buys :math:`d_b` and divisible sellers :math:`g_s` that have
at least one compatible partner, where
:math:`D_0` is the kWh of the served indivisible buys and :math:`S_0` of the all-or-none
sellers that sell. The price :math:`\lambda` is the balance row's dual: the marginal
value of a kWh in the slot. Grid fees and which partner each order may trade with are
not in the pool (they are per pair), so the price can come from an order that could
trade, but not with the partner the pool assumes; each trade's price is :math:`\lambda` clipped into
``[sell limit, buy limit - fee]`` (market_rules.py), so nobody trades beyond its limit.
A slot without any divisible order has no marginal kWh: its trades are priced at the
midpoint of their range.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gridmatch.matching.backends.highs_runner import new_highs
from gridmatch.matching.problem import SlotProblem


def pool_price_eur_per_kwh(problem: SlotProblem, pair_kwh: npt.NDArray[np.float64]) -> float | None:
    """Return the slot's uniform price, or ``None`` if no divisible order can set one."""
    import highspy

    bought = np.bincount(problem.pair_buy, weights=pair_kwh, minlength=problem.buy_order.size)
    sold = np.bincount(problem.pair_sell, weights=pair_kwh, minlength=problem.sell_order.size)
    fixed_demand_kwh = float(bought[~problem.buy_divisible].sum())
    fixed_supply_kwh = float(sold[problem.sell_all_or_none].sum())
    # Only orders that can trade at all in the slot (with some compatible partner):
    # an order with none, e.g. a seller's own buy, must not set the price.
    has_pair_buy = np.isin(np.arange(problem.buy_order.size), problem.pair_buy)
    has_pair_sell = np.isin(np.arange(problem.sell_order.size), problem.pair_sell)
    buys = np.flatnonzero(problem.buy_divisible & has_pair_buy)
    sells = np.flatnonzero(~problem.sell_all_or_none & has_pair_sell)
    if buys.size + sells.size == 0:
        return None
    h = new_highs()
    lp = highspy.HighsLp()
    lp.num_col_ = int(buys.size + sells.size)
    lp.num_row_ = 1
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = np.concatenate(
        [problem.buy_limit_eur_per_kwh[buys], -problem.sell_limit_eur_per_kwh[sells]]
    )
    lp.col_lower_ = np.zeros(lp.num_col_)
    lp.col_upper_ = np.concatenate(
        [problem.buy_quantity_kwh[buys], problem.sell_quantity_kwh[sells]]
    )
    balance_kwh = fixed_demand_kwh - fixed_supply_kwh
    lp.row_lower_ = np.array([balance_kwh])
    lp.row_upper_ = np.array([balance_kwh])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(lp.num_col_ + 1)
    lp.a_matrix_.index_ = np.zeros(lp.num_col_, dtype=np.int32)
    lp.a_matrix_.value_ = np.concatenate([-np.ones(buys.size), np.ones(sells.size)])
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None  # the fixed quantities cannot balance: no marginal kWh to price
    # The row dual is the objective's change per kWh more net supply the pool must
    # find (HiGHS, maximising); the price of a kWh is minus that.
    return -float(h.getSolution().row_dual[0])
