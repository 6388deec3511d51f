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
5. Every slot matched with rows is certified by a convex relaxation of the AC grid
   (:mod:`gridmatch.grid_models.ac_relaxation`): a proven upper bound on the welfare of
   any AC-secure trade set of the slot, where the LP bound ignores the grid. The gap is
   split into a market gap (below the bound of the linearised model the slot was
   matched under) and a security gap (between that bound and the AC certificate).
6. The loop does not stop at the first secure point: the relaxation's trades, rounded
   to the orders' rules and shrunk until AC-secure, are a second candidate, and from
   the better one trades are added back one AC check at a time, kept only while the
   slot stays secure (:func:`_certify_and_search`).

Every slot of the returned result with trades has passed the AC check.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from gridmatch.errors import UsageError
from gridmatch.grid_models.ac_relaxation import AcBound, ac_case, solve_ac_relaxation
from gridmatch.grid_models.security import (
    TRANSFORMERS,
    GridReport,
    SecurityLimits,
    SlotGrid,
    SlotSecurity,
)
from gridmatch.grid_models.security_rows import SlotLinearisation
from gridmatch.matching.backends.base import Backend, BackendKind
from gridmatch.matching.budget_cut import drop_until_budgets_hold
from gridmatch.matching.clearing import (
    TOLERANCE_KWH,
    ClearingResult,
    assemble_result,
    lp_bounds_eur,
    solve_within_budgets,
)
from gridmatch.matching.grid_rows import GridRows
from gridmatch.matching.market_rules import MarketRules
from gridmatch.matching.orders import OrderBook
from gridmatch.matching.problem import SlotProblem, build_slot_problems
from gridmatch.matching.secure_subset import drop_until_rows_hold
from gridmatch.matching.solution import (
    BoundSource,
    Provenance,
    SlotSolution,
    SolutionStatus,
    SolveOptions,
    SolverFailedError,
    TerminationCondition,
)
from gridmatch.units import WH_PER_KWH, floor_wh, floor_wh_array

FloatArray = npt.NDArray[np.float64]

# A row counts as binding when its activity is this close to a bound (relative).
BINDING_TOLERANCE = 1e-5
# The search after the loop tries at most this many additions per slot (one AC check each).
SEARCH_CHECKS_PER_SLOT = 24
# Shares of the relaxation's divisible trades tried, largest first, until AC-secure.
SHRINK_STEPS = (1.0, 0.999, 0.99, 0.97, 0.94, 0.9)
# An AC certificate this far below a secure slot's welfare would be wrong; it is not used.
CERTIFICATE_TOLERANCE = 1e-6


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
    market_gap, security_gap
        The clearing's gap split in two that add up to it: how far the trades lie below
        the bounds of the models the slots were matched under, and how far those bounds
        lie below the certificate (the AC relaxation where the grid binds).
    ac_certified_slots
        Slots whose bound is the AC relaxation's.
    searched_kwh
        Energy the search after the loop added to secure answers.
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
    market_gap: float
    security_gap: float
    ac_certified_slots: tuple[int, ...]
    searched_kwh: float


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
        Wall time of power flows, sensitivities, cuts, the search and the certificates.
    model_bounds_eur
        Per slot matched with rows, the backend's bound on the linearised model it last
        solved (for the market/security split of the gap).
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
    model_bounds_eur: dict[int, float] = field(default_factory=dict)
    searched_kwh: float = 0.0

    def gap_split(self) -> tuple[float, float]:
        """Return ``(market_gap, security_gap)``; they add up to the result's gap."""
        result = self.result
        total = result.bound_eur
        if total <= 0.0:
            return 0.0, 0.0
        market = security = 0.0
        for report in result.slots:
            bound = report.lp_bound_eur
            if report.bound_eur is not None:
                bound = min(bound, report.bound_eur)
            bound = max(bound, report.welfare_eur)
            model = self.model_bounds_eur.get(report.slot, bound)
            model = min(max(model, report.welfare_eur), bound)
            market += model - report.welfare_eur
            security += bound - model
        # The clearing's bound is raised to its welfare where solver tolerances put it
        # below; the split follows the same total.
        scale = (total - result.welfare_eur) / (market + security) if market + security else 0.0
        return market * scale / total, security * scale / total

    def outcome(self) -> SecurityOutcome:
        """Return the loop's outcome as plain values."""
        report = self.report
        market_gap, security_gap = self.gap_split()
        return SecurityOutcome(
            secure=report.secure,
            iterations=self.iterations,
            fallback_slots=self.fallback_slots,
            ac_power_flows=self.ac_power_flows,
            unconstrained_welfare_eur=self.unconstrained.welfare_eur,
            unconstrained_insecure_slots=self.unconstrained_insecure_slots,
            insecure_slots=tuple(s.slot for s in report.slots if not s.secure),
            max_line_loading_percent=report.worst("line", "loading_percent"),
            max_trafo_loading_percent=report.worst(TRANSFORMERS, "loading_percent"),
            vm_min_pu=report.worst("bus", "vm_pu", lowest=True),
            vm_max_pu=report.worst("bus", "vm_pu"),
            market_gap=market_gap,
            security_gap=security_gap,
            ac_certified_slots=tuple(
                r.slot for r in self.result.slots if r.certified_by is BoundSource.AC_RELAXATION
            ),
            searched_kwh=self.searched_kwh,
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
    model_bounds: dict[int, float] = field(default_factory=dict)  # slot -> bound with rows
    iterations: int = 0
    searched_kwh: float = 0.0
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
    available_eur: Mapping[str, float] | None = None,
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
    available_eur
        Prepaid accounts (participant id -> EUR): budgets, spent in delivery order.
    """
    if backend.kind is BackendKind.RELAXATION:
        raise UsageError(f"'{backend.name}' gives a bound, not trades")
    if max_iterations < 0:
        raise ValueError("max_iterations must not be negative")
    start = time.perf_counter()
    built_problems = build_slot_problems(book, rules, distance_km, available_eur)
    built = time.perf_counter()
    problems, solutions = solve_within_budgets(backend, built_problems, options)
    loop = _Loop(backend, options, grid, limits, problems, solutions)
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
    _certify_and_search(loop)
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
        model_bounds_eur=loop.model_bounds,
        searched_kwh=loop.searched_kwh,
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
        if answer.bound_eur is not None:
            loop.model_bounds[problem.slot] = answer.bound_eur
        else:
            loop.model_bounds.pop(problem.slot, None)
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


def _certify_and_search(loop: _Loop) -> None:
    """Certify every slot matched with rows by the AC relaxation, and search from it.

    The relaxation's trades are AC-feasible up to its relaxed parts; rounded to the
    orders' rules and shrunk until secure, they are a second starting point beside the
    loop's answer. From the better of the two, trades are added back one AC check at a
    time (:func:`_add_back`). A slot whose grid the relaxation does not model keeps its
    LP bound and is still searched.
    """
    began = time.perf_counter()
    per_slot_s = max(loop.options.time_limit_s / max(len(loop.problems), 1), 1.0)
    for k, problem in enumerate(loop.problems):
        if problem.grid is None:
            continue
        relaxed = _relax(loop, problem, per_slot_s)
        solution = loop.solutions[k]
        kwh = solution.pair_quantity_kwh
        verdict = loop.verdicts.get(problem.slot)
        target = None if relaxed is None else relaxed.pair_quantity_kwh
        if target is not None:
            start = _secure_rounding(loop, problem, target)
            if start is not None and problem.welfare_eur(start[0]) > problem.welfare_eur(kwh):
                kwh, verdict = start
        kwh, verdict = _add_back(loop.grid, problem, kwh, verdict, loop.limits, target)
        welfare = problem.welfare_eur(kwh)
        if welfare > problem.welfare_eur(solution.pair_quantity_kwh):
            loop.record(k, verdict)
            loop.searched_kwh += float(kwh.sum() - solution.pair_quantity_kwh.sum())
            solution = replace(
                solution,
                pair_quantity_kwh=kwh,
                status=SolutionStatus.FEASIBLE,
                provenance=Provenance.AC_SEARCH,
            )
        tolerance = CERTIFICATE_TOLERANCE * max(welfare, 1.0)
        if relaxed is not None and relaxed.bound_eur >= welfare - tolerance:
            solution = replace(
                solution, bound_eur=relaxed.bound_eur, bound_source=BoundSource.AC_RELAXATION
            )
        loop.solutions[k] = solution
    loop.grid_s += time.perf_counter() - began


def _relax(loop: _Loop, problem: SlotProblem, time_limit_s: float) -> AcBound | None:
    """Solve the AC relaxation of one slot (``None``: grid not modelled, or not solved)."""
    base = loop.grid.base_network(problem.slot)
    case = None if base is None else ac_case(base[0], base[1], loop.limits)
    if case is None:
        return None
    return solve_ac_relaxation(case, problem, loop.grid.slot_hours, time_limit_s=time_limit_s)


def _secure_rounding(
    loop: _Loop, problem: SlotProblem, relaxed_kwh: FloatArray
) -> tuple[FloatArray, SlotSecurity] | None:
    """Round the relaxation's trades to the orders' rules and shrink them until secure."""
    rounded = drop_until_budgets_hold(problem, _rounded(problem, relaxed_kwh))
    # An indivisible buy's trade and an all-or-none seller's trades stay as they are:
    # shrunk or rounded down, they would no longer be whole.
    scalable = ~problem.pair_indivisible & ~problem.sell_all_or_none[problem.pair_sell]
    for scale in SHRINK_STEPS:
        shrunk = floor_wh_array(rounded * scale) / WH_PER_KWH  # whole Wh, never rounded up
        candidate = np.where(scalable, shrunk, rounded)
        verdict = _ac_check(loop.grid, problem, candidate, loop.limits)
        if verdict is None:
            return None
        if verdict.strictly_secure:
            return candidate, verdict
    return None


def _rounded(problem: SlotProblem, relaxed_kwh: FloatArray) -> FloatArray:
    """Trades of the relaxation that keep the orders' rules (a feasible allocation).

    An indivisible buy goes whole to the seller that got most of it in the relaxation,
    if that seller has room, else nowhere; an all-or-none seller keeps its trades only
    if they add up to all it offers.
    """
    kwh = np.where(relaxed_kwh > TOLERANCE_KWH, relaxed_kwh, 0.0)
    pair_max = problem.pair_max_kwh()
    kwh = np.minimum(kwh, pair_max)
    indivisible = problem.pair_indivisible
    sold = np.bincount(problem.pair_sell, np.where(indivisible, 0.0, kwh), problem.sell_order.size)
    whole = np.zeros_like(kwh)
    for b in np.unique(problem.pair_buy[indivisible & (kwh > 0.0)]):
        pairs = np.flatnonzero((problem.pair_buy == b) & (kwh > 0.0))
        best = pairs[np.lexsort((pairs, -kwh[pairs]))[0]]
        quantity = float(problem.buy_quantity_kwh[b])
        s = int(problem.pair_sell[best])
        if kwh[best] >= 0.5 * quantity and sold[s] + quantity <= problem.sell_quantity_kwh[s]:
            whole[best] = quantity
            sold[s] += quantity
    kwh = np.where(indivisible, whole, kwh)
    # Divisible trades past a seller's quantity (after the whole buys) are cut pro rata.
    sold = np.bincount(problem.pair_sell, kwh, problem.sell_order.size)
    over = np.maximum(sold - problem.sell_quantity_kwh, 0.0)
    divisible_sold = np.bincount(
        problem.pair_sell, np.where(indivisible, 0.0, kwh), problem.sell_order.size
    )
    share = np.where(divisible_sold > 0, over / np.maximum(divisible_sold, 1e-12), 0.0)
    kwh = np.where(indivisible, kwh, kwh * (1.0 - np.minimum(share[problem.pair_sell], 1.0)))
    sold = np.bincount(problem.pair_sell, kwh, problem.sell_order.size)
    aon_short = problem.sell_all_or_none & (sold < problem.sell_quantity_kwh - TOLERANCE_KWH)
    return np.where(aon_short[problem.pair_sell], 0.0, kwh)


def _add_back(
    grid: SlotGrid,
    problem: SlotProblem,
    pair_kwh: FloatArray,
    verdict: SlotSecurity | None,
    limits: SecurityLimits,
    target_kwh: FloatArray | None,
) -> tuple[FloatArray, SlotSecurity | None]:
    """Greedily add trades to a secure allocation, keeping each only if strictly secure.

    Pairs the relaxation trades more than the allocation go first, then every other
    pair with room, each group most welfare per kWh first (pair order on ties, so
    reruns agree). A divisible addition that fails is tried once more at half. An
    indivisible buy is added whole or not at all; all-or-none sellers are left as they
    are. Returns the allocation and its verdict.
    """
    kwh = pair_kwh.copy()
    bought = np.bincount(problem.pair_buy, kwh, problem.buy_order.size)
    sold = np.bincount(problem.pair_sell, kwh, problem.sell_order.size)
    welfare = problem.pair_welfare_eur_per_kwh
    short = np.zeros(problem.n_pairs) if target_kwh is None else target_kwh - kwh
    order = np.lexsort((np.arange(problem.n_pairs), -welfare, ~(short > TOLERANCE_KWH)))
    order = order[welfare[order] > 0.0]
    checks = 0
    for p in order:
        b, s = int(problem.pair_buy[p]), int(problem.pair_sell[p])
        room = min(problem.buy_quantity_kwh[b] - bought[b], problem.sell_quantity_kwh[s] - sold[s])
        if room <= TOLERANCE_KWH or problem.sell_all_or_none[s]:
            continue
        if problem.buy_divisible[b]:
            tries = [room, room / 2.0]
            if short[p] > TOLERANCE_KWH:
                tries = [min(room, float(short[p])), min(room, float(short[p])) / 2.0]
        elif bought[b] <= TOLERANCE_KWH and room >= problem.buy_quantity_kwh[b] - TOLERANCE_KWH:
            tries = [float(problem.buy_quantity_kwh[b])]
        else:
            continue
        for amount in tries:
            amount = floor_wh(amount) / WH_PER_KWH
            if checks >= SEARCH_CHECKS_PER_SLOT or amount <= TOLERANCE_KWH:
                break
            candidate = kwh.copy()
            candidate[p] += amount
            if problem.budget is not None and not problem.budget.holds(candidate):
                continue
            checks += 1
            found = _ac_check(grid, problem, candidate, limits)
            if found is not None and found.strictly_secure:
                kwh, verdict = candidate, found
                bought[b] += amount
                sold[s] += amount
                break
        if checks >= SEARCH_CHECKS_PER_SLOT:
            break
    return kwh, verdict


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
        # At or past a bound: the search after the loop may cross a linear row with an
        # addition the AC check accepted; that element still limits the trades.
        tight = (activity >= rows.upper - scale) | (activity <= rows.lower + scale)
        for r in np.flatnonzero(tight):
            binding.add((problem.slot, rows.element[r], int(rows.element_index[r])))
    return frozenset(binding)
