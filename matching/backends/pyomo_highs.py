r"""The slot MILP stated algebraically in Pyomo and solved by HiGHS.

The model is the one written in :mod:`gridmatch.matching.knapsack_model`; here it is
spelled out with Pyomo sets, parameters, variables and one constraint block per family,
so that it reads like the maths and can be printed with ``model.pprint()``. For a slot
with buys :math:`B`, sellers :math:`S` and compatible pairs :math:`P \subseteq B \times S`:

* :math:`y_{bs} \in \{0, 1\}` for pairs whose buy is indivisible,
* :math:`x_{bs} \in [0, \min(q_b, Q_s)]` kWh for pairs whose buy is divisible,
* :math:`z_s \in \{0, 1\}` for every all-or-none seller that has a pair.

It is solved through Pyomo's new solver interface (``pyomo.contrib.solver``), which
keeps *why HiGHS stopped* (``results.termination_condition``) apart from *what solution
it has* (``results.solution_status``), the same split as
:mod:`gridmatch.matching.solution`. Unlike the ``highspy`` backend no greedy incumbent
is passed in: the interface has no warm start, so this backend measures the modelling
layer plus a cold HiGHS run.

Pyomo is imported inside the functions, not at module level, so that the backend
registry imports even where Pyomo is missing and :meth:`PyomoHighsBackend.is_available`
can say so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from gridmatch.matching.backends.base import Backend, BackendKind
from gridmatch.matching.backends.highs_runner import TUNED_MIP_OPTIONS
from gridmatch.matching.knapsack_model import build_knapsack_arrays
from gridmatch.matching.problem import SlotProblem
from gridmatch.matching.solution import (
    SlotSolution,
    SolutionStatus,
    SolveOptions,
    TerminationCondition,
)

if TYPE_CHECKING:
    import pyomo.environ as pyo
    from pyomo.core.base.var import VarData

FloatArray = npt.NDArray[np.float64]

PYOMO_SOLVER_NAME = "highs"
# Build plus translation per model variable, measured on a 300,000-variable slot
# (benchmarks/bench_knapsack.py's 10,000 x 30 books) with margin for slower machines.
PYOMO_S_PER_VARIABLE = 60e-6
# Pyomo's translation for HiGHS, relative to building the model (measured: 4.2 s / 7.5 s).
TRANSLATE_PER_BUILD = 0.6
# HiGHS needs a positive limit.
MIN_PYOMO_SOLVER_S = 0.01


@dataclass(frozen=True)
class PyomoHighsAnswer:
    """What one HiGHS run through Pyomo gave, already in gridmatch's vocabulary.

    Attributes
    ----------
    var_values
        Values of the requested variables, in the order they were asked for; ``None``
        when HiGHS holds no feasible solution.
    bound_eur
        Proven upper bound on the objective (the model maximises), if finite.
    translate_s
        Time Pyomo spent handing the model to HiGHS (``set_instance``).
    highs_s
        Time HiGHS itself ran.
    """

    var_values: FloatArray | None
    bound_eur: float | None
    termination: TerminationCondition
    status: SolutionStatus
    translate_s: float
    highs_s: float


def solve_with_pyomo_highs(
    model: pyo.ConcreteModel,
    options: SolveOptions,
    time_limit_s: float,
    vars_to_read: Sequence[VarData],
    highs_options: Mapping[str, str | bool | int | float] | None = None,
) -> PyomoHighsAnswer:
    """Solve a maximisation model with ``pyomo.contrib.solver``'s HiGHS interface.

    Parameters
    ----------
    model
        A linear (mixed-integer) model with one active objective, ``maximize`` sense.
    options
        ``mip_gap``, ``threads`` and ``seed`` are passed on; ``time_limit_s`` is not
        read from here but from the argument.
    time_limit_s
        HiGHS's own time limit. Pyomo's translation of the model comes on top of it.
    vars_to_read
        Variables whose values are returned, in this order.
    highs_options
        Further HiGHS options (``None``: HiGHS's defaults).

    Returns
    -------
    PyomoHighsAnswer
        Values are read only when the solution status says HiGHS holds a feasible
        point; nothing is loaded into the model.
    """
    from pyomo.contrib.solver.common.factory import SolverFactory
    from pyomo.contrib.solver.common.results import SolutionStatus as PyomoSolutionStatus

    solver = SolverFactory(PYOMO_SOLVER_NAME)
    results = solver.solve(
        model,
        tee=False,
        time_limit=float(time_limit_s),
        threads=int(options.threads),
        rel_gap=float(options.mip_gap),
        # Passed straight to Highs.setOptionValue after the options above; output_flag
        # off spares writing HiGHS's log into Pyomo's captured stream.
        solver_options={
            "random_seed": int(options.seed),
            "output_flag": False,
            **(highs_options or {}),
        },
        load_solutions=False,
        raise_exception_on_nonoptimal_result=False,
    )
    termination = _termination(results.termination_condition)
    pyomo_status = results.solution_status
    converged = termination is TerminationCondition.CONVERGED
    if pyomo_status is PyomoSolutionStatus.optimal and converged:
        status = SolutionStatus.OPTIMAL
    elif pyomo_status in (PyomoSolutionStatus.optimal, PyomoSolutionStatus.feasible):
        status = SolutionStatus.FEASIBLE
    else:
        status = SolutionStatus.NONE

    values = None
    if status is not SolutionStatus.NONE:
        by_var = results.solution_loader.get_vars(vars_to_load=list(vars_to_read))
        values = np.fromiter((by_var[v] for v in vars_to_read), float, len(vars_to_read))
    bound = results.objective_bound
    timer = results.timing_info.timer
    return PyomoHighsAnswer(
        var_values=values,
        bound_eur=float(bound) if bound is not None and math.isfinite(bound) else None,
        termination=termination,
        status=status,
        translate_s=float(timer.timers["set_instance"].total_time)
        if "set_instance" in timer.timers
        else 0.0,
        highs_s=float(results.timing_info.highs_time),
    )


def pyomo_can_build(n_variables: int, time_limit_s: float) -> bool:
    """Whether a Pyomo model of ``n_variables`` can be built and translated in time.

    Pyomo builds and translates at about :data:`PYOMO_S_PER_VARIABLE` (measured: a
    300,000-variable slot took 7.5 s to build and 4.2 s to translate); a model that
    cannot even be stated within the limit is not started, so the limit is kept.
    """
    return n_variables * PYOMO_S_PER_VARIABLE <= time_limit_s


def pyomo_solver_time_s(time_limit_s: float, started: float) -> float:
    """HiGHS's share of a Pyomo backend's limit: what building left, less translation."""
    built_s = time.perf_counter() - started
    return max(time_limit_s - built_s * (1.0 + TRANSLATE_PER_BUILD), MIN_PYOMO_SOLVER_S)


def out_of_time(problem: SlotProblem, runtime_s: float) -> SlotSolution:
    """Return the answer for a slot whose model did not fit the limit: nothing traded."""
    return SlotSolution(
        slot=problem.slot,
        pair_quantity_kwh=np.zeros(problem.n_pairs),
        bound_eur=None,
        termination=TerminationCondition.TIME_LIMIT,
        status=SolutionStatus.NONE,
        runtime_s=runtime_s,
    )


def _termination(condition: object) -> TerminationCondition:
    """Map Pyomo's termination condition onto gridmatch's, as ``run_highs`` maps HiGHS's."""
    from pyomo.contrib.solver.common.results import TerminationCondition as PyomoTermination

    if condition is PyomoTermination.convergenceCriteriaSatisfied:
        return TerminationCondition.CONVERGED
    if condition in (PyomoTermination.maxTimeLimit, PyomoTermination.interrupted):
        return TerminationCondition.TIME_LIMIT
    return TerminationCondition.ERROR


def pyomo_highs_version() -> str:
    """Return the versions of Pyomo and of HiGHS, e.g. ``pyomo 6.10.1 / highs 1.12.0``."""
    from pyomo.version import version as pyomo_version

    from gridmatch.matching.backends.highs_runner import highs_version

    return f"pyomo {pyomo_version} / highs {highs_version()}"


def build_slot_model(problem: SlotProblem) -> pyo.ConcreteModel:
    """State the slot MILP of :mod:`~gridmatch.matching.knapsack_model` in Pyomo.

    Only buyers and sellers that appear in a compatible pair enter the model, as in
    the array form. The problem must have at least one pair.

    Returns
    -------
    pyomo.environ.ConcreteModel
        With variables ``y``, ``x``, ``z``, constraint blocks ``indivisible_buy_once``,
        ``divisible_buy_quantity``, ``seller_capacity``, ``seller_all_or_none`` and the
        objective ``welfare_eur``.
    """
    import pyomo.environ as pyo

    model = pyo.ConcreteModel(name=f"slot_{problem.slot}")
    _add_sets_and_parameters(model, problem)
    # y[b, s] = 1: seller s fills indivisible buy b completely.
    model.y = pyo.Var(model.INDIVISIBLE_PAIRS, domain=pyo.Binary)
    # x[b, s]: kWh seller s delivers to divisible buy b.
    model.x = pyo.Var(
        model.DIVISIBLE_PAIRS,
        domain=pyo.NonNegativeReals,
        bounds=lambda m, b, s: (0.0, min(m.buy_quantity_kwh[b], m.sell_quantity_kwh[s])),
    )
    # z[s] = 1: all-or-none seller s is sold completely.
    model.z = pyo.Var(model.ALL_OR_NONE_SELLERS, domain=pyo.Binary)
    add_buy_constraints(model)
    add_seller_constraints(model)
    if problem.budget is not None:
        add_budget_rows(model, problem)
    if problem.grid is not None and problem.grid.n_rows > 0:
        add_grid_rows(model, problem)
    add_welfare_objective(model)
    return model


def _add_sets_and_parameters(model: pyo.ConcreteModel, problem: SlotProblem) -> None:
    """Index sets (local buy and sell indices) and the data of the slot."""
    import pyomo.environ as pyo

    pair_buy = problem.pair_buy.tolist()
    pair_sell = problem.pair_sell.tolist()
    pairs = list(zip(pair_buy, pair_sell, strict=True))
    indivisible = problem.pair_indivisible.tolist()
    buys = sorted(set(pair_buy))
    sellers = sorted(set(pair_sell))
    sellers_of: dict[int, list[int]] = {b: [] for b in buys}
    buyers_of: dict[int, list[int]] = {s: [] for s in sellers}
    for b, s in pairs:
        sellers_of[b].append(s)
        buyers_of[s].append(b)
    divisible_buy = problem.buy_divisible.tolist()
    all_or_none = problem.sell_all_or_none.tolist()

    model.BUYS = pyo.Set(initialize=buys)
    model.INDIVISIBLE_BUYS = pyo.Set(
        within=model.BUYS, initialize=[b for b in buys if not divisible_buy[b]]
    )
    model.DIVISIBLE_BUYS = pyo.Set(
        within=model.BUYS, initialize=[b for b in buys if divisible_buy[b]]
    )
    model.SELLERS = pyo.Set(initialize=sellers)
    model.ALL_OR_NONE_SELLERS = pyo.Set(
        within=model.SELLERS, initialize=[s for s in sellers if all_or_none[s]]
    )
    model.PAIRS = pyo.Set(dimen=2, initialize=pairs)
    model.INDIVISIBLE_PAIRS = pyo.Set(
        within=model.PAIRS, initialize=[p for p, ind in zip(pairs, indivisible, strict=True) if ind]
    )
    model.DIVISIBLE_PAIRS = pyo.Set(
        within=model.PAIRS,
        initialize=[p for p, ind in zip(pairs, indivisible, strict=True) if not ind],
    )
    model.SELLERS_OF = pyo.Set(model.BUYS, initialize=sellers_of)
    model.BUYERS_OF = pyo.Set(model.SELLERS, initialize=buyers_of)

    model.buy_quantity_kwh = pyo.Param(
        model.BUYS, initialize={b: float(problem.buy_quantity_kwh[b]) for b in buys}
    )
    model.sell_quantity_kwh = pyo.Param(
        model.SELLERS, initialize={s: float(problem.sell_quantity_kwh[s]) for s in sellers}
    )
    model.welfare_eur_per_kwh = pyo.Param(
        model.PAIRS,
        initialize=dict(zip(pairs, problem.pair_welfare_eur_per_kwh.tolist(), strict=True)),
    )


def _pair_kwh(model: pyo.ConcreteModel, b: int, s: int) -> pyo.Expression:
    """Return the kWh pair (b, s) trades: ``q_b y_bs`` or ``x_bs``."""
    if b in model.INDIVISIBLE_BUYS:
        return model.buy_quantity_kwh[b] * model.y[b, s]
    return model.x[b, s]


def _sold_kwh(model: pyo.ConcreteModel, s: int) -> pyo.Expression:
    """Return the kWh seller ``s`` delivers: ``sum_b q_b y_bs + sum_b x_bs``."""
    import pyomo.environ as pyo

    return pyo.quicksum(_pair_kwh(model, b, s) for b in model.BUYERS_OF[s])


def add_buy_constraints(model: pyo.ConcreteModel) -> None:
    r"""Add one row per buy order.

    .. math::

        \sum_{s:(b,s)\in P} y_{bs} \le 1 \quad \forall b \text{ indivisible}, \qquad
        \sum_{s:(b,s)\in P} x_{bs} \le q_b \quad \forall b \text{ divisible}
    """
    import pyomo.environ as pyo

    # An indivisible buy is served by at most one seller.
    model.indivisible_buy_once = pyo.Constraint(
        model.INDIVISIBLE_BUYS,
        rule=lambda m, b: pyo.quicksum(m.y[b, s] for s in m.SELLERS_OF[b]) <= 1,
    )
    # A divisible buy is never filled beyond its quantity.
    model.divisible_buy_quantity = pyo.Constraint(
        model.DIVISIBLE_BUYS,
        rule=lambda m, b: pyo.quicksum(m.x[b, s] for s in m.SELLERS_OF[b]) <= m.buy_quantity_kwh[b],
    )


def add_seller_constraints(model: pyo.ConcreteModel) -> None:
    r"""Add one row per sell order.

    .. math::

        \sum_b q_b y_{bs} + \sum_b x_{bs} \le Q_s \quad \forall s \text{ divisible}, \qquad
        \sum_b q_b y_{bs} + \sum_b x_{bs} = Q_s z_s \quad \forall s \text{ all-or-none}
    """
    import pyomo.environ as pyo

    # A divisible seller is never oversold.
    model.seller_capacity = pyo.Constraint(
        model.SELLERS - model.ALL_OR_NONE_SELLERS,
        rule=lambda m, s: _sold_kwh(m, s) <= m.sell_quantity_kwh[s],
    )
    # An all-or-none seller sells exactly everything or nothing.
    model.seller_all_or_none = pyo.Constraint(
        model.ALL_OR_NONE_SELLERS,
        rule=lambda m, s: _sold_kwh(m, s) == m.sell_quantity_kwh[s] * m.z[s],
    )


def add_grid_rows(model: pyo.ConcreteModel, problem: SlotProblem) -> None:
    r"""Add the slot's linearised security rows over the net injection of each bus.

    .. math::

        \iota_k = \sum_{(b,s):\, \mathrm{bus}(s)=k} \mathrm{kWh}_{bs}
        - \sum_{(b,s):\, \mathrm{bus}(b)=k} \mathrm{kWh}_{bs}, \qquad
        \mathrm{lower}_r \le \sum_k a_{rk} \iota_k \le \mathrm{upper}_r
    """
    import pyomo.environ as pyo

    rows = problem.grid
    assert rows is not None
    sell_column = np.searchsorted(rows.buses, problem.sell_bus).tolist()
    buy_column = np.searchsorted(rows.buses, problem.buy_bus).tolist()
    sold_at: dict[int, list[tuple[int, int]]] = {}
    bought_at: dict[int, list[tuple[int, int]]] = {}
    for b, s in model.PAIRS:
        sold_at.setdefault(sell_column[s], []).append((b, s))
        bought_at.setdefault(buy_column[b], []).append((b, s))
    model.BUSES = pyo.RangeSet(0, rows.buses.size - 1)
    # Net kWh the slot's trades inject at each order bus (sold minus bought).
    model.injection_kwh = pyo.Expression(
        model.BUSES,
        rule=lambda m, k: (
            pyo.quicksum(_pair_kwh(m, b, s) for b, s in sold_at.get(k, []))
            - pyo.quicksum(_pair_kwh(m, b, s) for b, s in bought_at.get(k, []))
        ),
    )
    coefficient = rows.coefficient_per_kwh
    model.GRID_ROWS = pyo.RangeSet(0, rows.n_rows - 1)

    def security_row(m: pyo.ConcreteModel, r: int) -> tuple[object, object, object]:
        lower, upper = float(rows.lower[r]), float(rows.upper[r])
        body = pyo.quicksum(
            float(coefficient[r, k]) * m.injection_kwh[k] for k in np.flatnonzero(coefficient[r])
        )
        return (lower if np.isfinite(lower) else None, body, upper if np.isfinite(upper) else None)

    # Every protected line, transformer and bus stays within its (linearised) limits.
    model.grid_security = pyo.Constraint(model.GRID_ROWS, rule=security_row)


def add_budget_rows(model: pyo.ConcreteModel, problem: SlotProblem) -> None:
    r"""Keep what each prepaid account's buys cost within its cap.

    .. math::

        \sum_{(b,s):\, \mathrm{account}(b)=a} c_{bs}\, \mathrm{kWh}_{bs}
        \le \mathrm{cap}_a
    """
    import pyomo.environ as pyo

    budget = problem.budget
    assert budget is not None
    pairs_of: dict[int, list[int]] = {}
    for p, account in enumerate(budget.pair_account.tolist()):
        if account >= 0:
            pairs_of.setdefault(account, []).append(p)
    pair_buy, pair_sell = problem.pair_buy.tolist(), problem.pair_sell.tolist()
    cost = budget.cost_eur_per_kwh.tolist()
    caps = budget.model_cap_eur().tolist()
    model.ACCOUNTS = pyo.Set(initialize=sorted(pairs_of))

    def budget_row(m: pyo.ConcreteModel, a: int) -> object:
        spend = pyo.quicksum(cost[p] * _pair_kwh(m, pair_buy[p], pair_sell[p]) for p in pairs_of[a])
        return spend <= caps[a]

    model.budget = pyo.Constraint(model.ACCOUNTS, rule=budget_row)


def add_welfare_objective(model: pyo.ConcreteModel) -> None:
    r"""Maximise welfare in EUR.

    .. math::

        \max \sum_{(b,s)\ \text{indivisible}} w_{bs} q_b y_{bs}
        + \sum_{(b,s)\ \text{divisible}} w_{bs} x_{bs}
    """
    import pyomo.environ as pyo

    model.welfare_eur = pyo.Objective(
        expr=pyo.quicksum(
            model.welfare_eur_per_kwh[b, s] * model.buy_quantity_kwh[b] * model.y[b, s]
            for b, s in model.INDIVISIBLE_PAIRS
        )
        + pyo.quicksum(
            model.welfare_eur_per_kwh[b, s] * model.x[b, s] for b, s in model.DIVISIBLE_PAIRS
        ),
        sense=pyo.maximize,
    )


def slot_model_columns(model: pyo.ConcreteModel, problem: SlotProblem) -> list[VarData]:
    """List the model's variables in the column order of :func:`build_knapsack_arrays`.

    Pairs first, in the problem's pair order, then the all-or-none switches by seller.
    """
    indivisible = problem.pair_indivisible.tolist()
    columns = [
        model.y[b, s] if ind else model.x[b, s]
        for b, s, ind in zip(
            problem.pair_buy.tolist(), problem.pair_sell.tolist(), indivisible, strict=True
        )
    ]
    columns.extend(model.z[s] for s in model.ALL_OR_NONE_SELLERS)
    return columns


class PyomoBackend(Backend):
    """A backend stating its model in Pyomo, solved by HiGHS through ``pyomo.contrib.solver``."""

    solver = "highs"
    requires = ("pyomo", "highspy")

    @classmethod
    def solver_version(cls) -> str:  # noqa: D102
        return pyomo_highs_version()


class PyomoHighsBackend(PyomoBackend):
    """The slot MILP stated in Pyomo, one model per slot, solved by HiGHS without warm start."""

    name = "pyomo-highs"
    kind = BackendKind.EXACT
    description = "slot MILP stated in Pyomo, HiGHS through pyomo.contrib.solver"

    def solve_slot(
        self, problem: SlotProblem, options: SolveOptions, time_limit_s: float
    ) -> SlotSolution:
        """Build the slot's Pyomo model, solve it and read back kWh per pair.

        Returns
        -------
        SlotSolution
            Binaries are rounded and continuous values clipped exactly as the highspy
            backend does (both go through ``KnapsackArrays.pair_kwh``). If HiGHS stops
            without a feasible point, the allocation is all zeros with status ``NONE``.
        """
        start = time.perf_counter()
        if problem.n_pairs == 0:
            return SlotSolution.nothing_to_trade(problem.slot)
        if not pyomo_can_build(problem.n_pairs, time_limit_s):
            return out_of_time(problem, time.perf_counter() - start)
        model = build_slot_model(problem)
        columns = slot_model_columns(model, problem)
        answer = solve_with_pyomo_highs(
            model,
            options,
            pyomo_solver_time_s(time_limit_s, start),
            columns,
            highs_options=TUNED_MIP_OPTIONS,
        )
        if answer.var_values is None:
            pair_kwh = np.zeros(problem.n_pairs)
        else:
            # Same rounding as the highspy backend, so the two agree to the last bit.
            pair_kwh = build_knapsack_arrays(problem).pair_kwh(answer.var_values)
        return SlotSolution(
            slot=problem.slot,
            pair_quantity_kwh=pair_kwh,
            bound_eur=answer.bound_eur,
            termination=answer.termination,
            status=answer.status,
            runtime_s=time.perf_counter() - start,
        )
