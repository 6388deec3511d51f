"""The slot MILP built as arrays and passed straight to HiGHS (no modelling layer)."""

from __future__ import annotations

import time

from gridmatch.matching.backends.base import BackendKind
from gridmatch.matching.backends.highs_backend import HighsBackend
from gridmatch.matching.backends.highs_runner import run_highs
from gridmatch.matching.backends.seller_dp import best_start_pair_kwh
from gridmatch.matching.knapsack_model import build_knapsack_arrays
from gridmatch.matching.problem import SlotProblem
from gridmatch.matching.solution import Provenance, SlotSolution, SolutionStatus, SolveOptions

# HiGHS needs a positive limit; a slot whose share is used up still gets this long.
MIN_SOLVER_S = 0.01


class HighspyBackend(HighsBackend):
    """Multiple-knapsack MILP per slot on highspy, warm-started from the seller-DP match."""

    name = "highspy"
    kind = BackendKind.EXACT
    description = "slot MILP as arrays on highspy, seller-DP incumbent"
    preload = ("gridmatch.matching.knapsack_exact",)  # the seller-DP start

    def solve_slot(  # noqa: D102
        self, problem: SlotProblem, options: SolveOptions, time_limit_s: float
    ) -> SlotSolution:
        began = time.perf_counter()
        arrays = build_knapsack_arrays(problem)
        start_kwh = best_start_pair_kwh(problem)
        start = arrays.columns_from_pair_kwh(problem, start_kwh)
        # The slot's time limit covers building the start, too.
        left_s = max(time_limit_s - (time.perf_counter() - began), MIN_SOLVER_S)
        answer = run_highs(arrays, options, left_s, relax=False, start_values=start)
        if answer.col_values is None:
            # HiGHS found nothing in time; the start is still feasible.
            return SlotSolution(
                problem.slot,
                start_kwh,
                answer.bound_eur,
                answer.termination,
                SolutionStatus.FEASIBLE,
                time.perf_counter() - began,
                provenance=Provenance.START,
            )
        status = SolutionStatus.OPTIMAL if answer.proven_optimal else SolutionStatus.FEASIBLE
        return SlotSolution(
            slot=problem.slot,
            pair_quantity_kwh=arrays.pair_kwh(answer.col_values),
            bound_eur=answer.bound_eur,
            termination=answer.termination,
            status=status,
            runtime_s=time.perf_counter() - began,
        )
