r"""The dispatch MILP as solver-neutral arrays.

Sets: vehicles :math:`v`, requests :math:`i` (need :math:`N_i`, weight :math:`w_i`),
points :math:`q` (ports :math:`P_q`, limit :math:`K_q` kW) and the eligible pairs
:math:`p = (v, i)` of :mod:`~gridmatch.mobility.pairs`, each with capacity :math:`u_p`,
travel time :math:`t_p` and session length :math:`h_p` hours. Every vehicle makes one
trip: it drives to one request and delivers there (a vehicle is a knapsack of its spare
energy after the drive; a divisible request is filled by several of them).

Columns (one comment per family):

* :math:`y_p \in \{0, 1\}`: vehicle :math:`v` drives to request :math:`i`;
* :math:`x_p \in [0, u_p]`: kWh it delivers there (divisible requests only; an
  indivisible request's pair delivers :math:`e_p = N_i y_p`, else :math:`e_p = x_p`).

.. math::

    \max \; \sum_p w_i e_p - \varepsilon \sum_p t_p y_p

subject to

* one trip per vehicle: :math:`\sum_{p \ni v} y_p \le 1`;
* a divisible request gets at most its need: :math:`\sum_{p \ni i} x_p \le N_i`;
  an indivisible one at most one vehicle: :math:`\sum_{p \ni i} y_p \le 1`;
* link: :math:`x_p \le u_p y_p` (energy only from a vehicle that comes);
* ports: :math:`\sum_{p \text{ at } q} y_p \le P_q` (a session holds its port for the
  whole window, so all sessions of a point may overlap);
* power: :math:`\sum_{p \text{ at } q} e_p / h_p \le K_q` (a session at a point runs at
  constant power :math:`e_p / h_p` from its start to the window's end, so the point's
  limit holds at every instant, however sessions overlap);
* emergency mode, second stage: :math:`\sum_{p:\, i \text{ critical}} e_p \ge F`, the
  critical energy the first stage served.

:math:`\varepsilon` is ``travel_penalty_kwh_per_min``; :math:`w_i = 1` in normal mode
and in the second stage, :math:`w_i = [i \text{ critical}]` in the first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from gridmatch.matching.knapsack_model import KnapsackArrays
from gridmatch.mobility.pairs import Fleet, Pairs, session_hours

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# The second stage's floor gives way by this much (relative, and at least 1 Wh), so the
# first stage's own answer, read back through floating point, stays feasible.
FLOOR_SLACK_RELATIVE = 1e-9
FLOOR_SLACK_KWH = 1e-3


@dataclass(frozen=True)
class Objective:
    """What one solve maximises.

    Attributes
    ----------
    weight
        Per request: objective value of one kWh served (1, or 0 for what this stage
        ignores).
    floor_kwh
        Second stage of emergency mode: critical energy served must stay at least this.
    """

    weight: FloatArray
    travel_penalty_kwh_per_min: float
    floor_kwh: float | None = None

    def floor_rhs_kwh(self) -> float:
        """Return the floor with its slack (``-inf`` without a floor)."""
        if self.floor_kwh is None:
            return -np.inf
        slack = max(FLOOR_SLACK_KWH, FLOOR_SLACK_RELATIVE * abs(self.floor_kwh))
        return self.floor_kwh - slack


@dataclass(frozen=True)
class RowLayout:
    """Where each row family starts in the arrays (rows are in this order)."""

    n_vehicles: int
    n_requests: int
    n_links: int
    n_points: int
    has_floor: bool

    @property
    def requests(self) -> int:
        """First request row."""
        return self.n_vehicles

    @property
    def links(self) -> int:
        """First link row."""
        return self.n_vehicles + self.n_requests

    @property
    def ports(self) -> int:
        """First port row."""
        return self.links + self.n_links

    @property
    def power(self) -> int:
        """First power row."""
        return self.ports + self.n_points

    @property
    def floor(self) -> int:
        """The floor row (if any)."""
        return self.power + self.n_points


@dataclass(frozen=True)
class DispatchModel:
    """The MILP over a set of pairs, with the column of each pair.

    Attributes
    ----------
    y_col, x_col
        Column of each pair's ``y`` and ``x`` (``x_col`` is -1 for indivisible requests).
    """

    arrays: KnapsackArrays
    pairs: Pairs
    y_col: IntArray
    x_col: IntArray
    layout: RowLayout


def pair_energy_max_kwh(fleet: Fleet, pairs: Pairs) -> FloatArray:
    """Return the energy a pair delivers when its vehicle comes and gives all it can."""
    energy: FloatArray = np.where(
        fleet.divisible[pairs.request], pairs.capacity_kwh, fleet.need_kwh[pairs.request]
    )
    return energy


def pair_profit(fleet: Fleet, pairs: Pairs, objective: Objective) -> FloatArray:
    """Objective value of a pair on its own: ``w e_max - epsilon t``.

    One compiled pass (as numpy arrays: 1.4-2.0 s on 26.7 M pairs, for three gathers
    and as many temporaries).
    """
    profit: FloatArray = _profit(
        np.ascontiguousarray(pairs.request, dtype=np.int32),
        np.ascontiguousarray(pairs.capacity_kwh, dtype=np.float64),
        np.ascontiguousarray(pairs.travel_min, dtype=np.float64),
        np.ascontiguousarray(objective.weight, dtype=np.float64),
        np.ascontiguousarray(fleet.divisible, dtype=np.bool_),
        np.ascontiguousarray(fleet.need_kwh, dtype=np.float64),
        float(objective.travel_penalty_kwh_per_min),
    )
    return profit


# Compiled at import (or loaded from numba's cache), so that no dispatch pays for it.
@numba.njit(
    "float64[:](int32[:], float64[:], float64[:], float64[:], boolean[:], float64[:], float64)",
    cache=True,
)
def _profit(
    request: npt.NDArray[np.int32],
    capacity_kwh: FloatArray,
    travel_min: FloatArray,
    weight: FloatArray,
    divisible: npt.NDArray[np.bool_],
    need_kwh: FloatArray,
    penalty_kwh_per_min: float,
) -> FloatArray:  # pragma: no cover - compiled by numba
    """Kernel of :func:`pair_profit` (its numpy version's arithmetic, in its order)."""
    out = np.empty(request.size)
    for p in range(request.size):
        i = request[p]
        energy = capacity_kwh[p] if divisible[i] else need_kwh[i]
        out[p] = weight[i] * energy - penalty_kwh_per_min * travel_min[p]
    return out


def build_model(fleet: Fleet, pairs: Pairs, objective: Objective) -> DispatchModel:
    """Build the MILP of the module docstring over ``pairs``."""
    n = pairs.size
    v = pairs.vehicle.astype(np.int64)
    i = pairs.request.astype(np.int64)
    divisible = fleet.divisible[i]
    split = np.nonzero(divisible)[0]
    whole = np.nonzero(~divisible)[0]
    m = split.size
    need = fleet.need_kwh[i]
    weight = objective.weight[i]
    hours = session_hours(fleet, pairs)
    point = fleet.request_point[i]
    layout = RowLayout(
        fleet.n_vehicles, fleet.n_requests, m, fleet.n_points, objective.floor_kwh is not None
    )
    y_col = np.arange(n, dtype=np.int64)
    x_col = np.full(n, -1, dtype=np.int64)
    x_col[split] = n + np.arange(m)
    n_cols = n + m

    cost = np.zeros(n_cols)
    cost[:n] = np.where(divisible, 0.0, weight * need) - (
        objective.travel_penalty_kwh_per_min * pairs.travel_min
    )
    cost[n:] = weight[split]
    upper = np.ones(n_cols)
    upper[n:] = pairs.capacity_kwh[split]

    rows: list[IntArray] = []
    cols: list[IntArray] = []
    values: list[FloatArray] = []

    def add(r: IntArray, c: IntArray, a: FloatArray | float) -> None:
        rows.append(np.asarray(r, dtype=np.int64))
        cols.append(np.asarray(c, dtype=np.int64))
        values.append(np.broadcast_to(np.asarray(a, dtype=float), np.shape(r)).copy())

    # One trip per vehicle.
    add(v, y_col, 1.0)
    # Requests: at most the need (divisible, kWh) or one vehicle (indivisible).
    add(layout.requests + i[split], x_col[split], 1.0)
    add(layout.requests + i[whole], y_col[whole], 1.0)
    # Links: x - u y <= 0.
    link = layout.links + np.arange(m)
    add(link, x_col[split], 1.0)
    add(link, y_col[split], -pairs.capacity_kwh[split])
    # Ports and power at points.
    at_point = np.nonzero(point >= 0)[0]
    add(layout.ports + point[at_point], y_col[at_point], 1.0)
    split_at = at_point[divisible[at_point]]
    whole_at = at_point[~divisible[at_point]]
    add(layout.power + point[split_at], x_col[split_at], 1.0 / hours[split_at])
    add(layout.power + point[whole_at], y_col[whole_at], need[whole_at] / hours[whole_at])
    n_rows = layout.floor + (1 if layout.has_floor else 0)
    row_lower = np.full(n_rows, -np.inf)
    row_upper = np.concatenate(
        [
            np.ones(fleet.n_vehicles),
            np.where(fleet.divisible, fleet.need_kwh, 1.0),
            np.zeros(m),
            fleet.point_ports.astype(float),
            fleet.point_kw,
            np.full(1 if layout.has_floor else 0, np.inf),
        ]
    )
    if layout.has_floor:
        # Critical energy served stays at least the first stage's.
        critical = fleet.critical[i]
        split_critical = split[critical[split]]
        whole_critical = whole[critical[whole]]
        add(np.full(split_critical.size, layout.floor), x_col[split_critical], 1.0)
        add(np.full(whole_critical.size, layout.floor), y_col[whole_critical], need[whole_critical])
        row_lower[layout.floor] = objective.floor_rhs_kwh()
    matrix = sp.csc_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_rows, n_cols),
    )
    integer = np.zeros(n_cols, dtype=bool)
    integer[:n] = True
    kwh_per_unit = np.ones(n_cols)
    kwh_per_unit[:n] = np.where(divisible, 0.0, need)
    arrays = KnapsackArrays(
        col_cost=cost,
        col_lower=np.zeros(n_cols),
        col_upper=upper,
        col_integer=integer,
        col_kwh_per_unit=kwh_per_unit,
        matrix=matrix,
        row_lower=row_lower,
        row_upper=row_upper,
        n_pair_cols=n,
        switch_sell=np.zeros(0, dtype=np.int64),
        injection_bus=np.zeros(0, dtype=np.int64),
    )
    return DispatchModel(arrays, pairs, y_col, x_col, layout)


def column_values(model: DispatchModel, chosen: IntArray, energy_kwh: FloatArray) -> FloatArray:
    """Return the column vector of a dispatch given as chosen pairs and their energy."""
    values = np.zeros(model.arrays.n_cols)
    values[model.y_col[chosen]] = 1.0
    split = model.x_col[chosen] >= 0
    values[model.x_col[chosen][split]] = energy_kwh[split]
    return values


def read_columns(
    model: DispatchModel, fleet: Fleet, values: FloatArray
) -> tuple[IntArray, FloatArray]:
    """Chosen pair positions and their energy from a column vector.

    HiGHS returns binaries as floats (``-0.0``, ``0.9999999``): rounded with a tolerance.
    Energy is clipped into ``[0, u]``.
    """
    y = values[model.y_col]
    chosen = np.nonzero(y > 0.5)[0]
    pairs = model.pairs
    energy = np.where(
        model.x_col[chosen] >= 0,
        np.clip(values[np.maximum(model.x_col[chosen], 0)], 0.0, pairs.capacity_kwh[chosen]),
        fleet.need_kwh[pairs.request[chosen]],
    )
    return chosen, energy
