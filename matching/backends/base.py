"""What every backend declares and how slots share the time budget."""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from enum import StrEnum
from importlib.metadata import version
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from gridmatch.matching.budget_cut import drop_until_budgets_hold
from gridmatch.matching.problem import SlotProblem
from gridmatch.matching.secure_subset import drop_until_feasible
from gridmatch.matching.solution import (
    Provenance,
    SlotSolution,
    SolutionStatus,
    SolveOptions,
    TerminationCondition,
    TieBreak,
)
from gridmatch.matching.tie_break import settle_ties


def packages_importable(*names: str) -> bool:
    """Whether every named package can be imported, without importing it; never raises.

    A broken installation (a finder that fails, a module set to ``None``) counts as
    missing, so a backend that depends on it is listed as unavailable, not crashing.
    """
    try:
        return all(importlib.util.find_spec(name) is not None for name in names)
    except (ImportError, ValueError):
        return False


class BackendKind(StrEnum):
    """What a backend's answer means."""

    EXACT = "exact"  # proves optimality within the gap, given the time
    HEURISTIC = "heuristic"  # a feasible answer with no proof
    RELAXATION = "relaxation"  # an upper bound; its allocation may split indivisible orders


class Backend(ABC):
    """A way to solve slot problems: one formulation on one solver.

    Subclasses set the class attributes and implement :meth:`solve_slot`; a backend that
    solves all slots in one model (the textbook baseline) overrides :meth:`solve_slots`.
    ``requires`` names the packages it imports (lazily, when it solves): it is available
    only if all of them can be imported, and unavailable if it names none, so a backend
    that forgets to say what it needs fails safe.
    """

    name: ClassVar[str]
    solver: ClassVar[str]
    kind: ClassVar[BackendKind]
    description: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    # Modules a solve imports lazily besides ``requires`` (the numba kernels of a start
    # heuristic: a second to import, 0.3 s more to load on their first call), loaded
    # and warmed by :meth:`load_solver_modules`.
    preload: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def load_solver_modules(cls) -> None:
        """Import ``requires`` and ``preload`` (and warm them) before any slot's time starts.

        Otherwise the first slot that needs them pays for their import out of its share
        of the time limit (numba's alone takes about a second, several under load), may
        stop early, and then gives other trades than a run that had them loaded.
        """
        _import_all(cls.requires + cls.preload)

    @classmethod
    def is_available(cls) -> bool:
        """Whether the solver packages import; never raises."""
        return bool(cls.requires) and packages_importable(*cls.requires)

    @classmethod
    def install_hint(cls) -> str:
        """Return what to install to make the backend available."""
        return f"pip install {' '.join(cls.requires)}" if cls.requires else "pip install gridmatch"

    @classmethod
    def solver_version(cls) -> str:
        """Version of the underlying solver package (the first of ``requires``)."""
        return version(cls.requires[0]) if cls.requires else "n/a"

    @abstractmethod
    def solve_slot(
        self, problem: SlotProblem, options: SolveOptions, time_limit_s: float
    ) -> SlotSolution:
        """Solve one slot within ``time_limit_s`` seconds."""

    def solve(self, problems: Sequence[SlotProblem], options: SolveOptions) -> list[SlotSolution]:
        """Solve the slots within ``options.time_limit_s``; then, if asked, settle ties.

        With ``options.tie_break`` set, an exact backend's optimal slot answers go
        through :func:`~gridmatch.matching.tie_break.settle_ties` in the time left.
        """
        started = time.perf_counter()
        solutions = [
            _within_budget(problem, solution)
            for problem, solution in zip(problems, self.solve_slots(problems, options), strict=True)
        ]
        if options.tie_break is TieBreak.NONE or self.kind is not BackendKind.EXACT:
            return solutions
        return settle_ties(problems, solutions, options, started)

    def solve_slots(
        self, problems: Sequence[SlotProblem], options: SolveOptions
    ) -> list[SlotSolution]:
        """Solve the slots, sharing ``options.time_limit_s`` among them.

        Each slot is given an equal share of the time still left over the slots still
        to start, so time an easy slot does not use passes on to later ones. Every
        slot is solved single-threaded: slots are independent, one thread per solve
        keeps every slot's answer deterministic, and HiGHS cannot change its thread
        count within a process anyway. ``options.threads > 1`` solves that many
        slots at once in worker processes.
        """
        self.load_solver_modules()
        start = time.perf_counter()
        workers = min(options.threads, len(problems))

        def share_s(n_started: int) -> float:
            left_s = options.time_limit_s - (time.perf_counter() - start)
            per_slot = max(left_s, 0.0) * workers / (len(problems) - n_started)
            return max(min(per_slot, left_s), 0.05)

        single = replace(options, threads=1)
        if workers <= 1:
            return [
                self.solve_slot(problem, single, share_s(done))
                for done, problem in enumerate(problems)
            ]
        results: dict[int, SlotSolution] = {}
        # spawn, not fork: a forked child could inherit a solver's thread pool mid-use.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_import_all,
            initargs=(self.requires + self.preload,),
        ) as pool:
            running: dict[Future[SlotSolution], int] = {}
            for k, problem in enumerate(problems):
                if len(running) == workers:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        results[running.pop(future)] = future.result()
                running[pool.submit(self.solve_slot, problem, single, share_s(k))] = k
            for future, k in running.items():
                results[k] = future.result()
        return [results[k] for k in range(len(problems))]


def _import_all(modules: tuple[str, ...]) -> None:
    """Import every module named and run its ``warm_up()`` if it has one.

    A module whose numba kernels load on their first call offers ``warm_up`` to load
    them; a worker process runs this as its initializer, too.
    """
    for name in modules:
        warm_up = getattr(importlib.import_module(name), "warm_up", None)
        if callable(warm_up):
            warm_up()


def _within_budget(problem: SlotProblem, solution: SlotSolution) -> SlotSolution:
    """Return the answer, cut down to the slot's budgets where a backend did not keep them.

    Every model with rows keeps them; this catches the textbook baseline (one model for
    the day, built without budgets) and solver tolerances past a cap.
    """
    budget = problem.budget
    if budget is None or budget.holds(solution.pair_quantity_kwh):
        return solution
    return replace(
        solution,
        pair_quantity_kwh=drop_until_budgets_hold(problem, solution.pair_quantity_kwh),
        bound_eur=None,
        status=SolutionStatus.FEASIBLE,
        provenance=Provenance.CUT_TO_BUDGET,
    )


class HeuristicBackend(Backend):
    """A backend that computes an allocation directly: no solver, no bound, no claim.

    Grid rows do not enter a heuristic's construction; its allocation is cut down to
    them afterwards by dropping trades.
    """

    solver = "none"
    kind = BackendKind.HEURISTIC

    @classmethod
    def is_available(cls) -> bool:  # noqa: D102
        return True  # nothing to import

    @abstractmethod
    def allocate(self, problem: SlotProblem) -> npt.NDArray[np.float64]:
        """Return a feasible allocation: kWh per pair of ``problem``."""

    def solve_slot(  # noqa: D102
        self, problem: SlotProblem, options: SolveOptions, time_limit_s: float
    ) -> SlotSolution:
        start = time.perf_counter()
        pair_kwh = drop_until_feasible(problem, self.allocate(problem))
        return SlotSolution(
            slot=problem.slot,
            pair_quantity_kwh=pair_kwh,
            bound_eur=None,
            termination=TerminationCondition.CONVERGED,
            status=SolutionStatus.FEASIBLE,
            runtime_s=time.perf_counter() - start,
            provenance=Provenance.HEURISTIC,
        )
