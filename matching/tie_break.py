r"""Volume and price-time priority among allocations of equal welfare (opt-in second stage).

Two optimal allocations of a slot may trade different pairs at the same welfare: two
sellers at the same price, two buyers at the same limit. Each formulation keeps
whichever its search met first, so formulations (and ``rounds diff``) disagree on
trades that change nothing. With ``tie_break = "price-time"`` every exact
formulation's slot answer goes through one more MILP, the same for all of them:

.. math::

    \max_x \sum_p \rho_p x_p \quad\text{s.t. the slot's rows (market and grid) and}\quad
    w^\top x \ge W_1

where :math:`x_p` is the kWh of pair :math:`p`, :math:`w` the welfare per kWh and
:math:`W_1` the welfare of the formulation's answer. :math:`\rho_p = 1 + \pi_p` with
:math:`\pi_p \in (0, 1/2]` (see :func:`priority_per_kwh`): a kWh more outweighs any
priority, so among equal-welfare allocations the one trading the most wins, then the
one that gives earlier sellers and earlier buyers (file order; in rounds, submission
time) their energy first, paired earliest with earliest.

Only answers the formulation proved optimal are equal-welfare ties of each other,
so only they become identical across formulations. The welfare row is tight (its
floor is :math:`W_1` itself, scaled so the solver's row tolerance is worth 1e-10 EUR),
so the second stage cannot trade welfare for priority by moving fractions of a Wh;
its answer is a vertex of the optimal face, rounded to 1e-9 kWh so that float noise
from different :math:`W_1` sums does not reach trades.csv, and checked: a second stage
never lowers welfare beyond :data:`WELFARE_SLACK_EUR` per EUR.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from gridmatch.matching.knapsack_model import KnapsackArrays, build_knapsack_arrays
from gridmatch.matching.problem import SlotProblem
from gridmatch.matching.solution import Provenance, SlotSolution, SolutionStatus, SolveOptions

# The second stage may lose at most this much welfare per EUR (else it is not used).
WELFARE_SLACK_EUR = 1e-9
# HiGHS's MIP row tolerance (1e-6) on the welfare row scaled by this is worth 1e-10 EUR.
_WELFARE_ROW_SCALE = 1e4
# A second stage whose share of the time limit is used up still gets this long.
MIN_STAGE_S = 0.05
# Second-stage quantities are rounded to this many decimals of a kWh (1e-6 Wh).
_KWH_DECIMALS = 9


def priority_per_kwh(problem: SlotProblem) -> npt.NDArray[np.float64]:
    r"""Second-stage objective per kWh of each pair: 1 plus its price-time priority.

    With :math:`a_s, b_b \in (0, 1]` falling with the seller's and the buyer's position
    in the slot (= in the book), :math:`\pi_{bs} = a_s (1 + b_b) / 4`. The product
    makes the pairing matter, not only who sells and who buys: of two ways to pair
    the same sellers with the same buyers, the one matching earlier sellers with
    earlier buyers scores higher (rearrangement inequality).
    """
    n_buys = problem.buy_quantity_kwh.size
    n_sells = problem.sell_quantity_kwh.size
    seller = (n_sells - problem.pair_sell.astype(float)) / n_sells
    buyer = (n_buys - problem.pair_buy.astype(float)) / n_buys
    result: npt.NDArray[np.float64] = 1.0 + seller * (1.0 + buyer) / 4.0
    return result


def settle_ties(
    problems: Sequence[SlotProblem],
    solutions: Sequence[SlotSolution],
    options: SolveOptions,
    started: float,
) -> list[SlotSolution]:
    """Run :func:`break_ties` on every slot, sharing the time ``options`` has left.

    Parameters
    ----------
    started
        ``time.perf_counter()`` when the first stage began: the second stages get
        what is left of ``options.time_limit_s`` (at least :data:`MIN_STAGE_S` each).
    """
    settled = []
    for k, (problem, solution) in enumerate(zip(problems, solutions, strict=True)):
        left_s = options.time_limit_s - (time.perf_counter() - started)
        share_s = max(left_s / (len(problems) - k), MIN_STAGE_S)
        settled.append(break_ties(problem, solution, options, share_s))
    return settled


def break_ties(
    problem: SlotProblem, solution: SlotSolution, options: SolveOptions, time_limit_s: float
) -> SlotSolution:
    """Re-solve a slot for volume and price-time priority at no loss of welfare.

    Returns
    -------
    SlotSolution
        The second stage's allocation (provenance ``second_stage``), with the first
        stage's bound, termination and status; the first stage's answer unchanged if
        it was not proven optimal or had no trade alternative. If the second stage is
        not proven in time, the first stage's answer stands with ``second_stage =
        time_limit``: the tie was left to the clock.
    """
    if solution.status is not SolutionStatus.OPTIMAL or problem.n_pairs == 0:
        return solution
    # HiGHS decides every tie, whichever formulation found the first stage; imported
    # here so that a heuristic never needs it.
    from gridmatch.matching.backends.highs_runner import run_highs

    arrays = build_knapsack_arrays(problem)
    welfare_eur = problem.welfare_eur(solution.pair_quantity_kwh)
    stage_two = _stage_two_arrays(problem, arrays, welfare_eur)
    start = arrays.columns_from_pair_kwh(problem, solution.pair_quantity_kwh)
    # The tie is decided only at the true optimum of the second stage: no gap.
    answer = run_highs(
        stage_two, options, time_limit_s, relax=False, start_values=start, exact=True
    )
    runtime_s = solution.runtime_s + answer.runtime_s
    stopped = replace(solution, runtime_s=runtime_s, second_stage=answer.termination)
    if answer.col_values is None or not answer.proven_optimal:
        return stopped
    pair_kwh = np.round(stage_two.pair_kwh(answer.col_values), _KWH_DECIMALS)
    if problem.welfare_eur(pair_kwh) < welfare_eur - WELFARE_SLACK_EUR * max(1.0, welfare_eur):
        return stopped  # never trade welfare for priority
    return replace(stopped, pair_quantity_kwh=pair_kwh, provenance=Provenance.SECOND_STAGE)


def _stage_two_arrays(
    problem: SlotProblem, arrays: KnapsackArrays, welfare_eur: float
) -> KnapsackArrays:
    n_pairs = arrays.n_pair_cols
    unit_kwh = arrays.col_kwh_per_unit[:n_pairs]
    cost = np.zeros(arrays.n_cols)
    cost[:n_pairs] = priority_per_kwh(problem) * unit_kwh
    welfare_row = sp.csc_matrix(arrays.col_cost * _WELFARE_ROW_SCALE).reshape(1, arrays.n_cols)
    return replace(
        arrays,
        col_cost=cost,
        matrix=sp.vstack([arrays.matrix, welfare_row]).tocsc(),
        row_lower=np.append(arrays.row_lower, welfare_eur * _WELFARE_ROW_SCALE),
        row_upper=np.append(arrays.row_upper, np.inf),
    )
