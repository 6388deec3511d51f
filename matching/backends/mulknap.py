"""A MULKNAP-style exact slot solver: surrogate bound, subset-sum filling, HiGHS for the rest.

Pisinger's idea (EJOR 1999) for the multiple knapsack problem, on our slots:

1. **Surrogate relaxation.** Add up the sellers' capacities into one knapsack and let
   each indivisible buy be worth the most any compatible seller gives it. Every
   feasible allocation is feasible there, so the single knapsack's optimum (solved
   exactly by :func:`~gridmatch.matching.knapsack_exact.solve_knapsack`) bounds the
   slot, usually far tighter than the LP on bin-packing-like slots.
2. **Filling.** Pack the surrogate solution's buys into the sellers one at a time,
   each by an exact subset-sum. If every buy finds a seller that gives it its best
   welfare, the allocation reaches the bound: proven optimal, no branching.
3. **Branching only where needed.** Otherwise the per-seller Lagrangian bound
   (:mod:`~gridmatch.matching.backends.lagrangian`, the Dantzig-Wolfe bound, tighter
   than the LP on bin-packing-like slots) is computed, HiGHS solves the slot MILP from
   the best allocation found, and the slot's bound is the least of the surrogate's, the
   Lagrangian's and HiGHS's (``bound_source`` says which).

Slots with grid rows or divisible buys have no surrogate here (a divisible buy makes
the single knapsack a mixed one, and grid rows do not aggregate): they go straight to
step 3, and their provenance says ``solver`` with the HiGHS bound, as for ``highspy``.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from gridmatch.matching.backends.base import BackendKind
from gridmatch.matching.backends.greedy import greedy_pair_kwh
from gridmatch.matching.backends.highs_backend import HighsBackend
from gridmatch.matching.backends.highs_runner import run_highs
from gridmatch.matching.backends.lagrangian import lagrangian_bound
from gridmatch.matching.backends.seller_dp import best_start_pair_kwh
from gridmatch.matching.knapsack_model import build_knapsack_arrays
from gridmatch.matching.problem import SlotProblem
from gridmatch.matching.secure_subset import drop_until_feasible
from gridmatch.matching.solution import (
    BoundSource,
    Provenance,
    SlotSolution,
    SolutionStatus,
    SolveOptions,
    TerminationCondition,
)

FloatArray = npt.NDArray[np.float64]

# Shares of the slot's time the surrogate knapsack and then the Lagrangian bound may
# take before HiGHS gets the rest.
SURROGATE_TIME_SHARE = 0.3
LAGRANGIAN_TIME_SHARE = 0.2
# Seeded shuffles of the seller order tried after smallest- and largest-first.
PACK_TRIES = 6
# HiGHS needs a positive limit; a slot whose share is used up still gets this long.
MIN_SOLVER_S = 0.01


class MulknapBackend(HighsBackend):
    """Surrogate knapsack bound and subset-sum filling; HiGHS branches what is left."""

    name = "mulknap"
    kind = BackendKind.EXACT
    description = "surrogate knapsack bound + subset-sum filling (Pisinger), HiGHS if needed"
    requires = ("highspy", "numba")
    preload = ("gridmatch.matching.knapsack_exact",)  # the seller-DP start

    def __init__(self) -> None:
        # numba compiles the kernels on first use (seconds without its cache): here,
        # before any clock of a clearing starts, as part of start-up.
        from gridmatch.matching import knapsack_exact, residual_potentials

        knapsack_exact.warm_up()
        residual_potentials.warm_up()

    def solve_slot(  # noqa: D102
        self, problem: SlotProblem, options: SolveOptions, time_limit_s: float
    ) -> SlotSolution:
        began = time.perf_counter()
        if problem.n_pairs == 0:
            return SlotSolution.nothing_to_trade(problem.slot)
        if not _has_surrogate(problem):
            return _branch(problem, options, (began, time_limit_s), None, {})
        from gridmatch.matching import knapsack_exact

        items, weights_wh, profits_eur = _surrogate_items(problem)
        capacity_wh = int(problem.sell_quantity_wh()[np.unique(problem.pair_sell)].sum())
        answer = knapsack_exact.solve_knapsack(
            weights_wh,
            profits_eur,
            capacity_wh,
            deadline=began + SURROGATE_TIME_SHARE * time_limit_s,
        )
        packed = _pack(problem, items[answer.chosen])
        welfare = problem.welfare_eur(packed)
        tolerance = knapsack_exact.PROFIT_TOLERANCE * max(1.0, answer.upper_bound)
        # Proven: the packing must reach the surrogate's optimum (its bound carries the
        # tolerance on top); unproven: the bound itself.
        target = answer.value if answer.proven else answer.upper_bound
        if welfare >= target - tolerance:
            return SlotSolution(
                slot=problem.slot,
                pair_quantity_kwh=packed,
                bound_eur=answer.upper_bound,
                termination=TerminationCondition.CONVERGED,
                status=SolutionStatus.OPTIMAL,
                runtime_s=time.perf_counter() - began,
                bound_source=BoundSource.SURROGATE,
            )
        bounds = {BoundSource.SURROGATE: answer.upper_bound}
        # Where filling fell short, the per-seller Lagrangian (Dantzig-Wolfe) bound.
        bound_deadline = began + (SURROGATE_TIME_SHARE + LAGRANGIAN_TIME_SHARE) * time_limit_s
        start_kwh = _best_start(problem, packed, bound_deadline)
        lagrangian = lagrangian_bound(problem, problem.welfare_eur(start_kwh), bound_deadline)
        if lagrangian is not None:
            bounds[BoundSource.LAGRANGIAN] = lagrangian.bound_eur
        return _branch(problem, options, (began, time_limit_s), start_kwh, bounds)


def _has_surrogate(problem: SlotProblem) -> bool:
    """Whether the slot is a multiple knapsack of indivisible buys without other rows."""
    grid_free = problem.grid is None or problem.grid.n_rows == 0
    return grid_free and problem.budget is None and bool(problem.pair_indivisible.all())


def _surrogate_items(
    problem: SlotProblem,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray]:
    """Buys with a pair, their Wh, and the best welfare (EUR) any seller gives each."""
    pair_eur = problem.pair_welfare_eur_per_kwh * problem.buy_quantity_kwh[problem.pair_buy]
    items, first = np.unique(problem.pair_buy, return_index=True)
    # Pairs are sorted by buy: the maximum over each buy's run of pairs.
    best_eur = np.maximum.reduceat(pair_eur, first)
    return items.astype(np.int64), problem.buy_quantity_wh()[items], best_eur


def _pack(problem: SlotProblem, chosen_buys: npt.NDArray[np.int64]) -> FloatArray:
    """Place the chosen buys into sellers; the best of a few seller orders.

    Filling sellers one at a time can strand a buy that a different order would have
    placed, so smallest-first, largest-first and seeded shuffles are tried until one
    places every chosen buy.
    """
    sellers = np.unique(problem.pair_sell)
    sell_wh = problem.sell_quantity_wh()
    ascending = sellers[np.lexsort((sellers, sell_wh[sellers]))]
    rng = np.random.default_rng(0)
    orders = [ascending, ascending[::-1]] + [rng.permutation(ascending) for _ in range(PACK_TRIES)]
    best = np.zeros(problem.n_pairs)
    for seller_order in orders:
        pair_kwh, placed_all = _pack_in_order(problem, chosen_buys, seller_order)
        if problem.welfare_eur(pair_kwh) > problem.welfare_eur(best):
            best = pair_kwh
        if placed_all:
            break
    return best


def _pack_in_order(
    problem: SlotProblem, chosen_buys: npt.NDArray[np.int64], sellers: npt.NDArray[np.int64]
) -> tuple[FloatArray, bool]:
    """Fill ``sellers`` in this order, each by subset-sum over the chosen buys left.

    A buy goes only to a seller that gives it its best welfare (else the surrogate's
    value is lost anyway and HiGHS decides); an all-or-none seller takes buys only if
    they fill it exactly. Returns the allocation and whether every chosen buy is placed.
    """
    from gridmatch.matching.knapsack_exact import fill_exactly

    pair_kwh = np.zeros(problem.n_pairs)
    pair_eur = problem.pair_welfare_eur_per_kwh * problem.buy_quantity_kwh[problem.pair_buy]
    items, first = np.unique(problem.pair_buy, return_index=True)
    best_eur = np.zeros(problem.buy_quantity_kwh.size)
    best_eur[items] = np.maximum.reduceat(pair_eur, first)
    best_pair = pair_eur >= best_eur[problem.pair_buy] * (1.0 - 1e-12)
    waiting = np.zeros(problem.buy_quantity_kwh.size, dtype=bool)
    waiting[chosen_buys] = True
    buy_wh = problem.buy_quantity_wh()
    sell_wh = problem.sell_quantity_wh()
    for s in sellers.tolist():
        pairs = np.flatnonzero((problem.pair_sell == s) & best_pair)
        pairs = pairs[waiting[problem.pair_buy[pairs]]]
        if pairs.size == 0:
            continue
        buys = problem.pair_buy[pairs]
        picked = fill_exactly(buy_wh[buys], int(sell_wh[s]))
        if problem.sell_all_or_none[s] and int(buy_wh[buys[picked]].sum()) != int(sell_wh[s]):
            continue
        pair_kwh[pairs[picked]] = problem.buy_quantity_kwh[buys[picked]]
        waiting[buys[picked]] = False
    return pair_kwh, not waiting.any()


def _best_start(
    problem: SlotProblem, packed: FloatArray | None, deadline: float = np.inf
) -> FloatArray:
    """Return the better of the packed surrogate solution and the seller-DP start.

    Past ``deadline`` the seller-DP (up to a second on a 10,000-buy slot) is skipped
    for the merit-order greedy.
    """
    if time.perf_counter() < deadline:
        start_kwh = best_start_pair_kwh(problem)
    else:
        start_kwh = drop_until_feasible(problem, greedy_pair_kwh(problem))
    if packed is not None and problem.welfare_eur(packed) > problem.welfare_eur(start_kwh):
        return packed
    return start_kwh


def _branch(
    problem: SlotProblem,
    options: SolveOptions,
    clock: tuple[float, float],
    start_kwh: FloatArray | None,
    bounds: dict[BoundSource, float],
) -> SlotSolution:
    """Solve the slot MILP on HiGHS from the best start; keep the tightest bound.

    ``clock`` is when the slot began and its time limit; ``bounds`` the relaxations'
    bounds found so far, by source.
    """
    began, time_limit_s = clock
    arrays = build_knapsack_arrays(problem)
    if start_kwh is None:
        start_kwh = _best_start(problem, None)
    left_s = max(time_limit_s - (time.perf_counter() - began), MIN_SOLVER_S)
    answer = run_highs(
        arrays,
        options,
        left_s,
        relax=False,
        start_values=arrays.columns_from_pair_kwh(problem, start_kwh),
    )
    if answer.bound_eur is not None:
        bounds = {**bounds, BoundSource.SOLVER: answer.bound_eur}
    source = min(bounds, key=bounds.__getitem__) if bounds else BoundSource.SOLVER
    bound = bounds.get(source)
    if answer.col_values is None:
        pair_kwh, provenance = start_kwh, Provenance.START
    else:
        pair_kwh, provenance = arrays.pair_kwh(answer.col_values), Provenance.SOLVER
    welfare = problem.welfare_eur(pair_kwh)
    within_gap = bound is not None and welfare >= bound * (1.0 - options.mip_gap) - 1e-9
    optimal = answer.proven_optimal or within_gap
    return SlotSolution(
        slot=problem.slot,
        pair_quantity_kwh=pair_kwh,
        bound_eur=bound,
        termination=answer.termination,
        status=SolutionStatus.OPTIMAL if optimal else SolutionStatus.FEASIBLE,
        runtime_s=time.perf_counter() - began,
        provenance=provenance,
        bound_source=source,
    )
