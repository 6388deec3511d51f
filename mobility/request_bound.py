r"""A bound that keeps each request's vehicles whole: the Lagrangian over whole trips.

The LP of :mod:`~gridmatch.mobility.pricing` lets a vehicle deliver a fraction of what
it could bring somewhere at that fraction of its trip (``y = x / u``); in emergency
mode's second stage that is how it meets the critical floor: a mobile storage truck
split over many requests' leftovers. Here the same multipliers relax the same rows
(vehicles :math:`\alpha_v`, ports :math:`\delta_q`, power :math:`\kappa_q`, the
floor :math:`\mu`, all :math:`\ge 0`), but each request's own row is kept, with its
vehicles whole (:math:`y_p \in \{0, 1\}`). What is left is one small problem per
request :math:`i` (need :math:`N_i`):

.. math::

    Z_i = \max_{S,\, x} \sum_{p \in S} (a_p x_p - c_p) \quad
    \text{s.t.} \; \sum_{p \in S} x_p \le N_i,\ 0 \le x_p \le u_p,

with :math:`a_p = w_i + \mu [i \text{ critical}] - \kappa_q / h_p` per kWh and
:math:`c_p = \varepsilon t_p + \alpha_v + \delta_q` per trip (:math:`S` the pairs sent),
and

.. math::

    L' = \sum_v \alpha_v + \sum_q (\delta_q P_q + \kappa_q K_q) - \mu F + \sum_i Z_i

bounds every dispatch from above (weak duality: the relaxed rows only add
non-negative terms for a dispatch that keeps them).

**Each** :math:`Z_i` **from above.** Two upper bounds, the smaller one counts:

* the request's LP: :math:`\beta_i N_i + \sum_{p \ni i} \max(0, r^1_p)` for any
  :math:`\beta_i \ge 0` (the LP's own dual: then :math:`\sum_i` of it gives the LP's
  bound :math:`L`, so :math:`L' \le L` at the LP's multipliers);
* a knapsack over whole trips (divisible requests): with :math:`\bar a = \max_p a_p`
  and every capacity rounded up to a grid of :math:`g = N_i / K` kWh,
  :math:`\tilde u_p = g \lceil u_p / g \rceil \ge u_p`,

  .. math::

      Z_i \le \max_S \; \bar a \min\bigl(N_i, \textstyle\sum_{p \in S} \tilde u_p\bigr)
      - \sum_{p \in S} c_p,

  solved exactly by a dynamic programme over the :math:`K + 1` grid levels (the levels
  at or above :math:`N_i` merged into one). A pair with :math:`\max(0, a_p) u_p \le
  c_p` adds at most 0 to any :math:`S` (``x_p`` at its best), so some optimal
  :math:`S` leaves it out, and so does the programme.

An indivisible request's problem (one pair at most) is its LP already.
"""

from __future__ import annotations

import math
import time

import numba
import numpy as np
import numpy.typing as npt

from gridmatch.mobility.model import Objective
from gridmatch.mobility.pairs import Fleet, Pairs, session_hours
from gridmatch.mobility.pricing import Duals

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# Grid levels of a request's knapsack (its need / this is the grid, in kWh).
GRID_LEVELS = 1000
# Fewer levels than this are not worth the time (the bound would be close to the LP's).
MIN_GRID_LEVELS = 50
# Cells (pairs x levels) the dynamic programme gets through per second, measured
# conservatively (0.75e9 measured on one core of this machine, unloaded).
CELLS_PER_S = 2.5e8
# What the arrays before the programme take per pair (0.15-0.6 s measured on 3.5
# million pairs, under load): no time for them, no bound.
PREPARE_S_PER_PAIR = 2e-7
# Each request's value is raised by this much (relative, and kWh) against rounding.
SAFETY_RELATIVE = 1e-9
SAFETY_KWH = 1e-9


def whole_trip_bound_kwh(
    fleet: Fleet,
    pairs: Pairs,
    objective: Objective,
    duals: Duals,
    reduced: FloatArray,
    deadline: float,
    levels: int = GRID_LEVELS,
) -> float:
    """:math:`L'` of the module docstring at ``duals`` (``reduced``: every pair's ``r^1_p``).

    Returns ``inf`` when the dynamic programme would not finish by ``deadline``
    (``time.perf_counter`` seconds) with at least :data:`MIN_GRID_LEVELS` levels.
    """
    if deadline - time.perf_counter() < PREPARE_S_PER_PAIR * pairs.size:
        return math.inf
    request = pairs.request.astype(np.int64)
    # Per request, its LP's value (the first upper bound of Z_i).
    rhs = np.where(fleet.divisible, fleet.need_kwh, 1.0)
    z_lp = duals.request * rhs + np.bincount(
        request, np.maximum(reduced, 0.0), minlength=fleet.n_requests
    )
    # The relaxed rows' own terms (as in the LP's bound, without the requests').
    base = (
        float(duals.vehicle.sum())
        + float(np.dot(duals.port, fleet.point_ports))
        + float(np.dot(duals.power, fleet.point_kw))
        - duals.floor * (objective.floor_rhs_kwh() if objective.floor_kwh is not None else 0.0)
    )
    a, c = _per_kwh_and_per_trip(fleet, pairs, objective, duals)
    divisible = fleet.divisible[request]
    useful = np.nonzero(divisible & (np.maximum(a, 0.0) * pairs.capacity_kwh - c > 0.0))[0]
    z = z_lp.copy()
    if useful.size:
        order = useful[np.argsort(request[useful], kind="stable")]
        grouped = request[order]
        requests, starts = np.unique(grouped, return_index=True)
        starts = np.append(starts, order.size).astype(np.int64)
        left = deadline - time.perf_counter()
        affordable = left * CELLS_PER_S / max(order.size, 1) - 1.0
        levels = int(min(levels, affordable)) if affordable > 0 else 0
        if levels < MIN_GRID_LEVELS:
            return math.inf
        a_max = np.zeros(fleet.n_requests)
        np.maximum.at(a_max, grouped, a[order])
        z_dp = knapsack_over_trips(
            starts,
            pairs.capacity_kwh[order],
            c[order],
            a_max[requests],
            fleet.need_kwh[requests],
            levels,
        )
        z[requests] = np.minimum(z[requests], z_dp)
    z += SAFETY_RELATIVE * np.abs(z) + SAFETY_KWH
    return base + float(z.sum())


def _per_kwh_and_per_trip(
    fleet: Fleet, pairs: Pairs, objective: Objective, duals: Duals
) -> tuple[FloatArray, FloatArray]:
    """Each pair's :math:`a_p` (value of a kWh) and :math:`c_p` (cost of the trip)."""
    request = pairs.request.astype(np.int64)
    value = objective.weight + duals.floor * fleet.critical
    a: FloatArray = value[request].astype(float)
    c: FloatArray = (
        objective.travel_penalty_kwh_per_min * pairs.travel_min + duals.vehicle[pairs.vehicle]
    )
    at = np.nonzero(fleet.request_point[request] >= 0)[0]
    if at.size:
        point = fleet.request_point[request[at]]
        a[at] -= duals.power[point] / session_hours(fleet, pairs.subset(at))
        c[at] += duals.port[point]
    return a, c


# Compiled when the module is imported (or loaded from numba's cache), not inside the
# first dispatch, whose time limit would not count the compilation.
@numba.njit(
    "float64[:](int64[:], float64[:], float64[:], float64[:], float64[:], int64)", cache=True
)
def knapsack_over_trips(
    starts: IntArray,
    capacity: FloatArray,
    cost: FloatArray,
    value_per_kwh: FloatArray,
    need: FloatArray,
    levels: int,
) -> FloatArray:  # pragma: no cover - compiled by numba
    """Per group ``k`` (items ``starts[k]:starts[k+1]``): the grid knapsack's optimum.

    ``max_S value_per_kwh * min(need, g * sum ceil(u / g)) - sum cost`` over subsets
    ``S`` of the group's items, ``g = need / levels`` (module docstring); 0 for ``S``
    empty.
    """
    n = starts.size - 1
    out = np.zeros(n)
    cheapest = np.empty(levels + 1)
    for k in range(n):
        grid = need[k] / levels
        cheapest[:] = np.inf
        cheapest[0] = 0.0
        top = 0  # highest level reached so far
        for p in range(starts[k], starts[k + 1]):
            steps = max(math.ceil(capacity[p] / grid - 1e-12), 1)
            # Rounding up by one step at most keeps the grid level >= u / g.
            if steps * grid < capacity[p]:
                steps += 1
            trip = cost[p]
            for level in range(top, -1, -1):
                if cheapest[level] < np.inf:
                    reached = min(level + steps, levels)
                    candidate = cheapest[level] + trip
                    if candidate < cheapest[reached]:
                        cheapest[reached] = candidate
            top = min(top + steps, levels)
        best = 0.0
        for level in range(top + 1):
            worth = value_per_kwh[k] * min(level * grid, need[k]) - cheapest[level]
            if worth > best:
                best = worth
        out[k] = best
    return out
