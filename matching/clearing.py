"""The clearing pipeline: build slot problems -> solve -> certify -> extract trades.

Every step is a function of its own so that experiments can call them one by one;
:func:`clear_orders` runs them in order.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from gridmatch.errors import UsageError
from gridmatch.matching.backends.base import Backend, BackendKind, packages_importable
from gridmatch.matching.backends.flow_relaxation import solve_flow_relaxation
from gridmatch.matching.budget_cut import budget_limited_buys
from gridmatch.matching.market_rules import MarketRules, PricingRule
from gridmatch.matching.orders import OrderBook
from gridmatch.matching.problem import SlotProblem, build_slot_problems
from gridmatch.matching.solution import (
    BoundSource,
    InconsistentAllocationError,
    Provenance,
    SlotSolution,
    SolutionStatus,
    SolveOptions,
    SolverFailedError,
    TerminationCondition,
)

# A clearing whose bound used up the limit still gives the solvers this long.
MIN_SOLVE_S = 0.05
# Share of the limit kept for checking the allocations and pricing the trades.
ASSEMBLY_SHARE = 0.03
# Allocations are checked to this tolerance before they become trades.
TOLERANCE_KWH = 1e-6


class ClearingStatus(StrEnum):
    """Overall status of a clearing (summary.json ``status``).

    Not a vocabulary of its own: derived from the slots' solution statuses and the
    backend's kind, in one place (:func:`_overall_status`).
    """

    OPTIMAL = "optimal"  # every slot proven optimal within the gap
    FEASIBLE = "feasible"  # an exact backend stopped early (time limit) on some slot
    HEURISTIC = "heuristic"  # feasible trades from a heuristic, no optimality claim


@dataclass(frozen=True)
class Trade:
    """One accepted (buy, sell) pair: positions refer to the :class:`OrderBook`."""

    slot: int
    buy_order: int
    sell_order: int
    quantity_kwh: float
    fee_eur_per_kwh: float
    price_eur_per_kwh: float
    welfare_eur_per_kwh: float


@dataclass(frozen=True)
class SlotReport:
    """Per-slot size and outcome, for the summary and the benchmarks."""

    slot: int
    n_buy_orders: int
    n_sell_orders: int
    n_pairs: int
    welfare_eur: float
    bound_eur: float | None
    lp_bound_eur: float
    termination: TerminationCondition
    runtime_s: float
    provenance: Provenance = Provenance.SOLVER
    second_stage: TerminationCondition | None = None
    certified_by: BoundSource = BoundSource.LP


@dataclass(frozen=True)
class ClearingResult:
    """Trades and their certificate.

    Attributes
    ----------
    welfare_eur
        ``sum(quantity_kwh * (buy limit - sell limit - fee))`` over the trades.
    bound_eur
        Best proven upper bound on welfare: the lower of the LP relaxation and the sum
        of the backend's per-slot bounds (when it proves one for every slot).
    gap
        ``(bound_eur - welfare_eur) / bound_eur`` (0 when both are 0).
    budget_limited
        Book indices of buy orders left short because their prepaid account could not
        pay for the rest (:func:`~gridmatch.matching.budget_cut.budget_limited_buys`).
    """

    formulation: str
    solver: str
    solver_version: str
    status: ClearingStatus
    trades: tuple[Trade, ...]
    filled_kwh: npt.NDArray[np.float64]
    welfare_eur: float
    bound_eur: float
    lp_bound_eur: float
    gap: float
    slots: tuple[SlotReport, ...]
    build_s: float
    solve_s: float
    bound_s: float
    budget_limited: frozenset[int] = frozenset()

    @property
    def runtime_s(self) -> float:
        """Wall time of build, solve and bound together."""
        return self.build_s + self.solve_s + self.bound_s

    @property
    def n_pairs(self) -> int:
        """Compatible pairs over all slots."""
        return sum(report.n_pairs for report in self.slots)


def clear_orders(
    book: OrderBook,
    rules: MarketRules,
    backend: Backend,
    options: SolveOptions,
    distance_km: npt.NDArray[np.float64] | None = None,
    available_eur: Mapping[str, float] | None = None,
) -> ClearingResult:
    """Clear an order book with one backend and certify the result with the LP bound.

    Parameters
    ----------
    distance_km
        Line distances between the distinct order buses (see
        :func:`~gridmatch.matching.problem.build_slot_problems`); needed only when
        the market charges a per-km fee.
    available_eur
        What each prepaid account holds (participant id -> EUR); its buys cost at most
        that over the clearing, spent in delivery order (:func:`solve_within_budgets`).

    Raises
    ------
    SolverFailedError
        If a slot's solver reported an error.
    InconsistentAllocationError
        If the backend's allocation breaks a capacity or indivisibility rule.
    """
    if backend.kind is BackendKind.RELAXATION:
        raise UsageError(f"'{backend.name}' gives a bound, not trades; it runs in every clearing")
    start = time.perf_counter()
    problems = build_slot_problems(book, rules, distance_km, available_eur)
    built = time.perf_counter()
    # The bound first, so the solvers get what is left of the limit (less a reserve for
    # assembling the result): the user's limit covers the whole clearing.
    lp_bounds = lp_bounds_eur(problems)
    bounded = time.perf_counter()
    reserve_s = ASSEMBLY_SHARE * options.time_limit_s
    left_s = max(options.time_limit_s - reserve_s - (bounded - start), MIN_SOLVE_S)
    problems, solutions = solve_within_budgets(
        backend, problems, replace(options, time_limit_s=left_s)
    )
    solved = time.perf_counter()
    return assemble_result(
        book,
        rules,
        backend,
        problems,
        solutions,
        build_s=built - start,
        solve_s=solved - bounded,
        lp_bounds=lp_bounds,
        bound_s=bounded - built,
    )


def solve_within_budgets(
    backend: Backend, problems: list[SlotProblem], options: SolveOptions
) -> tuple[list[SlotProblem], list[SlotSolution]]:
    """Solve the slots; those with prepaid budgets one at a time, in delivery order.

    Slots without a budget row are solved together first (they share nothing). Then
    each budgeted slot, earliest first, may spend what its accounts hold less what the
    slots before it spent. The problems come back with each budgeted slot's caps set to
    what its answer spends, so a later re-solve of the slot (the security loop) cannot
    spend what the later slots were promised; ``available_eur`` keeps what the account
    held when the slot was cleared.
    """
    budgeted = [k for k, p in enumerate(problems) if p.budget is not None]
    if not budgeted:
        return problems, backend.solve(problems, options)
    start = time.perf_counter()
    problems = list(problems)
    solutions: list[SlotSolution | None] = [None] * len(problems)
    free = [k for k, p in enumerate(problems) if p.budget is None]
    if free:
        share_s = options.time_limit_s * len(free) / len(problems)
        answers = backend.solve([problems[k] for k in free], replace(options, time_limit_s=share_s))
        for k, answer in zip(free, answers, strict=True):
            solutions[k] = answer
    spent_eur: dict[str, float] = {}
    for n_done, k in enumerate(budgeted):
        budget = problems[k].budget
        assert budget is not None
        held = np.array(
            [
                max(budget.available_eur[a] - spent_eur.get(name, 0.0), 0.0)
                for a, name in enumerate(budget.account)
            ]
        )
        rows = budget.with_caps(held, held)
        left_s = options.time_limit_s - (time.perf_counter() - start)
        share_s = max(left_s / (len(budgeted) - n_done), MIN_SOLVE_S)
        (answer,) = backend.solve(
            [replace(problems[k], budget=rows)], replace(options, time_limit_s=share_s)
        )
        spend = rows.spend_eur(answer.pair_quantity_kwh)
        for name, eur in zip(budget.account, spend.tolist(), strict=True):
            spent_eur[name] = spent_eur.get(name, 0.0) + eur
        problems[k] = replace(problems[k], budget=rows.with_caps(np.minimum(spend, held)))
        solutions[k] = answer
    return problems, [s for s in solutions if s is not None]


def lp_bounds_eur(problems: list[SlotProblem]) -> list[float]:
    """LP-relaxation bound of every slot, ignoring grid rows (so valid with or without them).

    The LP relaxation as a min-cost flow is exact and ~100x faster than a general LP
    code on large slots; it needs no share of the time limit.
    """
    return [solve_flow_relaxation(p).bound_eur for p in problems]


def assemble_result(
    book: OrderBook,
    rules: MarketRules,
    backend: Backend,
    problems: list[SlotProblem],
    solutions: list[SlotSolution],
    *,
    build_s: float,
    solve_s: float,
    lp_bounds: list[float] | None = None,
    bound_s: float = 0.0,
) -> ClearingResult:
    """Check the slots' allocations, certify them, and turn them into trades.

    Parameters
    ----------
    lp_bounds
        Per-slot LP bounds if already computed (see :func:`lp_bounds_eur`).
    bound_s
        The time those took (the time spent here computing them is added).

    Raises
    ------
    SolverFailedError
        If a slot's solver reported an error.
    InconsistentAllocationError
        If an allocation breaks a capacity or indivisibility rule.
    """
    began = time.perf_counter()
    if lp_bounds is None:
        lp_bounds = lp_bounds_eur(problems)
    bounded = time.perf_counter()

    for problem, solution in zip(problems, solutions, strict=True):
        if solution.termination is TerminationCondition.ERROR:
            # Never pass off a fallback as the solver's answer.
            raise SolverFailedError(f"slot {problem.slot}: {backend.name} reported an error")
        check_allocation(problem, solution.pair_quantity_kwh)
    trades = extract_trades(book, rules, problems, solutions)
    filled = np.zeros(len(book))
    for trade in trades:
        filled[trade.buy_order] += trade.quantity_kwh
        filled[trade.sell_order] += trade.quantity_kwh
    welfare = sum(t.quantity_kwh * t.welfare_eur_per_kwh for t in trades)

    lp_bound = sum(lp_bounds)
    # Per slot, the tighter of the LP relaxation and the solver's own proven bound.
    bound = sum(
        lp if s.bound_eur is None else min(s.bound_eur, lp)
        for s, lp in zip(solutions, lp_bounds, strict=True)
    )
    # A bound can sit a solver tolerance below the welfare it certifies.
    bound = max(bound, welfare)
    gap = 0.0 if bound <= 0.0 else (bound - welfare) / bound

    reports = tuple(
        SlotReport(
            slot=p.slot,
            n_buy_orders=int(p.buy_order.size),
            n_sell_orders=int(p.sell_order.size),
            n_pairs=p.n_pairs,
            welfare_eur=p.welfare_eur(s.pair_quantity_kwh),
            bound_eur=s.bound_eur,
            lp_bound_eur=lp,
            termination=s.termination,
            runtime_s=s.runtime_s,
            provenance=s.provenance,
            second_stage=s.second_stage,
            certified_by=_certified_by(s, lp),
        )
        for p, s, lp in zip(problems, solutions, lp_bounds, strict=True)
    )
    return ClearingResult(
        formulation=backend.name,
        solver=backend.solver,
        solver_version=backend.solver_version(),
        status=_overall_status(backend, solutions),
        trades=trades,
        filled_kwh=filled,
        welfare_eur=float(welfare),
        bound_eur=float(bound),
        lp_bound_eur=float(lp_bound),
        gap=float(gap),
        slots=reports,
        build_s=build_s,
        solve_s=solve_s,
        bound_s=bound_s + (bounded - began),
        budget_limited=_budget_limited(problems, solutions),
    )


def _budget_limited(problems: list[SlotProblem], solutions: list[SlotSolution]) -> frozenset[int]:
    """Buy orders money left short, judged on the final trades of every earlier slot."""
    spent_eur: dict[str, float] = {}
    limited: set[int] = set()
    for problem, solution in sorted(
        zip(problems, solutions, strict=True), key=lambda ps: ps[0].slot
    ):
        rows = problem.budget
        if rows is None:
            continue
        held = np.array(
            [rows.opening_eur[a] - spent_eur.get(name, 0.0) for a, name in enumerate(rows.account)]
        )
        limited.update(
            int(b) for b in budget_limited_buys(problem, solution.pair_quantity_kwh, held)
        )
        for name, eur in zip(rows.account, rows.spend_eur(solution.pair_quantity_kwh), strict=True):
            spent_eur[name] = spent_eur.get(name, 0.0) + float(eur)
    return frozenset(limited)


def _certified_by(solution: SlotSolution, lp_bound_eur: float) -> BoundSource:
    """Which bound the slot's gap is measured against: the lower one (LP on ties)."""
    if solution.bound_eur is None or lp_bound_eur <= solution.bound_eur:
        return BoundSource.LP
    return solution.bound_source


def check_allocation(problem: SlotProblem, pair_kwh: npt.NDArray[np.float64]) -> None:
    """Raise :class:`InconsistentAllocationError` unless the allocation obeys the rules.

    The tests hold an independent checker; this one guards the result files.
    """

    def fail(message: str) -> InconsistentAllocationError:
        return InconsistentAllocationError(f"slot {problem.slot}: {message}")

    if pair_kwh.shape != (problem.n_pairs,) or not np.all(np.isfinite(pair_kwh)):
        raise fail("allocation has the wrong shape or non-finite values")
    if np.any(pair_kwh < -TOLERANCE_KWH):
        raise fail("negative quantity")
    n_buys, n_sells = problem.buy_quantity_kwh.size, problem.sell_quantity_kwh.size
    bought = np.bincount(problem.pair_buy, weights=pair_kwh, minlength=n_buys)
    sold = np.bincount(problem.pair_sell, weights=pair_kwh, minlength=n_sells)
    if np.any(bought > problem.buy_quantity_kwh + TOLERANCE_KWH):
        raise fail("a buy order is overfilled")
    if np.any(sold > problem.sell_quantity_kwh + TOLERANCE_KWH):
        raise fail("a sell order is oversold")
    used = pair_kwh > TOLERANCE_KWH
    indivisible = problem.pair_indivisible
    partners = np.bincount(problem.pair_buy[used & indivisible], minlength=n_buys)
    if np.any(partners > 1):
        raise fail("an indivisible buy order is split over sellers")
    full = np.abs(pair_kwh - problem.buy_quantity_kwh[problem.pair_buy]) <= TOLERANCE_KWH
    if np.any(used & indivisible & ~full):
        raise fail("an indivisible buy order is filled partly")
    partial = (sold > TOLERANCE_KWH) & (sold < problem.sell_quantity_kwh - TOLERANCE_KWH)
    if np.any(partial & problem.sell_all_or_none):
        raise fail("an all-or-none sell order is sold partly")
    if problem.budget is not None and not problem.budget.holds(pair_kwh):
        raise fail("a prepaid account spends more than it holds")


def extract_trades(
    book: OrderBook,
    rules: MarketRules,
    problems: list[SlotProblem],
    solutions: list[SlotSolution],
) -> tuple[Trade, ...]:
    """Turn per-pair kWh into priced trades, ordered by slot, buy order, sell order."""
    limit = book.limit_price_eur_per_kwh
    trades = []
    for problem, solution in zip(problems, solutions, strict=True):
        used = np.flatnonzero(solution.pair_quantity_kwh > TOLERANCE_KWH)
        buy_orders = problem.buy_order[problem.pair_buy[used]]
        sell_orders = problem.sell_order[problem.pair_sell[used]]
        fees = problem.pair_fee_eur_per_kwh[used]
        uniform = None
        if rules.pricing is PricingRule.UNIFORM and used.size:
            uniform = _uniform_price(problem, solution)
        prices = rules.price_eur_per_kwh(limit[buy_orders], limit[sell_orders], fees, uniform)
        for k, p in enumerate(used.tolist()):
            trades.append(
                Trade(
                    slot=problem.slot,
                    buy_order=int(buy_orders[k]),
                    sell_order=int(sell_orders[k]),
                    quantity_kwh=float(solution.pair_quantity_kwh[p]),
                    fee_eur_per_kwh=float(fees[k]),
                    price_eur_per_kwh=float(prices[k]),
                    welfare_eur_per_kwh=float(problem.pair_welfare_eur_per_kwh[p]),
                )
            )
    trades.sort(key=lambda t: (t.slot, t.buy_order, t.sell_order))
    return tuple(trades)


def _uniform_price(problem: SlotProblem, solution: SlotSolution) -> float | None:
    """Return the slot's pool price (backends/pool_price.py); the LP needs highspy."""
    if not packages_importable("highspy"):
        raise UsageError("pricing 'uniform' solves an LP per slot: pip install highspy")
    from gridmatch.matching.backends.pool_price import pool_price_eur_per_kwh

    return pool_price_eur_per_kwh(problem, solution.pair_quantity_kwh)


def _overall_status(backend: Backend, solutions: list[SlotSolution]) -> ClearingStatus:
    if backend.kind is BackendKind.HEURISTIC:
        return ClearingStatus.HEURISTIC
    if all(s.status is SolutionStatus.OPTIMAL for s in solutions):
        return ClearingStatus.OPTIMAL
    return ClearingStatus.FEASIBLE
