"""Security-constrained clearing: match, check with AC power flow, tighten, match again.

1. Every slot is matched without grid rows; this is also the unconstrained result the
   summary compares against (the price of security).
2. Each slot with trades is checked by :class:`~gridmatch.grid_models.security.SlotGrid`,
   which takes the base case's sensitivities on the way (no extra power flow).
3. An insecure slot gets linear security rows around its base case for every element
   the trades could push out of its band
   (:class:`~gridmatch.grid_models.security_rows.SlotLinearisation`); only insecure
   slots are matched again. Each rejection tightens the violated elements' rows by the
   linearisation's error at the rejected point.
4. A slot still insecure after ``max_iterations`` rounds (or whose rows cannot be
   tightened further) falls back to a secure subset: its most harmful trades per EUR
   are dropped in doubling batches, each candidate AC-checked; the empty set, secure by
   the rule, ends the search.

Every slot of the returned result with trades has passed the AC check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from gridmatch.errors import UsageError
from gridmatch.grid_models.security import GridReport, SecurityLimits, SlotGrid, SlotSecurity
from gridmatch.grid_models.security_rows import SlotLinearisation
from gridmatch.matching.backends.base import Backend, BackendKind
from gridmatch.matching.clearing import (
    TOLERANCE_KWH,
    ClearingResult,
    assemble_result,
    lp_bounds_eur,
)
from gridmatch.matching.grid_rows import GridRows
from gridmatch.matching.market_rules import MarketRules
from gridmatch.matching.orders import OrderBook
from gridmatch.matching.problem import SlotProblem, build_slot_problems
from gridmatch.matching.secure_subset import drop_until_rows_hold
from gridmatch.matching.solution import (
    Provenance,
    SlotSolution,
    SolutionStatus,
    SolveOptions,
    SolverFailedError,
    TerminationCondition,
)

FloatArray = npt.NDArray[np.float64]

# A row counts as binding when its activity is this close to a bound (relative).
BINDING_TOLERANCE = 1e-5


@dataclass(frozen=True)
class SecurityOutcome:
    """What the security loop did, in plain values (what summary.json reports).

    Attributes
    ----------
    secure
        Every traded slot passed the final AC check.
    iterations
        Matching rounds with grid rows after the unconstrained one.
    insecure_slots
        Traded slots that failed the final AC check (empty unless something is wrong).
    max_line_loading_percent, max_trafo_loading_percent, vm_min_pu, vm_max_pu
        Worst values after the trades over the checked slots (``None``: none checked).
    """

    secure: bool
    iterations: int
    fallback_slots: tuple[int, ...]
    ac_power_flows: int
    unconstrained_welfare_eur: float
    unconstrained_insecure_slots: tuple[int, ...]
    insecure_slots: tuple[int, ...]
    max_line_loading_percent: float | None
    max_trafo_loading_percent: float | None
    vm_min_pu: float | None
    vm_max_pu: float | None


@dataclass(frozen=True)
class SecureClearing:
    """A clearing whose every traded slot passed the AC check, and how it got there.

    Attributes
    ----------
    result
        The secure clearing. Slots matched with grid rows claim feasibility only and
        are bounded by their LP relaxation without rows (the solver's bound would
        refer to the linearised model, not to the secure problem).
    unconstrained
        The same order book matched without the grid.
    report
        The final AC check of every slot with trades.
    iterations
        Matching rounds with grid rows after the unconstrained one (0: it was secure).
    unconstrained_insecure_slots
        Slots whose unconstrained trades failed the AC check.
    fallback_slots
        Slots secured by dropping trades: still insecure after ``max_iterations``
        rounds, or with rows that could not be tightened further.
    binding
        ``(slot, element, index)`` of every security row that limits the final trades.
    grid_s
        Wall time of power flows, sensitivities and cuts.
    """

    result: ClearingResult
    unconstrained: ClearingResult
    report: GridReport
    iterations: int
    unconstrained_insecure_slots: tuple[int, ...]
    fallback_slots: tuple[int, ...]
    binding: frozenset[tuple[int, str, int]]
    ac_power_flows: int
    grid_s: float

    def outcome(self) -> SecurityOutcome:
        """Return the loop's outcome as plain values."""
        report = self.report
        return SecurityOutcome(
            secure=report.secure,
            iterations=self.iterations,
            fallback_slots=self.fallback_slots,
            ac_power_flows=self.ac_power_flows,
            unconstrained_welfare_eur=self.unconstrained.welfare_eur,
            unconstrained_insecure_slots=self.unconstrained_insecure_slots,
            insecure_slots=tuple(s.slot for s in report.slots if not s.secure),
            max_line_loading_percent=report.worst("line", "loading_percent"),
            max_trafo_loading_percent=report.worst("trafo", "loading_percent"),
            vm_min_pu=report.worst("bus", "vm_pu", lowest=True),
            vm_max_pu=report.worst("bus", "vm_pu"),
        )


@dataclass
class _Loop:
    """The state the phases of :func:`clear_securely` pass on (positions = slot order)."""

    backend: Backend
    options: SolveOptions
    grid: SlotGrid
    limits: SecurityLimits
    problems: list[SlotProblem]
    solutions: list[SlotSolution]
    verdicts: dict[int, SlotSecurity] = field(default_factory=dict)
    linear: dict[int, SlotLinearisation | None] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)  # positions still insecure
    exhausted: list[int] = field(default_factory=list)  # rows cannot be tightened further
    iterations: int = 0
    solve_s: float = 0.0
    grid_s: float = 0.0

    def record(self, k: int, verdict: SlotSecurity | None) -> None:
        """Keep the latest verdict of slot position ``k`` (``None``: nothing traded)."""
        slot = self.problems[k].slot
        self.verdicts.pop(slot, None)
        if verdict is not None:
            self.verdicts[slot] = verdict


def clear_securely(
    book: OrderBook,
    rules: MarketRules,
    backend: Backend,
    options: SolveOptions,
    grid: SlotGrid,
    limits: SecurityLimits,
    *,
    max_iterations: int = 5,
    distance_km: FloatArray | None = None,
) -> SecureClearing:
    """Clear an order book so that every slot's trades pass the AC security check.

    Parameters
    ----------
    options
        The first round shares ``time_limit_s`` over all slots; every later round
        gives the slots it re-solves the same per-slot share.
    grid
        The scenario's network with its per-slot background.
    max_iterations
        Matching rounds with grid rows before a slot falls back to dropping trades.
    """
    if backend.kind is BackendKind.RELAXATION:
        raise UsageError(f"'{backend.name}' gives a bound, not trades")
    if max_iterations < 0:
        raise ValueError("max_iterations must not be negative")
    start = time.perf_counter()
    problems = build_slot_problems(book, rules, distance_km)
    built = time.perf_counter()
    loop = _Loop(backend, options, grid, limits, problems, backend.solve(problems, options))
    loop.solve_s = time.perf_counter() - built
    lp_bounds = lp_bounds_eur(problems)

    def assemble() -> ClearingResult:
        return assemble_result(
            book,
            rules,
            backend,
            loop.problems,
            loop.solutions,
            build_s=built - start,
            solve_s=loop.solve_s,
            lp_bounds=lp_bounds,
        )

    unconstrained = assemble()
    flows_before = grid.ac_power_flows
    _check_unconstrained(loop)
    unconstrained_insecure = tuple(problems[k].slot for k in loop.pending)
    while loop.pending and loop.iterations < max_iterations:
        _security_round(loop)
    fallback = _fall_back(loop)
    return SecureClearing(
        result=assemble(),
        unconstrained=unconstrained,
        report=GridReport(tuple(loop.verdicts[slot] for slot in sorted(loop.verdicts))),
        iterations=loop.iterations,
        unconstrained_insecure_slots=unconstrained_insecure,
        fallback_slots=tuple(loop.problems[k].slot for k in fallback),
        binding=_binding_rows(loop.problems, loop.solutions),
        ac_power_flows=grid.ac_power_flows - flows_before,
        grid_s=loop.grid_s,
    )


def _check_unconstrained(loop: _Loop) -> None:
    """AC-check every slot's unconstrained trades; linearise the insecure ones."""
    began = time.perf_counter()
    for k, problem in enumerate(loop.problems):
        verdict = _ac_check(loop.grid, problem, loop.solutions[k].pair_quantity_kwh, loop.limits)
        loop.record(k, verdict)
        if verdict is not None and not verdict.secure:
            loop.linear[problem.slot] = _linearise(loop.grid, problem, verdict, loop.solutions[k])
            loop.pending.append(k)
    loop.grid_s += time.perf_counter() - began


def _security_round(loop: _Loop) -> None:
    """Match the insecure slots again with their rows; check, and tighten what still fails."""
    loop.iterations += 1
    pending = loop.pending
    round_problems = [
        replace(loop.problems[k], grid=_rows(loop.linear[loop.problems[k].slot], loop.problems[k]))
        for k in pending
    ]
    share_s = loop.options.time_limit_s * len(pending) / len(loop.problems)
    solved = time.perf_counter()
    answers = loop.backend.solve(round_problems, replace(loop.options, time_limit_s=share_s))
    loop.solve_s += time.perf_counter() - solved
    began = time.perf_counter()
    still = []
    for k, problem, answer in zip(pending, round_problems, answers, strict=True):
        if answer.termination is TerminationCondition.ERROR:
            raise SolverFailedError(f"slot {problem.slot}: {loop.backend.name} reported an error")
        loop.problems[k] = problem
        loop.solutions[k] = _within_rows(problem, answer)
        verdict = _ac_check(loop.grid, problem, loop.solutions[k].pair_quantity_kwh, loop.limits)
        loop.record(k, verdict)
        if verdict is None or verdict.secure:
            continue
        slot_linear = loop.linear[problem.slot]
        if slot_linear is not None and _tighten(
            slot_linear, problem, loop.solutions[k], verdict, grid=loop.grid
        ):
            still.append(k)
        else:
            loop.exhausted.append(k)
    loop.pending = still
    loop.grid_s += time.perf_counter() - began


def _fall_back(loop: _Loop) -> list[int]:
    """Secure every slot still insecure by dropping trades; return their positions."""
    began = time.perf_counter()
    fallback = sorted(loop.pending + loop.exhausted, key=lambda k: loop.problems[k].slot)
    for k in fallback:
        problem = loop.problems[k]
        kwh, verdict = _secure_subset(
            loop.grid,
            problem,
            loop.solutions[k],
            loop.verdicts[problem.slot],
            loop.limits,
            loop.linear[problem.slot],
        )
        loop.record(k, verdict)
        # The solver did solve the slot (termination stays its own); the trades are not
        # its answer but a subset the AC check accepted, with no claim beyond that.
        loop.solutions[k] = replace(
            loop.solutions[k],
            pair_quantity_kwh=kwh,
            bound_eur=None,
            status=SolutionStatus.FEASIBLE,
            provenance=Provenance.FALLBACK,
        )
    loop.grid_s += time.perf_counter() - began
    return fallback


def _ac_check(
    grid: SlotGrid, problem: SlotProblem, pair_kwh: FloatArray, limits: SecurityLimits
) -> SlotSecurity | None:
    """AC-check one slot's allocation (``None`` for a slot without trades: nothing to check)."""
    if not np.any(pair_kwh > TOLERANCE_KWH):
        return None
    buses = problem.order_buses()
    injection = problem.bus_injection_kwh(buses, pair_kwh)
    by_bus = {int(b): float(v) for b, v in zip(buses, injection, strict=True) if v != 0.0}
    return grid.check(problem.slot, by_bus, limits, linearise_at=buses)


def _linearise(
    grid: SlotGrid, problem: SlotProblem, verdict: SlotSecurity, solution: SlotSolution
) -> SlotLinearisation | None:
    """Rows around the slot's base case, already tightened by the first rejection.

    ``None`` when the base case did not converge: there is nothing to linearise around.
    """
    buses = problem.order_buses()
    sensitivity = grid.base_sensitivity(problem.slot, buses)
    if sensitivity is None:
        return None
    sell_column = np.searchsorted(buses, problem.sell_bus[problem.pair_sell])
    buy_column = np.searchsorted(buses, problem.buy_bus[problem.pair_buy])
    pair_max = problem.pair_max_kwh()
    slot_linear = SlotLinearisation(
        verdict.elements,
        sensitivity,
        buses,
        max_sold_kwh=np.bincount(sell_column, pair_max, buses.size).astype(np.float64),
        max_bought_kwh=np.bincount(buy_column, pair_max, buses.size).astype(np.float64),
    )
    _tighten(slot_linear, problem, solution, verdict, add_margins=False)
    return slot_linear


def _tighten(
    slot_linear: SlotLinearisation,
    problem: SlotProblem,
    solution: SlotSolution,
    verdict: SlotSecurity,
    *,
    add_margins: bool = True,
    grid: SlotGrid | None = None,
) -> bool:
    """Tighten a slot's rows after a rejection; with ``grid``, also cut at the rejected point.

    ``grid`` must still hold the rejected point's power flow (call right after the check).
    Returns whether the rows changed so as to exclude something.
    """
    elements = verdict.elements
    buses = problem.order_buses()
    injection = problem.bus_injection_kwh(buses, solution.pair_quantity_kwh)
    after = elements.after.to_numpy(dtype=float)
    violated = elements.violated.to_numpy(dtype=bool)
    changed = slot_linear.tighten(after, violated, injection, add_margins=add_margins)
    if grid is not None and verdict.converged:
        cut = slot_linear.add_cut(after, violated, grid.sensitivity_per_kwh(buses), injection)
        changed = changed or cut
    return changed


def _rows(slot_linear: SlotLinearisation | None, problem: SlotProblem) -> GridRows:
    if slot_linear is not None:
        return slot_linear.rows()
    # No base case to linearise around: only trading nothing is known to be secure.
    buses = problem.order_buses()
    n = buses.size
    return GridRows(
        buses=buses,
        coefficient_per_kwh=np.eye(n),
        lower=np.zeros(n),
        upper=np.zeros(n),
        element=("bus",) * n,
        element_index=buses.astype(np.int64),
    )


def _secure_subset(
    grid: SlotGrid,
    problem: SlotProblem,
    solution: SlotSolution,
    verdict: SlotSecurity,
    limits: SecurityLimits,
    slot_linear: SlotLinearisation | None,
) -> tuple[FloatArray, SlotSecurity | None]:
    """Drop the most harmful trades per EUR in doubling batches until the AC check passes.

    Returns the allocation and its verdict (``None``: nothing is traded, secure by the rule).
    """
    kwh = solution.pair_quantity_kwh
    used = np.flatnonzero(kwh > TOLERANCE_KWH)
    if slot_linear is None or used.size == 0:
        return np.zeros(problem.n_pairs), None
    elements = verdict.elements
    harm = slot_linear.harm_per_kwh(
        elements.after.to_numpy(dtype=float),
        elements.violated.to_numpy(dtype=bool),
        problem.sell_bus[problem.pair_sell[used]],
        problem.buy_bus[problem.pair_buy[used]],
    )
    welfare = np.maximum(problem.pair_welfare_eur_per_kwh[used], 1e-9)
    # Most harm per EUR first, then least welfare (all harms are 0 when the rejected
    # run did not converge), then pair order, so the result is reproducible.
    order = np.lexsort((used, welfare, -harm / welfare))
    sellers = problem.pair_sell[used]
    n_drop = 1
    while n_drop < used.size:
        dropped = np.zeros(used.size, dtype=bool)
        dropped[order[:n_drop]] = True
        # An all-or-none seller sells everything or nothing.
        aon = problem.sell_all_or_none[sellers]
        dropped |= aon & np.isin(sellers, sellers[dropped & aon])
        candidate = kwh.copy()
        candidate[used[dropped]] = 0.0
        found = _ac_check(grid, problem, candidate, limits)
        if found is None:
            break
        if found.secure:
            return candidate, found
        n_drop *= 2
    return np.zeros(problem.n_pairs), None


def _within_rows(problem: SlotProblem, answer: SlotSolution) -> SlotSolution:
    """Return the answer with no claim beyond feasibility, cut down to the rows if needed."""
    rows = problem.grid
    assert rows is not None
    kwh = answer.pair_quantity_kwh
    if rows.holds(problem.bus_injection_kwh(rows.buses, kwh)):
        # The solver's bound and optimality refer to the linearised model it solved,
        # which is neither a relaxation nor a restriction of the AC-secure problem; the
        # slot keeps the LP bound (without rows: valid for any secure subset).
        status = (
            SolutionStatus.FEASIBLE if answer.status is SolutionStatus.OPTIMAL else answer.status
        )
        return replace(answer, bound_eur=None, status=status)
    # A backend that cannot take rows (or kept them only to its own tolerance).
    return replace(
        answer,
        pair_quantity_kwh=drop_until_rows_hold(problem, kwh),
        bound_eur=None,
        status=SolutionStatus.FEASIBLE,
        provenance=Provenance.CUT_TO_ROWS,
    )


def _binding_rows(
    problems: list[SlotProblem], solutions: list[SlotSolution]
) -> frozenset[tuple[int, str, int]]:
    binding = set()
    for problem, solution in zip(problems, solutions, strict=True):
        rows = problem.grid
        if rows is None or rows.n_rows == 0:
            continue
        activity = rows.activity(problem.bus_injection_kwh(rows.buses, solution.pair_quantity_kwh))
        scale = BINDING_TOLERANCE * np.maximum(
            1.0, np.abs(np.where(np.isfinite(rows.upper), rows.upper, rows.lower))
        )
        tight = (np.abs(activity - rows.upper) <= scale) | (np.abs(activity - rows.lower) <= scale)
        for r in np.flatnonzero(tight):
            binding.add((problem.slot, rows.element[r], int(rows.element_index[r])))
    return frozenset(binding)
