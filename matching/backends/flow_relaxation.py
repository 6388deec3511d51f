r"""The LP relaxation of a slot, solved as a min-cost flow (OR-Tools network simplex).

Relaxing the binaries of the slot MILP (:mod:`~gridmatch.matching.knapsack_model`)
leaves a transportation problem: an indivisible buy with :math:`y_{bs} \in [0, 1]`
trades :math:`q_b y_{bs}` kWh, exactly like a divisible buy; an all-or-none seller
with :math:`z_s \in [0, 1]` sells anything up to :math:`Q_s`. So the LP is

.. math::

    \max \sum_{(b,s)} w_{bs} f_{bs} \quad\text{s.t.}\quad
    \sum_s f_{bs} \le q_b,\ \sum_b f_{bs} \le Q_s,\ f \ge 0,

a max-weight flow from buyers to sellers. A network solver finds it in milliseconds
where a general LP code needs seconds on a 50,000-pair slot, and its optimum is
integral in the flow unit.

Integer scaling (OR-Tools' flow solvers take int64 only)
--------------------------------------------------------
* Flow unit: 1 Wh. Order quantities are whole Wh (the orders file enforces it), so
  capacities are exact.
* Cost unit: ``1 / cost_scale`` EUR per Wh, with ``cost_scale`` as large as int64
  allows (typically 1e12, i.e. pico-EUR per Wh). Welfare per Wh is rounded **up**,
  so the optimum of the scaled problem is never below the true LP optimum: the bound
  stays a proven bound, loose by at most one cost unit per Wh traded.

An arc from source to sink of cost 0 lets flow bypass the market, so trading nothing
is always possible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridmatch.matching.backends.base import Backend, BackendKind
from gridmatch.matching.problem import SlotProblem
from gridmatch.matching.solution import (
    SlotSolution,
    SolutionStatus,
    SolveOptions,
    SolverFailedError,
    TerminationCondition,
)
from gridmatch.units import WH_PER_KWH

# OR-Tools' cost scaling multiplies unit costs by (nodes + 1); keep every product
# (unit cost x nodes, unit cost x total flow) far from 2**63.
_MAX_PRODUCT = 2.0**60


@dataclass(frozen=True)
class FlowRelaxation:
    """Optimum of a slot's LP relaxation.

    Attributes
    ----------
    pair_quantity_kwh
        An optimal vertex: kWh per pair, whole Wh. An indivisible buy may be split.
    bound_eur
        Proven upper bound on the slot's welfare (rounded up, see the module docs).
    buy_dual_eur_per_kwh
        With ``duals``: the optimal dual price of each buy row (the buyer's surplus per
        kWh), from the residual network's potentials; else ``None``.
    """

    pair_quantity_kwh: npt.NDArray[np.float64]
    bound_eur: float
    buy_dual_eur_per_kwh: npt.NDArray[np.float64] | None = None


def solve_flow_relaxation(problem: SlotProblem, *, duals: bool = False) -> FlowRelaxation:
    """Solve the LP relaxation of one slot as a min-cost flow.

    With ``duals``, the buy rows' dual prices come too: with ``d`` the shortest
    distances from the source in the residual network, ``max(d(b), 0)`` per Wh is an
    optimal dual of buy ``b``'s row (complementary slackness holds arc by arc; see
    :mod:`~gridmatch.matching.residual_potentials`).

    Raises
    ------
    SolverFailedError
        If OR-Tools reports anything but an optimum (it should not, as trading nothing
        is always feasible).
    """
    from ortools.graph.python import min_cost_flow

    n_pairs = problem.n_pairs
    if n_pairs == 0:
        return FlowRelaxation(np.zeros(0), 0.0)
    n_buys, n_sells = problem.buy_quantity_kwh.size, problem.sell_quantity_kwh.size
    buy_wh = problem.buy_quantity_wh()
    sell_wh = problem.sell_quantity_wh()
    total_wh = int(buy_wh.sum())

    welfare_eur_per_wh = problem.pair_welfare_eur_per_kwh / WH_PER_KWH
    largest = float(welfare_eur_per_wh.max())
    cost_scale = 1e12
    if largest > 0.0:
        nodes = n_buys + n_sells + 2
        cost_scale = min(cost_scale, _MAX_PRODUCT / (largest * max(total_wh, nodes)))
    # Rounded up: the scaled optimum never undercuts the true LP optimum.
    pair_cost = -np.ceil(welfare_eur_per_wh * cost_scale).astype(np.int64)

    source, sink = 0, n_buys + n_sells + 1
    buy_node = 1 + np.arange(n_buys)
    sell_node = 1 + n_buys + np.arange(n_sells)
    tails = np.concatenate(
        [buy_node[problem.pair_buy], np.full(n_buys, source), sell_node, [source]]
    )
    heads = np.concatenate([sell_node[problem.pair_sell], buy_node, np.full(n_sells, sink), [sink]])
    pair_capacity = np.minimum(buy_wh[problem.pair_buy], sell_wh[problem.pair_sell])
    capacities = np.concatenate([pair_capacity, buy_wh, sell_wh, [total_wh]])
    costs = np.concatenate([pair_cost, np.zeros(n_buys + n_sells + 1, dtype=np.int64)])

    flow = min_cost_flow.SimpleMinCostFlow()
    arcs = flow.add_arcs_with_capacity_and_unit_cost(
        tails.astype(np.int32), heads.astype(np.int32), capacities, costs
    )
    flow.set_nodes_supplies(
        np.array([source, sink], dtype=np.int32), np.array([total_wh, -total_wh])
    )
    status = flow.solve()
    if status != flow.OPTIMAL:
        raise SolverFailedError(f"slot {problem.slot}: min-cost flow ended with status {status}")
    pair_wh = flow.flows(arcs[:n_pairs])
    buy_duals = None
    if duals:
        from gridmatch.matching.residual_potentials import residual_distances

        distance = residual_distances(
            sink + 1, tails, heads, costs, capacities, flow.flows(arcs), source
        )
        # Costs are minus welfare: the buyer's surplus per Wh is max(d(b), 0) in cost units.
        per_wh = np.maximum(distance[buy_node], 0).astype(float) / cost_scale
        buy_duals = per_wh * WH_PER_KWH
    return FlowRelaxation(
        pair_quantity_kwh=pair_wh.astype(float) / WH_PER_KWH,
        bound_eur=-float(flow.optimal_cost()) / cost_scale,
        buy_dual_eur_per_kwh=buy_duals,
    )


class FlowRelaxationBackend(Backend):
    """The slot LP relaxation as a min-cost flow on OR-Tools: bound, not trades."""

    name = "lp-flow"
    solver = "ortools-min-cost-flow"
    kind = BackendKind.RELAXATION
    description = "LP relaxation as a min-cost flow on OR-Tools (bound, not trades)"
    requires = ("ortools",)

    def solve_slot(  # noqa: D102
        self, problem: SlotProblem, options: SolveOptions, time_limit_s: float
    ) -> SlotSolution:
        start = time.perf_counter()
        relaxation = solve_flow_relaxation(problem)
        return SlotSolution(
            slot=problem.slot,
            pair_quantity_kwh=relaxation.pair_quantity_kwh,
            bound_eur=relaxation.bound_eur,
            termination=TerminationCondition.CONVERGED,
            status=SolutionStatus.RELAXED,
            runtime_s=time.perf_counter() - start,
        )
