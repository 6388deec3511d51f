"""The slot model on OR-Tools CP-SAT, which needs integer data.

Integer scaling (explicit, so results can be traced back):

* energy in Wh: input quantities are validated to whole Wh (``quantity_kwh`` has at
  most three decimals), so :func:`~gridmatch.units.exact_wh` is exact and the capacity and
  all-or-none rows hold exactly in kWh too; divisible fills are whole Wh, which loses
  nothing because once the binaries are fixed the rest is a transportation problem
  with integer data and so has an integral optimum;
* money in nano-EUR: each objective coefficient is rounded to 1e-9 EUR, so the model's
  objective is off by at most 0.5e-9 EUR per unit of a column (a binary is one unit,
  a Wh column up to its upper bound); the reported bound adds that slack, so it
  remains a valid bound on the true welfare.

With one worker and a fixed seed CP-SAT is deterministic; with several workers or a
binding time limit it is not.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from gridmatch.matching.backends.base import Backend, BackendKind
from gridmatch.matching.backends.seller_dp import best_start_pair_kwh
from gridmatch.matching.problem import FloatArray, SlotProblem
from gridmatch.matching.solution import (
    Provenance,
    SlotSolution,
    SolutionStatus,
    SolveOptions,
    TerminationCondition,
)
from gridmatch.units import NANO_EUR_PER_EUR, WH_PER_KWH, exact_wh, floor_wh_array

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

# CP-SAT needs a positive limit; a slot whose share is used up still gets this long.
MIN_SOLVER_S = 0.01
# Stating the model and its hint in Python, per pair: 2 s for 90,000 pairs measured
# (benchmarks/bench_knapsack.py), with margin. A model that cannot be stated in what
# the limit leaves is not started.
BUILD_S_PER_PAIR = 30e-6
# Grid rows are scaled so their largest coefficient per Wh is this integer.
ROW_SCALE = 1_000_000


class CpSatBackend(Backend):
    """Multiple-knapsack model per slot on CP-SAT, hinted with the seller-DP match."""

    name = "cpsat"
    solver = "ortools-cp-sat"
    kind = BackendKind.EXACT
    description = "slot model on OR-Tools CP-SAT (Wh and nano-EUR integers)"
    requires = ("ortools",)
    # The solver and the seller-DP hint's kernels.
    preload = ("ortools.sat.python.cp_model", "gridmatch.matching.knapsack_exact")

    def solve_slot(  # noqa: D102
        self, problem: SlotProblem, options: SolveOptions, time_limit_s: float
    ) -> SlotSolution:
        from ortools.sat.python import cp_model

        start = time.perf_counter()
        if problem.n_pairs == 0:
            return SlotSolution.nothing_to_trade(problem.slot)
        hint_kwh = best_start_pair_kwh(problem)
        left_s = time_limit_s - (time.perf_counter() - start)
        if problem.n_pairs * BUILD_S_PER_PAIR > left_s:
            # Stating the model in Python would use up the limit: the start stands.
            return _start_only(problem, hint_kwh, start)
        model = cp_model.CpModel()
        pair_var, pair_wh = _add_pair_variables(model, problem)
        _add_market_rows(model, problem, pair_var, pair_wh)
        if problem.budget is not None:
            _add_budget_rows(model, problem, pair_wh)
        if problem.grid is not None and problem.grid.n_rows > 0:
            _add_grid_rows(model, problem, pair_wh)
        model.maximize(sum(c * v for c, v in zip(_unit_nano_eur(problem), pair_var, strict=True)))
        _add_hint(model, problem, pair_var, hint_kwh)

        solver = cp_model.CpSolver()
        # The slot's time limit covers building the model and the hint, too.
        solver.parameters.max_time_in_seconds = max(
            float(time_limit_s) - (time.perf_counter() - start), MIN_SOLVER_S
        )
        solver.parameters.num_workers = int(options.threads)
        solver.parameters.random_seed = int(options.seed)
        solver.parameters.relative_gap_limit = float(options.mip_gap)
        code = solver.solve(model)
        if code in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return _read_solution(problem, solver, pair_var, code == cp_model.OPTIMAL, start)
        # UNKNOWN (no solution in time): the hint is feasible and honest.
        return SlotSolution(
            slot=problem.slot,
            pair_quantity_kwh=hint_kwh,
            bound_eur=None,
            termination=TerminationCondition.TIME_LIMIT
            if code == cp_model.UNKNOWN
            else TerminationCondition.ERROR,
            status=SolutionStatus.FEASIBLE,
            runtime_s=time.perf_counter() - start,
            provenance=Provenance.START,
        )


def _start_only(problem: SlotProblem, hint_kwh: FloatArray, start: float) -> SlotSolution:
    """Return the feasible start as the slot's answer, stopped by the clock."""
    return SlotSolution(
        slot=problem.slot,
        pair_quantity_kwh=hint_kwh,
        bound_eur=None,
        termination=TerminationCondition.TIME_LIMIT,
        status=SolutionStatus.FEASIBLE,
        runtime_s=time.perf_counter() - start,
        provenance=Provenance.START,
    )


def _unit_nano_eur(problem: SlotProblem) -> list[int]:
    """Objective per variable unit (a whole item for a binary, one Wh otherwise), nano-EUR."""
    unit_eur = np.where(
        problem.pair_indivisible,
        problem.pair_welfare_eur_per_kwh * problem.buy_quantity_kwh[problem.pair_buy],
        problem.pair_welfare_eur_per_kwh / WH_PER_KWH,
    )
    result: list[int] = np.rint(unit_eur * NANO_EUR_PER_EUR).astype(np.int64).tolist()
    return result


def _add_pair_variables(
    model: cp_model.CpModel, problem: SlotProblem
) -> tuple[list[Any], list[Any]]:
    """One variable per pair, and the Wh each pair trades as an expression."""
    buy_wh = exact_wh(problem.buy_quantity_kwh)
    sell_wh = exact_wh(problem.sell_quantity_kwh)
    indivisible = problem.pair_indivisible.tolist()
    pair_var = []
    pair_wh = []
    for b, s, whole in zip(
        problem.pair_buy.tolist(), problem.pair_sell.tolist(), indivisible, strict=True
    ):
        if whole:
            # 1 = seller s fills indivisible buy b completely.
            var = model.new_bool_var(f"y_{b}_{s}")
            pair_wh.append(var * int(buy_wh[b]))
        else:
            # Wh that seller s delivers to divisible buy b.
            var = model.new_int_var(0, int(min(buy_wh[b], sell_wh[s])), f"x_{b}_{s}")
            pair_wh.append(var)
        pair_var.append(var)
    return pair_var, pair_wh


def _add_market_rows(
    model: cp_model.CpModel, problem: SlotProblem, pair_var: list[Any], pair_wh: list[Any]
) -> None:
    """Buy rows and seller rows of :mod:`~gridmatch.matching.knapsack_model`, in Wh."""
    buy_wh = exact_wh(problem.buy_quantity_kwh)
    sell_wh = exact_wh(problem.sell_quantity_kwh)
    by_buy: dict[int, list[int]] = {}
    by_sell: dict[int, list[int]] = {}
    for p, (b, s) in enumerate(
        zip(problem.pair_buy.tolist(), problem.pair_sell.tolist(), strict=True)
    ):
        by_buy.setdefault(b, []).append(p)
        by_sell.setdefault(s, []).append(p)
    # Buy rows: an indivisible buy has at most one seller; a divisible one is not overfilled.
    for b, pairs in by_buy.items():
        limit = int(buy_wh[b]) if problem.buy_divisible[b] else 1
        model.add(sum(pair_var[p] for p in pairs) <= limit)
    # Seller rows: capacity, or all-or-none through a switch.
    for s, pairs in by_sell.items():
        sold_wh = sum(pair_wh[p] for p in pairs)
        if problem.sell_all_or_none[s]:
            # 1 = all-or-none seller s is sold completely.
            switch = model.new_bool_var(f"z_{s}")
            model.add(sold_wh == int(sell_wh[s]) * switch)
        else:
            model.add(sold_wh <= int(sell_wh[s]))


def _add_hint(
    model: cp_model.CpModel, problem: SlotProblem, pair_var: list[Any], hint_kwh: FloatArray
) -> None:
    """Hint a feasible allocation (kWh per pair) to the search."""
    hint_wh = floor_wh_array(hint_kwh)
    for var, whole, kwh, wh in zip(
        pair_var,
        problem.pair_indivisible.tolist(),
        hint_kwh.tolist(),
        hint_wh.tolist(),
        strict=True,
    ):
        model.add_hint(var, int(kwh > 0) if whole else int(wh))


def _read_solution(
    problem: SlotProblem, solver: Any, pair_var: list[Any], optimal: bool, start: float
) -> SlotSolution:
    """KWh per pair and the proven bound of a solved model (optimal or stopped early)."""
    indivisible = problem.pair_indivisible
    buy_wh = exact_wh(problem.buy_quantity_kwh)
    sell_wh = exact_wh(problem.sell_quantity_kwh)
    values = np.array([solver.value(v) for v in pair_var], dtype=float)
    pair_kwh = np.where(
        indivisible,
        values * problem.buy_quantity_kwh[problem.pair_buy],
        values / WH_PER_KWH,
    )
    # Each unit of a variable may be off by half a nano-EUR: a binary has one unit, a
    # Wh variable up to its upper bound.
    units = np.where(
        indivisible, 1, np.minimum(buy_wh[problem.pair_buy], sell_wh[problem.pair_sell])
    )
    rounding_slack_eur = 0.5 * float(units.sum()) / NANO_EUR_PER_EUR
    return SlotSolution(
        slot=problem.slot,
        pair_quantity_kwh=pair_kwh,
        bound_eur=float(solver.best_objective_bound / NANO_EUR_PER_EUR + rounding_slack_eur),
        termination=TerminationCondition.CONVERGED if optimal else TerminationCondition.TIME_LIMIT,
        status=SolutionStatus.OPTIMAL if optimal else SolutionStatus.FEASIBLE,
        runtime_s=time.perf_counter() - start,
    )


def _add_budget_rows(model: cp_model.CpModel, problem: SlotProblem, pair_wh: list[Any]) -> None:
    """Add the budget rows in nano-EUR per Wh, costs rounded up and caps down (the safe side).

    Rounding a cost up by less than a nano-EUR per Wh makes a row stricter by under
    1 mEUR per MWh; every integer solution keeps the real-valued cap.
    """
    budget = problem.budget
    assert budget is not None
    nano_per_wh = np.ceil(budget.cost_eur_per_kwh * NANO_EUR_PER_EUR / WH_PER_KWH)
    caps = budget.model_cap_eur()
    for account in range(budget.n_rows):
        pairs = np.flatnonzero(budget.pair_account == account).tolist()
        cap = math.floor(caps[account] * NANO_EUR_PER_EUR)
        model.add(sum(int(nano_per_wh[p]) * pair_wh[p] for p in pairs) <= cap)


def _add_grid_rows(model: cp_model.CpModel, problem: SlotProblem, pair_wh: list[Any]) -> None:
    """Add the security rows with integer coefficients, rounded to the safe side.

    Row ``r`` is scaled so its largest coefficient per Wh is :data:`ROW_SCALE`, then
    rounded; the rounding error is at most half a unit per Wh of injection, so the
    bounds are tightened by that much times the largest injection each bus can have.
    Every integer solution then satisfies the real-valued row, except within that
    margin of a bound of 0 (the empty allocation must stay feasible); the security
    loop re-checks every allocation against the real-valued rows.
    """
    rows = problem.grid
    assert rows is not None
    sell_column = np.searchsorted(rows.buses, problem.sell_bus[problem.pair_sell]).tolist()
    buy_column = np.searchsorted(rows.buses, problem.buy_bus[problem.pair_buy]).tolist()
    pair_max_wh = exact_wh(problem.pair_max_kwh())
    max_sold = np.bincount(sell_column, weights=pair_max_wh, minlength=rows.buses.size)
    max_bought = np.bincount(buy_column, weights=pair_max_wh, minlength=rows.buses.size)
    sold_at: dict[int, list[Any]] = {}
    bought_at: dict[int, list[Any]] = {}
    for p, wh in enumerate(pair_wh):
        sold_at.setdefault(sell_column[p], []).append(wh)
        bought_at.setdefault(buy_column[p], []).append(wh)
    injection_wh = []
    for k in range(rows.buses.size):
        # Net Wh injected at order bus k (sold minus bought).
        var = model.new_int_var(-int(max_bought[k]), int(max_sold[k]), f"iota_{k}")
        model.add(var == sum(sold_at.get(k, [])) - sum(bought_at.get(k, [])))
        injection_wh.append(var)
    reach_wh = float(np.maximum(max_sold, max_bought).sum())
    for r in range(rows.n_rows):
        per_wh = rows.coefficient_per_kwh[r] / WH_PER_KWH
        largest = float(np.abs(per_wh).max())
        if largest == 0.0:
            continue
        scale = ROW_SCALE / largest
        integer = np.rint(per_wh * scale).astype(np.int64)
        slack = 0.5 * reach_wh
        # The most the row's left-hand side can reach: a bound beyond it cannot bind
        # (and could overflow CP-SAT's 64-bit integers once scaled).
        reach = float(np.abs(integer) @ np.maximum(max_sold, max_bought))
        body = sum(
            int(c) * v for c, v in zip(integer.tolist(), injection_wh, strict=True) if c != 0
        )
        # Rows always admit trading nothing; the rounding margin must not exclude it.
        upper, lower = rows.upper[r] * scale - slack, rows.lower[r] * scale + slack
        if np.isfinite(upper) and upper < reach:
            model.add(body <= max(math.floor(upper), 0))
        if np.isfinite(lower) and lower > -reach:
            model.add(body >= min(math.ceil(lower), 0))
