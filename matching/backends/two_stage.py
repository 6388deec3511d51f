r"""The P2P-MKP patent's own method (US11501371B2): cap volumes for the grid, then match.

Stage 1, scheduling: each order's tradable volume :math:`v_i \in [0, d_i]` (declared
:math:`d_i`) is changed as little as possible, in L1, so that trading every order at
its volume is balanced and meets the slot's linearised grid rows:

.. math::

    \min \sum_i (d_i - v_i) \quad\text{s.t.}\quad
    \sum_{i\ \text{sell}} v_i = \sum_{i\ \text{buy}} v_i, \quad
    \mathrm{lower} \le A\,\iota(v) \le \mathrm{upper},

with :math:`\iota_k(v)` the kWh sold minus bought at bus :math:`k`. An LP on HiGHS.

Stage 2, matching: the knapsack model of :mod:`~gridmatch.matching.knapsack_model`
with every quantity capped at :math:`\min(d_i, v_i)` (whole Wh, rounded down; an
indivisible order or an all-or-none seller cut below its quantity cannot trade), and
without grid rows, solved like ``highspy``.

Trading a *subset* of the capped volumes is not what stage 1 checked, so the match
is then cut down to the slot's rows (:func:`~gridmatch.matching.secure_subset.drop_until_rows_hold`)
and, as for every formulation, verified by the AC power flow of secure clearing. A
slot without grid rows skips stage 1 and is the plain knapsack (exact); a slot with
rows claims feasibility only, and has no bound of its own: the decoupling gives up
what the integrated model (``highspy`` with rows) keeps, which
``benchmarks/bench_security.py`` measures.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from gridmatch.matching.backends.base import BackendKind
from gridmatch.matching.backends.highs_backend import HighsBackend
from gridmatch.matching.backends.highs_runner import new_highs
from gridmatch.matching.backends.highspy_direct import HighspyBackend
from gridmatch.matching.grid_rows import GridRows
from gridmatch.matching.problem import SlotProblem
from gridmatch.matching.secure_subset import drop_until_feasible
from gridmatch.matching.solution import (
    Provenance,
    SlotSolution,
    SolutionStatus,
    SolveOptions,
    TerminationCondition,
)
from gridmatch.units import WH_PER_KWH, floor_wh_array

FloatArray = npt.NDArray[np.float64]


class TwoStageBackend(HighsBackend):
    """Stage 1 caps volumes to the grid (L1 LP), stage 2 matches them (knapsack MILP)."""

    name = "two-stage"
    kind = BackendKind.EXACT  # exact on slots without grid rows; feasible only with them
    description = "patent US11501371B2: L1 volume caps for the grid rows, then the knapsack"
    # Stage 2 is the highspy backend's solve: its start's kernels, loaded before the clock.
    preload = HighspyBackend.preload

    def solve_slot(  # noqa: D102
        self, problem: SlotProblem, options: SolveOptions, time_limit_s: float
    ) -> SlotSolution:
        began = time.perf_counter()
        stage_two = HighspyBackend()
        if problem.grid is None or problem.grid.n_rows == 0 or problem.n_pairs == 0:
            return stage_two.solve_slot(problem, options, time_limit_s)
        volume_kwh = schedule_volumes_kwh(problem, problem.grid)
        if volume_kwh is None:
            return _cut_down(problem, np.zeros(problem.n_pairs), began)
        capped, kept = capped_problem(problem, volume_kwh)
        left_s = max(time_limit_s - (time.perf_counter() - began), 0.01)
        matched = stage_two.solve_slot(capped, options, left_s)
        pair_kwh = np.zeros(problem.n_pairs)
        pair_kwh[kept] = matched.pair_quantity_kwh
        return _cut_down(problem, pair_kwh, began, matched)


def schedule_volumes_kwh(problem: SlotProblem, rows: GridRows) -> FloatArray | None:
    """Stage 1: the L1-closest balanced volumes (per local buy, then sell) meeting the rows.

    Returns ``None`` if HiGHS does not solve the LP (trading nothing always meets
    the rows, so it is feasible; a failure is numerical).
    """
    import highspy

    n_buys, n_sells = problem.buy_quantity_kwh.size, problem.sell_quantity_kwh.size
    buy_column = np.searchsorted(rows.buses, problem.buy_bus)
    sell_column = np.searchsorted(rows.buses, problem.sell_bus)
    # Row r's activity per kWh of each order's volume: + at a seller's bus, - at a buyer's.
    security = np.hstack(
        [-rows.coefficient_per_kwh[:, buy_column], rows.coefficient_per_kwh[:, sell_column]]
    )
    balance = np.concatenate([-np.ones(n_buys), np.ones(n_sells)])[None, :]
    matrix = np.vstack([balance, security])
    h = new_highs()
    lp = highspy.HighsLp()
    lp.num_col_ = n_buys + n_sells
    lp.num_row_ = int(matrix.shape[0])
    lp.sense_ = highspy.ObjSense.kMaximize  # max sum(v) = min sum(d - v) for v <= d
    lp.col_cost_ = np.ones(lp.num_col_)
    lp.col_lower_ = np.zeros(lp.num_col_)
    lp.col_upper_ = np.concatenate([problem.buy_quantity_kwh, problem.sell_quantity_kwh])
    lp.row_lower_ = np.concatenate([[0.0], rows.lower])
    lp.row_upper_ = np.concatenate([[0.0], rows.upper])
    columns = sp.csc_matrix(matrix)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = columns.indptr
    lp.a_matrix_.index_ = columns.indices
    lp.a_matrix_.value_ = columns.data
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    volume: FloatArray = np.clip(np.asarray(h.getSolution().col_value), 0.0, lp.col_upper_)
    return volume


def capped_problem(
    problem: SlotProblem, volume_kwh: FloatArray
) -> tuple[SlotProblem, npt.NDArray[np.int64]]:
    """Stage 2's slot: quantities capped at the volumes; the pairs kept, by index.

    Volumes become whole Wh rounded down; an indivisible buy or all-or-none seller
    whose volume is below its quantity loses its pairs (it cannot trade part).
    """
    n_buys = problem.buy_quantity_kwh.size
    declared_kwh = np.concatenate([problem.buy_quantity_kwh, problem.sell_quantity_kwh])
    capped_kwh = floor_wh_array(np.minimum(volume_kwh, declared_kwh)) / WH_PER_KWH
    buy_kwh, sell_kwh = capped_kwh[:n_buys], capped_kwh[n_buys:]
    # An order that lost (nearly) nothing keeps its declared quantity exactly.
    buy_whole = buy_kwh >= problem.buy_quantity_kwh - 1e-9
    sell_whole = sell_kwh >= problem.sell_quantity_kwh - 1e-9
    buy_kwh = np.where(buy_whole, problem.buy_quantity_kwh, buy_kwh)
    sell_kwh = np.where(sell_whole, problem.sell_quantity_kwh, sell_kwh)
    buy_ok = (problem.buy_divisible | buy_whole) & (buy_kwh > 0.0)
    sell_ok = (~problem.sell_all_or_none | sell_whole) & (sell_kwh > 0.0)
    pair_ok = buy_ok[problem.pair_buy] & sell_ok[problem.pair_sell]
    # An indivisible buy larger than its seller's capped quantity cannot use that pair.
    pair_ok &= problem.buy_divisible[problem.pair_buy] | (
        problem.buy_quantity_kwh[problem.pair_buy] <= sell_kwh[problem.pair_sell] + 1e-9
    )
    kept = np.flatnonzero(pair_ok)
    capped = replace(
        problem,
        buy_quantity_kwh=buy_kwh,
        sell_quantity_kwh=sell_kwh,
        pair_buy=problem.pair_buy[kept],
        pair_sell=problem.pair_sell[kept],
        pair_fee_eur_per_kwh=problem.pair_fee_eur_per_kwh[kept],
        pair_welfare_eur_per_kwh=problem.pair_welfare_eur_per_kwh[kept],
        grid=None,
        budget=None if problem.budget is None else problem.budget.subset(kept),
    )
    return capped, kept


def _cut_down(
    problem: SlotProblem,
    pair_kwh: FloatArray,
    began: float,
    matched: SlotSolution | None = None,
) -> SlotSolution:
    """Return the stage-2 match cut down to the slot's rows: feasible, no bound."""
    secure = drop_until_feasible(problem, pair_kwh)
    changed = not np.array_equal(secure, pair_kwh)
    return SlotSolution(
        slot=problem.slot,
        pair_quantity_kwh=secure,
        bound_eur=None,
        termination=TerminationCondition.CONVERGED if matched is None else matched.termination,
        status=SolutionStatus.FEASIBLE,
        runtime_s=time.perf_counter() - began,
        provenance=Provenance.CUT_TO_ROWS if changed else Provenance.SOLVER,
    )
