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

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

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
MAX_ROUNDS = 60
# Converged when the bound is this close to the LP (relative, and absolute kWh).
CONVERGED_RELATIVE = 1e-7
CONVERGED_KWH = 1e-6
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


@dataclass(frozen=True)
class PairTerms:
    """What :func:`reduced_values` needs of each pair, computed once per pricing.

    Attributes
    ----------
    at_point
        Positions of the pairs whose request is at a point (the only ones the point
        rows' duals change).
    """

    request: IntArray
    vehicle: IntArray
    capacity_kwh: FloatArray
    travel_cost_kwh: FloatArray
    at_point: IntArray
    point: IntArray
    hours: FloatArray

    @staticmethod
    def of(fleet: Fleet, pairs: Pairs, objective: Objective) -> PairTerms:
        """Compute the terms of ``pairs``."""
        request = pairs.request.astype(np.int64)
        at_point = np.nonzero(fleet.request_point[request] >= 0)[0]
        return PairTerms(
            request=request,
            vehicle=pairs.vehicle.astype(np.int64),
            capacity_kwh=pairs.capacity_kwh,
            travel_cost_kwh=objective.travel_penalty_kwh_per_min * pairs.travel_min,
            at_point=at_point,
            point=fleet.request_point[request[at_point]],
            hours=session_hours(fleet, pairs.subset(at_point)),
        )


def reduced_values(
    fleet: Fleet,
    pairs: Pairs,
    objective: Objective,
    duals: Duals,
    terms: PairTerms | None = None,
) -> FloatArray:
    """:math:`r^1_p`: a pair's best Lagrangian value with its vehicle sent.

    ``terms`` (of these pairs) saves recomputing them: column generation prices millions
    of pairs every round.
    """
    if terms is None:
        terms = PairTerms.of(fleet, pairs, objective)
    # Per request: value of a kWh (divisible) or of the whole need (indivisible).
    value = objective.weight + duals.floor * fleet.critical
    per_kwh = np.where(fleet.divisible, np.maximum(value - duals.request, 0.0), 0.0)
    lump = np.where(fleet.divisible, 0.0, value * fleet.need_kwh - duals.request)
    request = terms.request
    reduced: FloatArray = (
        per_kwh[request] * terms.capacity_kwh
        + lump[request]
        - terms.travel_cost_kwh
        - duals.vehicle[terms.vehicle]
    )
    if terms.at_point.size:
        # Pairs at points: the power row's dual per kW, the port row's per session.
        at, point = terms.at_point, terms.point
        at_request = request[at]
        kappa_per_kwh = duals.power[point] / terms.hours
        kwh_value = value[at_request] - kappa_per_kwh
        reduced[at] = (
            np.where(
                fleet.divisible[at_request],
                np.maximum(kwh_value - duals.request[at_request], 0.0) * terms.capacity_kwh[at],
                kwh_value * fleet.need_kwh[at_request] - duals.request[at_request],
            )
            - terms.travel_cost_kwh[at]
            - duals.vehicle[terms.vehicle[at]]
            - duals.port[point]
        )
    return reduced


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


def top_per_group(groups: IntArray, score: FloatArray, k: int, n_groups: int = 0) -> IntArray:
    """Positions of the ``k`` highest scores in each group.

    ``groups`` sorted (as pairs are by vehicle) and ``n_groups`` given: a dense
    ``groups x members`` argpartition, ~10x faster than sorting millions of pairs.
    """
    if groups.size == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    if n_groups and np.all(groups[1:] >= groups[:-1]):
        counts = np.bincount(groups, minlength=n_groups)
        width = int(counts.max())
        if k >= width:
            return np.arange(groups.size, dtype=np.int64)
        if n_groups * width <= 4 * groups.size + 1_000_000:
            starts = np.r_[0, np.cumsum(counts)[:-1]]
            slot = np.arange(groups.size) - starts[groups]
            dense = np.full((n_groups, width), -np.inf)
            dense[groups, slot] = score
            best = np.argpartition(-dense, k - 1, axis=1)[:, :k]
            rows = np.repeat(np.arange(n_groups), k)
            cols = best.ravel()
            keep = cols < counts[rows]
            picked: IntArray = starts[rows[keep]] + cols[keep]
            return np.sort(picked)
    order = np.lexsort((-score, groups))
    ordered = groups[order]
    starts = np.r_[0, np.nonzero(ordered[1:] != ordered[:-1])[0] + 1]
    rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
    chosen: IntArray = order[rank < k]
    return chosen


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

    def solve(self) -> tuple[float, Duals, FloatArray] | None:
        """Solve; the optimum, the duals, every pair's ``y`` (``None`` if not optimal)."""
        import highspy

        h = self._highs
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
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
    seconds); the bound is valid at whatever round it stopped. ``None`` if the first LP
    could not be solved.
    """
    began = time.perf_counter()
    profit = pair_profit(fleet, pairs, objective)
    useful = np.nonzero(profit > 0.0)[0]
    by_vehicle = top_per_group(
        pairs.vehicle[useful].astype(np.int64),
        profit[useful],
        INITIAL_PER_VEHICLE,
        fleet.n_vehicles,
    )
    by_request = top_per_group(
        pairs.request[useful].astype(np.int64), profit[useful], INITIAL_PER_REQUEST
    )
    initial = np.union1d(useful[by_vehicle], useful[by_request])
    initial = np.union1d(initial, extra)
    lp = _LpOverPairs(fleet, pairs, objective)
    lp.add(initial)
    terms = PairTerms.of(fleet, pairs, objective)
    inside = np.zeros(pairs.size, dtype=bool)
    inside[initial] = True
    best_bound = last_bound = np.inf
    answer = None
    reduced = np.zeros(pairs.size)
    converged = False
    rounds = 0
    for rounds in range(1, MAX_ROUNDS + 1):
        solved = lp.solve()
        if solved is None:
            break
        answer = solved
        lp_value, duals, _ = solved
        reduced = reduced_values(fleet, pairs, objective, duals, terms)
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
                pairs.vehicle[outside].astype(np.int64),
                reduced[outside],
                ADDED_PER_VEHICLE,
                fleet.n_vehicles,
            )
        ]
        inside[new] = True
        lp.add(new)
    if answer is None:
        return None
    lp_value, duals, y = answer
    return PricedLp(
        selected=np.concatenate(lp.positions),
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
