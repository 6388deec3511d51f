r"""The plain textbook baseline: one Pyomo MILP over all slots and all (buy, sell) pairs.

This is the model a researcher writes first, kept as the reference point that the
other backends are measured against:

* one monolithic model for the whole day, no decomposition into slots;
* a variable for *every* buy x sell pair of the same slot, the textbook
  multiple-knapsack :math:`x_{ij}`: binary :math:`y_{tbs}` for indivisible buys,
  continuous :math:`x_{tbs} \ge 0` kWh for divisible buys; pairs that the
  :class:`~gridmatch.matching.problem.SlotProblem` leaves out (price-incompatible, or an
  indivisible buy larger than the seller) are kept and forced to 0 by an explicit
  constraint;
* a binary :math:`z_{ts}` for every all-or-none seller;
* no warm start, solved cold (presolve off, as for every HiGHS model here, so that the
  limit holds) by HiGHS through ``pyomo.contrib.solver`` in what the
  limit leaves after building and translating the model; a model too large to build
  within the limit is not started (every slot ``time_limit``, nothing traded).

Objective coefficients of the pairs the slot problems leave out are
``buy limit - sell limit``: their grid fee is not carried by the slot problems. The
value cannot matter, as those variables are fixed at 0.

Bounds and timing of a model that spans all slots
-------------------------------------------------
HiGHS proves one bound for the whole day, which cannot honestly be split into slots.
Every :class:`~gridmatch.matching.solution.SlotSolution` therefore carries
``bound_eur=None``, so the clearing certifies with the LP bound. Likewise the run time is
shared equally among the slots so that per-slot times add up to the real total; the
split itself means nothing. Termination and solution status are the model's and are
copied to every slot: ``OPTIMAL`` says the *day's* welfare is within ``mip_gap`` of
its optimum, not each slot's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from gridmatch.matching.backends.base import BackendKind
from gridmatch.matching.backends.highs_runner import TUNED_MIP_OPTIONS
from gridmatch.matching.backends.pyomo_highs import (
    PyomoBackend,
    out_of_time,
    pyomo_can_build,
    pyomo_solver_time_s,
    solve_with_pyomo_highs,
)
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


def build_textbook_model(problems: Sequence[SlotProblem]) -> pyo.ConcreteModel:
    """State the whole day as one multiple-knapsack MILP over all buy x sell pairs.

    Slots are indexed by their position ``t`` in ``problems``; buys and sellers by their
    local index in that slot problem.

    Returns
    -------
    pyomo.environ.ConcreteModel
        With variables ``y``, ``x``, ``z``, constraint blocks ``incompatible_pair_unused``,
        ``indivisible_buy_once``, ``divisible_buy_quantity``, ``seller_capacity``,
        ``seller_all_or_none`` and the objective ``welfare_eur``.
    """
    import pyomo.environ as pyo

    model = pyo.ConcreteModel(name="textbook_day")
    _add_sets_and_parameters(model, problems)
    # y[t, b, s] = 1: in slot t, seller s fills indivisible buy b completely.
    model.y = pyo.Var(model.INDIVISIBLE_PAIRS, domain=pyo.Binary)
    # x[t, b, s]: kWh seller s delivers to divisible buy b in slot t.
    model.x = pyo.Var(model.DIVISIBLE_PAIRS, domain=pyo.NonNegativeReals)
    # z[t, s] = 1: all-or-none seller s of slot t is sold completely.
    model.z = pyo.Var(model.ALL_OR_NONE_SELLERS, domain=pyo.Binary)
    add_incompatible_pair_constraints(model)
    add_buy_constraints(model)
    add_seller_constraints(model)
    add_welfare_objective(model)
    return model


def _add_sets_and_parameters(model: pyo.ConcreteModel, problems: Sequence[SlotProblem]) -> None:
    """Index sets over (slot, buy, seller) and the data, for every pair of every slot."""
    import pyomo.environ as pyo

    buys: list[tuple[int, int]] = []
    sellers: list[tuple[int, int]] = []
    indivisible_buys: list[tuple[int, int]] = []
    all_or_none_sellers: list[tuple[int, int]] = []
    pairs: list[tuple[int, int, int]] = []
    compatible: list[tuple[int, int, int]] = []
    buy_quantity_kwh: dict[tuple[int, int], float] = {}
    sell_quantity_kwh: dict[tuple[int, int], float] = {}
    welfare_eur_per_kwh: dict[tuple[int, int, int], float] = {}
    for t, problem in enumerate(problems):
        n_buys, n_sellers = problem.buy_quantity_kwh.size, problem.sell_quantity_kwh.size
        # Pairs outside the slot problem get buy limit - sell limit; they are fixed at 0.
        welfare = problem.buy_limit_eur_per_kwh[:, None] - problem.sell_limit_eur_per_kwh[None, :]
        welfare[problem.pair_buy, problem.pair_sell] = problem.pair_welfare_eur_per_kwh
        welfare_rows = welfare.tolist()
        for b in range(n_buys):
            buys.append((t, b))
            buy_quantity_kwh[t, b] = float(problem.buy_quantity_kwh[b])
            if not problem.buy_divisible[b]:
                indivisible_buys.append((t, b))
            for s in range(n_sellers):
                pairs.append((t, b, s))
                welfare_eur_per_kwh[t, b, s] = welfare_rows[b][s]
        for s in range(n_sellers):
            sellers.append((t, s))
            sell_quantity_kwh[t, s] = float(problem.sell_quantity_kwh[s])
            if problem.sell_all_or_none[s]:
                all_or_none_sellers.append((t, s))
        compatible.extend(
            (t, b, s)
            for b, s in zip(problem.pair_buy.tolist(), problem.pair_sell.tolist(), strict=True)
        )

    model.SLOTS = pyo.Set(initialize=range(len(problems)))
    model.BUYS = pyo.Set(dimen=2, initialize=buys)
    model.INDIVISIBLE_BUYS = pyo.Set(within=model.BUYS, initialize=indivisible_buys)
    model.DIVISIBLE_BUYS = model.BUYS - model.INDIVISIBLE_BUYS
    model.SELLERS = pyo.Set(dimen=2, initialize=sellers)
    model.ALL_OR_NONE_SELLERS = pyo.Set(within=model.SELLERS, initialize=all_or_none_sellers)
    model.DIVISIBLE_SELLERS = model.SELLERS - model.ALL_OR_NONE_SELLERS
    model.BUYS_IN = pyo.Set(
        model.SLOTS, initialize={t: range(p.buy_quantity_kwh.size) for t, p in enumerate(problems)}
    )
    model.SELLERS_IN = pyo.Set(
        model.SLOTS, initialize={t: range(p.sell_quantity_kwh.size) for t, p in enumerate(problems)}
    )
    model.PAIRS = pyo.Set(dimen=3, initialize=pairs)
    model.INDIVISIBLE_PAIRS = pyo.Set(
        within=model.PAIRS,
        initialize=[(t, b, s) for t, b, s in pairs if (t, b) in model.INDIVISIBLE_BUYS],
    )
    model.DIVISIBLE_PAIRS = model.PAIRS - model.INDIVISIBLE_PAIRS
    model.COMPATIBLE_PAIRS = pyo.Set(within=model.PAIRS, initialize=compatible)
    model.INCOMPATIBLE_PAIRS = model.PAIRS - model.COMPATIBLE_PAIRS

    model.buy_quantity_kwh = pyo.Param(model.BUYS, initialize=buy_quantity_kwh)
    model.sell_quantity_kwh = pyo.Param(model.SELLERS, initialize=sell_quantity_kwh)
    model.welfare_eur_per_kwh = pyo.Param(model.PAIRS, initialize=welfare_eur_per_kwh)


def _pair_var(model: pyo.ConcreteModel, t: int, b: int, s: int) -> VarData:
    """Return the pair's variable: ``y`` for an indivisible buy, ``x`` for a divisible one."""
    return model.y[t, b, s] if (t, b) in model.INDIVISIBLE_BUYS else model.x[t, b, s]


def _pair_kwh(model: pyo.ConcreteModel, t: int, b: int, s: int) -> pyo.Expression:
    """Return the kWh the pair trades: ``q_tb y_tbs`` or ``x_tbs``."""
    if (t, b) in model.INDIVISIBLE_BUYS:
        return model.buy_quantity_kwh[t, b] * model.y[t, b, s]
    return model.x[t, b, s]


def add_incompatible_pair_constraints(model: pyo.ConcreteModel) -> None:
    r"""Force every pair the slot problems leave out to zero.

    .. math::

        y_{tbs} = 0 \text{ or } x_{tbs} = 0 \quad \forall (t, b, s) \notin P
    """
    import pyomo.environ as pyo

    # A pair that is price-incompatible, or can never fit, does not trade.
    model.incompatible_pair_unused = pyo.Constraint(
        model.INCOMPATIBLE_PAIRS, rule=lambda m, t, b, s: _pair_var(m, t, b, s) == 0
    )


def add_buy_constraints(model: pyo.ConcreteModel) -> None:
    r"""Add one row per buy order of every slot.

    .. math::

        \sum_s y_{tbs} \le 1 \quad \forall (t, b) \text{ indivisible}, \qquad
        \sum_s x_{tbs} \le q_{tb} \quad \forall (t, b) \text{ divisible}
    """
    import pyomo.environ as pyo

    def indivisible_rule(m: pyo.ConcreteModel, t: int, b: int) -> object:
        if not m.SELLERS_IN[t]:
            return pyo.Constraint.Skip
        return pyo.quicksum(m.y[t, b, s] for s in m.SELLERS_IN[t]) <= 1

    def divisible_rule(m: pyo.ConcreteModel, t: int, b: int) -> object:
        if not m.SELLERS_IN[t]:
            return pyo.Constraint.Skip
        return pyo.quicksum(m.x[t, b, s] for s in m.SELLERS_IN[t]) <= m.buy_quantity_kwh[t, b]

    # An indivisible buy is served by at most one seller.
    model.indivisible_buy_once = pyo.Constraint(model.INDIVISIBLE_BUYS, rule=indivisible_rule)
    # A divisible buy is never filled beyond its quantity.
    model.divisible_buy_quantity = pyo.Constraint(model.DIVISIBLE_BUYS, rule=divisible_rule)


def add_seller_constraints(model: pyo.ConcreteModel) -> None:
    r"""Add one row per sell order of every slot.

    .. math::

        \sum_b q_{tb} y_{tbs} + \sum_b x_{tbs} \le Q_{ts} \quad \forall (t, s)
        \text{ divisible}, \qquad
        \sum_b q_{tb} y_{tbs} + \sum_b x_{tbs} = Q_{ts} z_{ts} \quad \forall (t, s)
        \text{ all-or-none}
    """
    import pyomo.environ as pyo

    def capacity_rule(m: pyo.ConcreteModel, t: int, s: int) -> object:
        if not m.BUYS_IN[t]:
            return pyo.Constraint.Skip
        sold_kwh = pyo.quicksum(_pair_kwh(m, t, b, s) for b in m.BUYS_IN[t])
        return sold_kwh <= m.sell_quantity_kwh[t, s]

    def all_or_none_rule(m: pyo.ConcreteModel, t: int, s: int) -> object:
        sold_kwh = pyo.quicksum(_pair_kwh(m, t, b, s) for b in m.BUYS_IN[t])
        return sold_kwh == m.sell_quantity_kwh[t, s] * m.z[t, s]

    # A divisible seller is never oversold.
    model.seller_capacity = pyo.Constraint(model.DIVISIBLE_SELLERS, rule=capacity_rule)
    # An all-or-none seller sells exactly everything or nothing.
    model.seller_all_or_none = pyo.Constraint(model.ALL_OR_NONE_SELLERS, rule=all_or_none_rule)


def add_welfare_objective(model: pyo.ConcreteModel) -> None:
    r"""Maximise the day's welfare in EUR over all pairs.

    .. math::

        \max \sum_{(t,b,s)} w_{tbs} \cdot \mathrm{kWh}_{tbs}, \qquad
        \mathrm{kWh}_{tbs} = q_{tb} y_{tbs} \text{ or } x_{tbs}
    """
    import pyomo.environ as pyo

    model.welfare_eur = pyo.Objective(
        expr=pyo.quicksum(
            model.welfare_eur_per_kwh[t, b, s] * _pair_kwh(model, t, b, s)
            for t, b, s in model.PAIRS
        ),
        sense=pyo.maximize,
    )


class PyomoTextbookBackend(PyomoBackend):
    """One monolithic Pyomo MILP over every slot and every buy x sell pair, solved cold.

    Per-slot bounds are ``None``: see the module docstring.
    """

    name = "pyomo-textbook"
    kind = BackendKind.EXACT
    description = "one Pyomo MILP over all slots and all buy x sell pairs (textbook baseline)"

    def solve_slot(
        self, problem: SlotProblem, options: SolveOptions, time_limit_s: float
    ) -> SlotSolution:
        """Solve one slot as a one-slot textbook model within ``time_limit_s``."""
        return self.solve_slots([problem], replace(options, time_limit_s=time_limit_s))[0]

    def solve_slots(
        self, problems: Sequence[SlotProblem], options: SolveOptions
    ) -> list[SlotSolution]:
        """Build one model for all slots, solve it once and split the answer into slots.

        Returns
        -------
        list of SlotSolution
            One per problem, in the same order, aligned with each problem's compatible
            pairs; ``bound_eur`` is ``None`` on each (see the module docstring).
        """
        start = time.perf_counter()
        if not problems:
            return []
        n_pair_vars = sum(p.buy_quantity_kwh.size * p.sell_quantity_kwh.size for p in problems)
        if n_pair_vars == 0:
            # No slot has both sides: nothing can trade and the bound is 0 for certain.
            share_s = (time.perf_counter() - start) / len(problems)
            return [
                SlotSolution(
                    p.slot,
                    np.zeros(p.n_pairs),
                    None,
                    TerminationCondition.CONVERGED,
                    SolutionStatus.OPTIMAL,
                    share_s,
                )
                for p in problems
            ]

        if not pyomo_can_build(n_pair_vars, options.time_limit_s):
            share_s = (time.perf_counter() - start) / len(problems)
            return [out_of_time(p, share_s) for p in problems]
        model = build_textbook_model(problems)
        columns = [
            _pair_var(model, t, b, s)
            for t, problem in enumerate(problems)
            for b, s in zip(problem.pair_buy.tolist(), problem.pair_sell.tolist(), strict=True)
        ]
        # Presolve off, as everywhere: on 90,000 binaries HiGHS's presolve ran 8 s past
        # a 5 s limit (benchmarks/bench_knapsack.py).
        answer = solve_with_pyomo_highs(
            model,
            options,
            pyomo_solver_time_s(options.time_limit_s, start),
            columns,
            highs_options=TUNED_MIP_OPTIONS,
        )

        allocations = []
        offset = 0
        for problem in problems:
            if answer.var_values is None:
                pair_kwh = np.zeros(problem.n_pairs)
            else:
                values = answer.var_values[offset : offset + problem.n_pairs]
                # Same rounding and clipping as the per-slot backends.
                pair_kwh = build_knapsack_arrays(problem).pair_kwh(values)
            offset += problem.n_pairs
            allocations.append((problem, pair_kwh))
        share_s = (time.perf_counter() - start) / len(problems)
        return [
            SlotSolution(
                slot=problem.slot,
                pair_quantity_kwh=pair_kwh,
                bound_eur=None,
                termination=answer.termination,
                status=answer.status,
                runtime_s=share_s,
            )
            for problem, pair_kwh in allocations
        ]
