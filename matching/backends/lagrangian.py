r"""The Lagrangian bound over per-seller knapsacks: the Dantzig-Wolfe bound of a slot.

Relax each indivisible buy's "at most one seller" row with a multiplier
:math:`\lambda_b \ge 0`; what is left splits into one 0/1 knapsack per seller:

.. math::

    L(\lambda) = \sum_b \lambda_b + \sum_s \max_{y_{\cdot s}} \Big\{
        \sum_b (w_{bs} q_b - \lambda_b) y_{bs} : \sum_b q_b y_{bs} \le Q_s \Big\}.

Every :math:`L(\lambda)` bounds the slot from above (an all-or-none seller's equality
is relaxed to its capacity, which only loosens it). Its minimum equals the bound of
Dantzig-Wolfe column generation over per-seller knapsack columns, which dominates the
LP: the LP is the same with each knapsack relaxed to a fractional one. So starting
from the LP's duals of the buy rows, :math:`L` is already at most the LP bound, and a
few subgradient steps (Polyak's step towards the best known allocation) lower it.
Each seller's knapsack is solved exactly by
:func:`~gridmatch.matching.knapsack_exact.solve_knapsack`, or its proven upper bound
is used where the time is up, so the result is always a valid bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridmatch.matching.backends.flow_relaxation import solve_flow_relaxation
from gridmatch.matching.knapsack_exact import solve_knapsack
from gridmatch.matching.problem import SlotProblem

FloatArray = npt.NDArray[np.float64]

# Subgradient steps at most; each solves one knapsack per seller.
MAX_STEPS = 30
# Polyak's step factor, halved after this many steps without a better bound.
STEP_FACTOR = 1.0
PATIENCE = 3


@dataclass(frozen=True)
class LagrangianBound:
    """The best Lagrangian bound found and how it was reached."""

    bound_eur: float
    steps: int


def lagrangian_bound(
    problem: SlotProblem, best_known_eur: float, deadline: float
) -> LagrangianBound | None:
    """Return the best Lagrangian bound found by ``deadline``, started from the LP duals.

    The slot must have indivisible buys only and no grid rows. ``None`` if the
    deadline has passed before the first evaluation could start.
    """
    if time.perf_counter() > deadline:
        return None
    duals = _lp_buy_duals(problem)
    sellers = _SellerKnapsacks.of(problem)
    multipliers = duals
    best = np.inf
    factor, stale, steps = STEP_FACTOR, 0, 0
    for steps in range(1, MAX_STEPS + 1):  # noqa: B007 (steps is reported)
        value, used = sellers.evaluate(multipliers, deadline)
        if value < best - 1e-12:
            best, stale = value, 0
        else:
            stale += 1
            if stale >= PATIENCE:
                factor, stale = factor / 2, 0
        if time.perf_counter() > deadline or best <= best_known_eur + 1e-9:
            break
        subgradient = 1.0 - used  # per buy: 1 - times it was taken
        norm = float(np.dot(subgradient, subgradient))
        if norm == 0.0:
            break  # the relaxed solution is feasible: L is exact at this point
        step = factor * (value - best_known_eur) / norm
        multipliers = np.maximum(multipliers - step * subgradient, 0.0)
    return LagrangianBound(float(best), steps)


def _lp_buy_duals(problem: SlotProblem) -> FloatArray:
    """Return the LP dual price of each buy row, in EUR per buy (its surplus)."""
    relaxation = solve_flow_relaxation(problem, duals=True)
    assert relaxation.buy_dual_eur_per_kwh is not None
    return relaxation.buy_dual_eur_per_kwh * problem.buy_quantity_kwh


@dataclass(frozen=True)
class _SellerKnapsacks:
    """Each seller's candidate buys, their Wh and their welfare in EUR."""

    problem: SlotProblem
    by_seller: list[npt.NDArray[np.int64]]

    @classmethod
    def of(cls, problem: SlotProblem) -> _SellerKnapsacks:
        order = np.argsort(problem.pair_sell, kind="stable")
        bounds = np.searchsorted(
            problem.pair_sell[order], np.arange(problem.sell_quantity_kwh.size + 1)
        )
        return cls(problem, [order[bounds[s] : bounds[s + 1]] for s in range(bounds.size - 1)])

    def evaluate(self, multipliers: FloatArray, deadline: float) -> tuple[float, FloatArray]:
        """Return the bound at ``multipliers`` and how often each buy is taken."""
        p = self.problem
        buy_wh = p.buy_quantity_wh()
        sell_wh = p.sell_quantity_wh()
        pair_eur = p.pair_welfare_eur_per_kwh * p.buy_quantity_kwh[p.pair_buy]
        total = float(multipliers.sum())
        used = np.zeros(p.buy_quantity_kwh.size)
        for s, pairs in enumerate(self.by_seller):
            if pairs.size == 0:
                continue
            buys = p.pair_buy[pairs]
            profits = pair_eur[pairs] - multipliers[buys]
            answer = solve_knapsack(buy_wh[buys], profits, int(sell_wh[s]), deadline)
            total += answer.upper_bound
            used[buys[answer.chosen]] += 1.0
        return total, used
