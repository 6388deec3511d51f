"""The LP relaxation of the slot MILP: the upper bound behind every gap certificate."""

from __future__ import annotations

from gridmatch.matching.backends.base import BackendKind
from gridmatch.matching.backends.highs_backend import HighsBackend
from gridmatch.matching.backends.highs_runner import run_highs
from gridmatch.matching.knapsack_model import build_knapsack_arrays
from gridmatch.matching.problem import SlotProblem
from gridmatch.matching.solution import (
    SlotSolution,
    SolutionStatus,
    SolveOptions,
    SolverFailedError,
)


class LpRelaxationBackend(HighsBackend):
    """Binaries relaxed to [0, 1]; its welfare bounds every integer solution from above."""

    name = "lp-relaxation"
    kind = BackendKind.RELAXATION
    description = "LP relaxation on highspy (bound, not trades)"

    def solve_slot(  # noqa: D102
        self, problem: SlotProblem, options: SolveOptions, time_limit_s: float
    ) -> SlotSolution:
        arrays = build_knapsack_arrays(problem)
        answer = run_highs(arrays, options, time_limit_s, relax=True)
        if answer.col_values is None:
            raise SolverFailedError(
                f"LP relaxation of slot {problem.slot} failed: {answer.termination}"
            )
        # Fractional binaries stay fractional: scale columns to kWh without rounding.
        pair_kwh = (
            answer.col_values[: arrays.n_pair_cols] * arrays.col_kwh_per_unit[: arrays.n_pair_cols]
        )
        return SlotSolution(
            slot=problem.slot,
            pair_quantity_kwh=pair_kwh,
            bound_eur=answer.bound_eur,
            termination=answer.termination,
            status=SolutionStatus.RELAXED,
            runtime_s=answer.runtime_s,
        )
