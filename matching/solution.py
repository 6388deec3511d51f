"""One status vocabulary and one result type for every backend.

As in Pyomo's new solver interface, *why the solver stopped* (termination) is kept
apart from *what solution we have* (solution status); *where the allocation came from*
(provenance: the solver, its warm start, a heuristic, a cut-down or fallback of the
security loop, the tie-break's second stage) is a third, separate word.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from gridmatch.errors import SolverError, UsageError


class SolverFailedError(SolverError):
    """A solver stopped with an error instead of a solution or a time limit."""


class InconsistentAllocationError(SolverError):
    """A backend returned an allocation that breaks the market rules (a bug, not bad input)."""


class TerminationCondition(StrEnum):
    """Why a backend stopped on a slot.

    ``converged`` means the method met its own stopping rule: an exact solver proved
    its answer within the gap, a heuristic finished its pass. Whether that proves
    anything is said by :class:`SolutionStatus` and :class:`Provenance`.
    """

    CONVERGED = "converged"
    TIME_LIMIT = "time_limit"
    ERROR = "error"


class SolutionStatus(StrEnum):
    """What kind of allocation a backend returned."""

    OPTIMAL = "optimal"  # optimal within the requested gap
    FEASIBLE = "feasible"
    RELAXED = "relaxed"  # a relaxation: may split indivisible orders, not executable
    NONE = "none"


class Provenance(StrEnum):
    """Where a slot's allocation came from."""

    SOLVER = "solver"  # the backend's solver found it
    START = "start"  # the solver found nothing in time: its (feasible) warm start
    HEURISTIC = "heuristic"  # a heuristic built it; no optimality claim
    SECOND_STAGE = "second_stage"  # the tie-break's second stage chose it among equals
    CUT_TO_ROWS = "cut_to_rows"  # the solver's answer, trades dropped until grid rows held
    CUT_TO_BUDGET = "cut_to_budget"  # trades dropped until prepaid budgets held
    FALLBACK = "fallback"  # the security loop's secure subset after AC rejections
    AC_SEARCH = "ac_search"  # trades added to a secure answer, each addition AC-checked


class BoundSource(StrEnum):
    """Which relaxation gave a slot's upper bound (the certificate of its gap)."""

    LP = "lp"  # the LP relaxation every clearing solves (flow_relaxation.py)
    SOLVER = "solver"  # the MILP solver's own dual bound
    SURROGATE = "surrogate"  # the surrogate single knapsack (knapsack_exact.py)
    LAGRANGIAN = "lagrangian"  # per-seller knapsacks, Dantzig-Wolfe (backends/lagrangian.py)
    AC_RELAXATION = (
        "ac_relaxation"  # conic relaxation of the AC grid (grid_models/ac_relaxation.py)
    )


class TieBreak(StrEnum):
    """Which of several equally good allocations of a slot becomes the result."""

    NONE = "none"  # whichever the formulation found first
    PRICE_TIME = "price-time"  # most volume, then earlier orders first (tie_break.py)


@dataclass(frozen=True)
class SolveOptions:
    """Run settings that change results; written to every manifest.

    Attributes
    ----------
    time_limit_s
        Wall-clock budget for the whole clearing (shared out over the slots).
    mip_gap
        Relative gap at which a MILP solver may stop and call its solution optimal.
    threads
        Slots solved at once, each in its own process on one solver thread.
        Results do not depend on it unless a time limit binds.
    seed
        Random seed handed to every solver.
    tie_break
        ``price-time``: an exact formulation's optimal slot answers go through a second
        stage that picks, among allocations of the same welfare, one rule's choice, so
        every exact formulation gives the same trades
        (:mod:`gridmatch.matching.tie_break`). Heuristics keep their own order.
    """

    time_limit_s: float = 30.0
    mip_gap: float = 1.0e-4
    threads: int = 1
    seed: int = 0
    tie_break: TieBreak = TieBreak.NONE

    def __post_init__(self) -> None:
        if not self.time_limit_s > 0.0:
            raise UsageError(f"time_limit_s must be positive, got {self.time_limit_s}")
        if not self.mip_gap >= 0.0:
            raise UsageError(f"mip_gap must not be negative, got {self.mip_gap}")
        if self.threads < 1:
            raise UsageError(f"threads must be at least 1, got {self.threads}")
        if self.seed < 0:
            raise UsageError(f"seed must not be negative, got {self.seed}")
        # A plain string from a file or a flag becomes the enum (or fails here).
        object.__setattr__(self, "tie_break", TieBreak(self.tie_break))

    def to_dict(self) -> dict[str, Any]:
        """Return the options as written to summaries, manifests and the round ledger."""
        return {
            "time_limit_s": self.time_limit_s,
            "mip_gap": self.mip_gap,
            "threads": self.threads,
            "seed": self.seed,
            "tie_break": self.tie_break.value,
        }


@dataclass(frozen=True)
class SlotSolution:
    """A backend's answer for one slot.

    Attributes
    ----------
    pair_quantity_kwh
        kWh traded on each pair of the slot problem (aligned with its pair arrays).
    bound_eur
        Proven upper bound on the slot's welfare, if the backend proves one.
    termination
        Why the backend's solver (or heuristic) stopped on the slot.
    provenance
        Where the allocation came from.
    second_stage
        Why the tie-break's second stage stopped (``None``: it did not run). On
        ``time_limit`` the first stage's answer stands, and the tie was left undecided.
    bound_source
        Which relaxation ``bound_eur`` comes from (``solver`` when not said).
    """

    slot: int
    pair_quantity_kwh: npt.NDArray[np.float64]
    bound_eur: float | None
    termination: TerminationCondition
    status: SolutionStatus
    runtime_s: float
    provenance: Provenance = Provenance.SOLVER
    second_stage: TerminationCondition | None = None
    bound_source: BoundSource = BoundSource.SOLVER

    @classmethod
    def nothing_to_trade(cls, slot: int) -> SlotSolution:
        """Answer a slot without compatible pairs: trading nothing, proven optimal."""
        return cls(
            slot, np.zeros(0), 0.0, TerminationCondition.CONVERGED, SolutionStatus.OPTIMAL, 0.0
        )
