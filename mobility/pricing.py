r"""Large dispatches: the LP over all pairs by column generation, and a bound for all of them.

A town's 1,000 vehicles and 5,000 requests have millions of eligible pairs; the MILP
cannot hold them all. The LP relaxation is solved over a growing set of pairs (HiGHS,
warm-started after each addition): its row duals :math:`\alpha_v` (vehicles),
:math:`\beta_i` (requests), :math:`\delta_q` (ports), :math:`\kappa_q` (power) and
:math:`\mu` (the critical floor), all :math:`\ge 0`, price every pair left out.

**The bound.** For any such duals, relaxing the rows into the objective leaves one small
problem per pair over :math:`\{0 \le x_p \le u_p y_p,\ 0 \le y_p \le 1\}`, whose best
value with the vehicle sent (:math:`y_p = 1`) is

.. math::

    r^1_p = \max(0, a_p)\, u_p - \varepsilon t_p - \alpha_v - \delta_q, \qquad
    a_p = w_i + \mu [i \text{ critical}] - \beta_i - \kappa_q / h_p

for a divisible request, and :math:`(w_i + \mu [i \text{ crit.}] - \kappa_q / h_p) N_i
- \varepsilon t_p - \alpha_v - \beta_i - \delta_q` for an indivisible one. So

.. math::

    L = \sum_v \alpha_v + \sum_i \beta_i\, \mathrm{rhs}_i + \sum_q (\delta_q P_q +
    \kappa_q K_q) - \mu F + \sum_{p \in \text{all pairs}} \max(0, r^1_p)

bounds every dispatch from above (Lagrangian relaxation; weak duality), whichever pairs
the LP held. When no pair left out has :math:`r^1_p > 0`, :math:`L` equals the LP's
optimum over all pairs: column generation has converged.

**Fixing.** A dispatch that sends :math:`v` to :math:`i` is worth at most
:math:`L - \max(0, r^1_p) + r^1_p`. Given a dispatch worth :math:`z`, every pair with
:math:`r^1_p < z - L` is in no better dispatch: the MILP over the remaining pairs is
the MILP over all of them, for anything better than :math:`z`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from gridmatch.errors import SolverError
from gridmatch.matching.backends.highs_runner import new_highs
from gridmatch.mobility.model import Objective, pair_profit
from gridmatch.mobility.pairs import Fleet, Pairs, session_hours

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# Initial pairs: each vehicle's best few requests, each request's best few vehicles.
INITIAL_PER_VEHICLE = 15
INITIAL_PER_REQUEST = 3
# Pairs added per vehicle per round (those with the largest reduced value).
ADDED_PER_VEHICLE = 10
# Columns the first LP gets by vehicle, and a round adds, at most: fewer per vehicle
# in large fleets (100,000 vehicles x 500 requests: 15 each made a first LP of 1.05 M
# columns that did not finish in 9 s; 10,000 vehicles still get 15 and 10).
MAX_INITIAL_BY_VEHICLE = 150_000
MAX_ADDED_PER_ROUND = 100_000
MAX_ROUNDS = 60
# Converged when the bound is this close to the LP (relative, and absolute kWh).
CONVERGED_RELATIVE = 1e-7
CONVERGED_KWH = 1e-6
# Choosing and adding the first LP's columns, per pair (1.4-1.6 s measured on 26.7 M
# pairs, load 1-2 on 2 cores): with less time than that left, no LP is tried.
SETUP_S_PER_PAIR = 6e-8
# A reduced value above this prices a pair in.
PRICE_TOLERANCE = 1e-7


@dataclass(frozen=True)
class Duals:
    """Non-negative multipliers of the rows (see the module docstring)."""

    vehicle: FloatArray
    request: FloatArray
    port: FloatArray
    power: FloatArray
    floor: float


def reduced_values(
    fleet: Fleet,
    pairs: Pairs,
    objective: Objective,
    duals: Duals,
) -> FloatArray:
    """:math:`r^1_p`: a pair's best Lagrangian value with its vehicle sent.

    Column generation prices millions of pairs every round: one compiled pass over them
    (measured on 26.7 M pairs: 0.75-2.5 s a round as numpy arrays, after 1.9 s of terms
    computed once).
    """
    # Per request: value of a kWh (divisible) or of the whole need (indivisible).
    value = objective.weight + duals.floor * fleet.critical
    per_kwh = np.where(fleet.divisible, np.maximum(value - duals.request, 0.0), 0.0)
    lump = np.where(fleet.divisible, 0.0, value * fleet.need_kwh - duals.request)
    point = np.ascontiguousarray(fleet.request_point, dtype=np.int64)
    # The point rows' duals change only the pairs at points (priced per kW and session).
    has_point = fleet.n_points > 0 and bool(np.any(point >= 0))
    reduced: FloatArray = _reduced(
        np.ascontiguousarray(pairs.vehicle, dtype=np.int32),
        np.ascontiguousarray(pairs.request, dtype=np.int32),
        np.ascontiguousarray(pairs.capacity_kwh, dtype=np.float64),
        np.ascontiguousarray(pairs.travel_min, dtype=np.float64),
        float(objective.travel_penalty_kwh_per_min),
        np.ascontiguousarray(per_kwh, dtype=np.float64),
        np.ascontiguousarray(lump, dtype=np.float64),
        np.ascontiguousarray(value, dtype=np.float64),
        np.ascontiguousarray(duals.vehicle, dtype=np.float64),
        np.ascontiguousarray(duals.request, dtype=np.float64),
        point if has_point else np.full(point.size, -1, dtype=np.int64),
        np.ascontiguousarray(duals.power, dtype=np.float64),
        np.ascontiguousarray(duals.port, dtype=np.float64),
        np.ascontiguousarray(fleet.divisible, dtype=np.bool_),
        np.ascontiguousarray(fleet.need_kwh, dtype=np.float64),
        np.ascontiguousarray(fleet.earliest_min, dtype=np.float64),
        np.ascontiguousarray(fleet.latest_min, dtype=np.float64),
    )
    return reduced


# Compiled at import (or loaded from numba's cache), so that no dispatch pays for it.
@numba.njit(
    "float64[:](int32[:], int32[:], float64[:], float64[:], float64, float64[:], float64[:],"
    " float64[:], float64[:], float64[:], int64[:], float64[:], float64[:], boolean[:],"
    " float64[:], float64[:], float64[:])",
    cache=True,
)
def _reduced(
    vehicle: npt.NDArray[np.int32],
    request: npt.NDArray[np.int32],
    capacity_kwh: FloatArray,
    travel_min: FloatArray,
    penalty_kwh_per_min: float,
    per_kwh: FloatArray,
    lump: FloatArray,
    value: FloatArray,
    alpha: FloatArray,
    beta: FloatArray,
    point: IntArray,
    kappa: FloatArray,
    delta: FloatArray,
    divisible: npt.NDArray[np.bool_],
    need_kwh: FloatArray,
    earliest_min: FloatArray,
    latest_min: FloatArray,
) -> FloatArray:  # pragma: no cover - compiled by numba
    """Kernel of :func:`reduced_values`, in the order of its numpy version's arithmetic."""
    out = np.empty(vehicle.size)
    for p in range(vehicle.size):
        i = request[p]
        travel_cost = penalty_kwh_per_min * travel_min[p]
        q = point[i]
        if q < 0:
            out[p] = per_kwh[i] * capacity_kwh[p] + lump[i] - travel_cost - alpha[vehicle[p]]
            continue
        hours = (latest_min[i] - max(travel_min[p], earliest_min[i])) / 60.0
        kwh_value = value[i] - kappa[q] / hours
        if divisible[i]:
            worth = max(kwh_value - beta[i], 0.0) * capacity_kwh[p]
        else:
            worth = kwh_value * need_kwh[i] - beta[i]
        out[p] = worth - travel_cost - alpha[vehicle[p]] - delta[q]
    return out


def lagrangian_bound(
    fleet: Fleet, objective: Objective, duals: Duals, reduced: FloatArray
) -> float:
    """:math:`L` of the module docstring, given every pair's :math:`r^1_p`."""
    rhs = np.where(fleet.divisible, fleet.need_kwh, 1.0)
    floor = objective.floor_rhs_kwh() if objective.floor_kwh is not None else 0.0
    return float(
        duals.vehicle.sum()
        + np.dot(duals.request, rhs)
        + np.dot(duals.port, fleet.point_ports)
        + np.dot(duals.power, fleet.point_kw)
        - duals.floor * floor
        + np.maximum(reduced, 0.0).sum()
    )


def top_per_group(
    groups: npt.NDArray[np.integer[Any]], score: FloatArray, k: int, n_groups: int = 0
) -> IntArray:
    """Positions, ascending, of the ``k`` highest scores in each group.

    Among equal scores the earlier position wins. ``groups`` are non-negative
    (``n_groups``, if given, more than the largest). One compiled pass: a counting sort
    by group, then each group's best ``k`` kept in a small sorted buffer (measured on
    26.7 M pairs: 4.0 s by vehicle as a dense argpartition, 11.0 s by request as a
    lexsort).
    """
    if groups.size == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    n = max(int(n_groups), int(groups.max()) + 1)
    chosen: IntArray = _top_k_by_group(
        np.ascontiguousarray(groups, dtype=np.int32),  # pairs' own indices: no copy
        np.ascontiguousarray(score, dtype=np.float64),
        int(k),
        n,
    )
    return chosen


# Compiled at import (or loaded from numba's cache), so that no dispatch pays for it.
@numba.njit("int64[:](int32[:], float64[:], int64, int64)", cache=True)
def _top_k_by_group(
    groups: npt.NDArray[np.int32], score: FloatArray, k: int, n_groups: int
) -> IntArray:  # pragma: no cover - compiled by numba
    """Kernel of :func:`top_per_group`."""
    n = groups.size
    counts = np.zeros(n_groups + 1, dtype=np.int64)
    for position in range(n):
        counts[groups[position] + 1] += 1
    starts = np.cumsum(counts)
    # Members of each group in position order (a stable counting sort).
    members = np.empty(n, dtype=np.int64)
    fill = starts[:-1].copy()
    for position in range(n):
        g = groups[position]
        members[fill[g]] = position
        fill[g] += 1
    keep = np.zeros(n, dtype=np.bool_)
    best = np.empty(k, dtype=np.int64)  # a group's best so far, by score descending
    for g in range(n_groups):
        size = 0
        for j in range(starts[g], starts[g + 1]):
            position = members[j]
            value = score[position]
            if size == k:
                if not value > score[best[k - 1]]:
                    continue  # ties: the earlier position stays
                size -= 1
            # Insert after every member at least as good (earlier positions first).
            slot = size
            while slot > 0 and value > score[best[slot - 1]]:
                best[slot] = best[slot - 1]
                slot -= 1
            best[slot] = position
            size += 1
        for j in range(size):
            keep[best[j]] = True
    return np.flatnonzero(keep)


def _per_vehicle(wanted: int, most: int, n_vehicles: int) -> int:
    """``wanted`` columns per vehicle, fewer (at least one) if more than ``most`` in all."""
    return max(1, min(wanted, most // max(n_vehicles, 1)))


@dataclass(frozen=True)
class PricedLp:
    """What column generation reached.

    Attributes
    ----------
    selected
        Positions (in the full pairs) the LP held at the end.
    lp_kwh
        The LP's optimum over ``selected``.
    bound_kwh
        The best (lowest) Lagrangian bound over all pairs seen in any round.
    duals, reduced, last_bound_kwh
        The duals of the last LP, every pair's :math:`r^1_p` at them, and the bound
        they give (what fixing must use).
    y_values
        The LP's ``y`` of each selected pair.
    """

    selected: IntArray
    lp_kwh: float
    bound_kwh: float
    last_bound_kwh: float
    duals: Duals
    reduced: FloatArray
    y_values: FloatArray
    converged: bool
    rounds: int
    runtime_s: float


class _LpOverPairs:
    """The LP relaxation over a growing set of pairs, in one warm-started HiGHS object."""

    def __init__(self, fleet: Fleet, pairs: Pairs, objective: Objective) -> None:
        import highspy

        self._fleet = fleet
        self._pairs = pairs
        self._objective = objective
        self._highs = new_highs()
        h = self._highs
        h.setOptionValue("presolve", "off")
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        inf = highspy.kHighsInf
        self._inf = inf
        rhs = np.concatenate(
            [
                np.ones(fleet.n_vehicles),
                np.where(fleet.divisible, fleet.need_kwh, 1.0),
                fleet.point_ports.astype(float),
                fleet.point_kw,
            ]
        )
        lower = np.full(rhs.size, -inf)
        self._vehicle_row = 0
        self._request_row = fleet.n_vehicles
        self._port_row = self._request_row + fleet.n_requests
        self._power_row = self._port_row + fleet.n_points
        self._floor_row = self._power_row + fleet.n_points
        self._has_floor = objective.floor_kwh is not None
        if self._has_floor:
            rhs = np.append(rhs, inf)
            lower = np.append(lower, objective.floor_rhs_kwh())
        self._n_rows = rhs.size
        empty = np.zeros(0, dtype=np.int32)
        h.addRows(self._n_rows, lower, rhs, 0, np.zeros(0, dtype=np.int32), empty, np.zeros(0))
        self.timed_out = False
        self.positions: list[IntArray] = []
        self._y_cols: list[IntArray] = []
        self._y_scale: list[FloatArray] = []
        self._n_cols = 0

    def add(self, positions: IntArray) -> None:
        """Add the pairs at ``positions`` as columns.

        An indivisible pair is its ``y`` column. A divisible pair is its ``x`` column
        alone, with ``y = x / u`` substituted: the LP optimum sets ``y`` that low anyway
        (``y`` only costs travel and holds the vehicle's and the port's rows), so the LP
        is the same, without a link row per pair (measured: a third fewer rows, and
        HiGHS's re-solves after each round of columns faster).
        """
        if positions.size == 0:
            return
        fleet, pairs, objective = self._fleet, self._pairs, self._objective
        sub = pairs.subset(positions)
        n = positions.size
        request = sub.request.astype(np.int64)
        divisible = fleet.divisible[request]
        need = fleet.need_kwh[request]
        weight = objective.weight[request]
        point = fleet.request_point[request]
        hours = session_hours(fleet, sub)
        critical = fleet.critical[request]
        capacity = sub.capacity_kwh
        # Per column: the row coefficients of one unit (y = 1, or x = 1 kWh).
        per_y = np.where(divisible, 1.0 / capacity, 1.0)  # vehicle and port rows
        per_kwh = np.where(divisible, 1.0, need)  # request (divisible), power, floor rows
        columns = np.arange(n)
        entries_row = [sub.vehicle.astype(np.int64)]
        entries_col = [columns]
        entries_val = [per_y]
        # Request rows: kWh of a divisible one, one vehicle of an indivisible one.
        entries_row.append(self._request_row + request)
        entries_col.append(columns)
        entries_val.append(np.ones(n))
        at_point = np.nonzero(point >= 0)[0]
        entries_row.append(self._port_row + point[at_point])
        entries_col.append(at_point)
        entries_val.append(per_y[at_point])
        entries_row.append(self._power_row + point[at_point])
        entries_col.append(at_point)
        entries_val.append(per_kwh[at_point] / hours[at_point])
        if self._has_floor:
            on_floor = np.nonzero(critical)[0]
            entries_row.append(np.full(on_floor.size, self._floor_row))
            entries_col.append(on_floor)
            entries_val.append(per_kwh[on_floor])
        travel = objective.travel_penalty_kwh_per_min * sub.travel_min
        cost = np.where(divisible, weight - travel / capacity, weight * need - travel)
        upper = np.where(divisible, capacity, 1.0)
        self._add_cols(cost, upper, entries_row, entries_col, entries_val, n)
        self._y_cols.append(self._n_cols + columns)
        self._y_scale.append(per_y)
        self._n_cols += n
        self.positions.append(positions)

    def _add_cols(
        self,
        cost: FloatArray,
        upper: FloatArray,
        rows: list[IntArray],
        cols: list[IntArray],
        vals: list[FloatArray],
        n: int,
    ) -> None:
        matrix = sp.csc_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(self._n_rows, n),
        )
        matrix.sort_indices()
        self._highs.addCols(
            n,
            cost,
            np.zeros(n),
            upper,
            int(matrix.nnz),
            matrix.indptr[:-1].astype(np.int32),
            matrix.indices.astype(np.int32),
            matrix.data,
        )

    def solve(self, deadline: float) -> tuple[float, Duals, FloatArray] | None:
        """Solve by ``deadline``; the optimum, the duals, every pair's ``y``.

        ``None`` if not optimal, :attr:`timed_out` telling whether the time ran out.
        """
        import highspy

        h = self._highs
        # The user's limit holds in the LP too: on 10,000 x 5,000 the first LP alone
        # may take seconds, and an LP stopped early gives neither duals nor a bound.
        h.setOptionValue("time_limit", max(deadline - time.perf_counter(), 1e-3))
        h.run()
        status = h.getModelStatus()
        self.timed_out = status == highspy.HighsModelStatus.kTimeLimit
        if status != highspy.HighsModelStatus.kOptimal:
            return None
        solution = h.getSolution()
        row_dual = np.asarray(solution.row_dual, dtype=float)
        col_value = np.asarray(solution.col_value, dtype=float)
        fleet = self._fleet
        # HiGHS, maximising, gives binding <= rows a positive dual and the >= floor a
        # negative one; clipping at 0 keeps the multipliers valid whatever the noise.
        duals = Duals(
            vehicle=np.maximum(row_dual[: fleet.n_vehicles], 0.0),
            request=np.maximum(row_dual[self._request_row : self._port_row], 0.0),
            port=np.maximum(row_dual[self._port_row : self._power_row], 0.0),
            power=np.maximum(row_dual[self._power_row : self._floor_row], 0.0),
            floor=float(max(-row_dual[self._floor_row], 0.0)) if self._has_floor else 0.0,
        )
        y = (
            col_value[np.concatenate(self._y_cols)] * np.concatenate(self._y_scale)
            if self._y_cols
            else np.zeros(0)
        )
        return float(h.getInfo().objective_function_value), duals, y


def priced_lp(
    fleet: Fleet,
    pairs: Pairs,
    objective: Objective,
    extra: IntArray,
    deadline: float,
) -> PricedLp | None:
    """Column generation from each vehicle's and request's best pairs plus ``extra``.

    Stops when converged, after :data:`MAX_ROUNDS`, or at ``deadline`` (``time.perf_counter``
    seconds; each LP is stopped there too); the bound is valid at whatever round it
    stopped. ``None`` if the first LP did not finish by ``deadline``: there is no bound.

    Raises
    ------
    SolverError
        HiGHS stopped on the first LP for another reason than the time (the LP is
        always feasible, nobody going anywhere, and bounded by the needs).
    """
    began = time.perf_counter()
    if deadline - began < SETUP_S_PER_PAIR * pairs.size:
        # No time for any LP: choosing and adding the first columns would end past it.
        return None
    profit = pair_profit(fleet, pairs, objective)
    # Pairs with no profit rank below all others and are then left out: the same as
    # ranking the others alone, without gathering them (seconds on 26.7 M pairs).
    score = np.where(profit > 0.0, profit, -np.inf)
    per_vehicle = _per_vehicle(INITIAL_PER_VEHICLE, MAX_INITIAL_BY_VEHICLE, fleet.n_vehicles)
    by_vehicle = top_per_group(pairs.vehicle, score, per_vehicle, fleet.n_vehicles)
    by_request = top_per_group(pairs.request, score, INITIAL_PER_REQUEST, fleet.n_requests)
    initial = np.union1d(by_vehicle[profit[by_vehicle] > 0.0], by_request[profit[by_request] > 0.0])
    initial = np.union1d(initial, extra)
    lp = _LpOverPairs(fleet, pairs, objective)
    lp.add(initial)
    inside = np.zeros(pairs.size, dtype=bool)
    inside[initial] = True
    best_bound = last_bound = np.inf
    answer = None
    answered_positions: list[IntArray] = []
    reduced = np.zeros(pairs.size)
    converged = False
    rounds = 0
    for rounds in range(1, MAX_ROUNDS + 1):
        solved = lp.solve(deadline)
        if solved is None:
            if answer is None and not lp.timed_out:
                raise SolverError("HiGHS could not solve the dispatch LP to optimality")
            break
        answer = solved
        # The columns this answer is over (a later LP stopped by the deadline has more).
        answered_positions = list(lp.positions)
        lp_value, duals, _ = solved
        reduced = reduced_values(fleet, pairs, objective, duals)
        last_bound = lagrangian_bound(fleet, objective, duals, reduced)
        best_bound = min(best_bound, last_bound)
        if best_bound - lp_value <= CONVERGED_RELATIVE * abs(lp_value) + CONVERGED_KWH:
            converged = True
            break
        outside = np.nonzero(~inside & (reduced > PRICE_TOLERANCE))[0]
        if outside.size == 0 or time.perf_counter() >= deadline or rounds == MAX_ROUNDS:
            converged = outside.size == 0
            break
        new = outside[
            top_per_group(
                pairs.vehicle[outside],
                reduced[outside],
                _per_vehicle(ADDED_PER_VEHICLE, MAX_ADDED_PER_ROUND, fleet.n_vehicles),
                fleet.n_vehicles,
            )
        ]
        inside[new] = True
        lp.add(new)
    if answer is None:
        return None
    lp_value, duals, y = answer
    return PricedLp(
        selected=np.concatenate(answered_positions),
        lp_kwh=lp_value,
        bound_kwh=float(best_bound),
        last_bound_kwh=float(last_bound),
        duals=duals,
        reduced=reduced,
        y_values=y,
        converged=converged,
        rounds=rounds,
        runtime_s=time.perf_counter() - began,
    )
