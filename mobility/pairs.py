"""Which vehicle can serve which request, how much, when, and why not.

A pair ``(v, i)`` is *eligible* when all of these hold (times in minutes from now):

* ``v`` can be dispatched in this mode (``available`` or ``driving``; ``charging`` too
  in emergency mode), can give energy (an EV only if bidirectional) and carries what
  ``i`` needs (electricity, or fuel from a fuel truck);
* ``i``'s node is reachable; the fastest route takes ``travel_min`` and ``km``, and
  burns ``drive_kwh = km * consumption_kwh_per_km`` of what ``v`` holds;
* it arrives in the window: ``travel_min < latest_min``; delivery starts at
  ``start_min = max(travel_min, earliest_min)`` and may last ``hours = (latest_min -
  start_min) / 60``;
* its capacity for ``i``, ``u = min(residual - reserve - drive_kwh, power * hours,
  need)`` with ``power = min(max_kw of v, max_kw of i's point)``, floored to whole Wh,
  is at least 1 Wh, and for an indivisible request it is the whole need.

Pairs are computed for all vehicles and requests at once (compiled, cell by cell, in
chunks of vehicles), and so is, per request, the furthest stage that any vehicle
reached: the reason an unserved request gets when no vehicle is eligible at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from gridmatch.mobility.roads import RoadNetwork
from gridmatch.scenario_io.mobility_input import (
    Carrier,
    MobilityInputs,
    Priority,
    VehicleState,
)
from gridmatch.units import MINUTES_PER_HOUR, WH_FLOAT_SLACK, WH_PER_KWH

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
# Vehicle x request cells evaluated at once (bounds the gathered travel arrays to ~32 MB).
_CHUNK_CELLS = 2_000_000
_MIN_WH = 1.0 - WH_FLOAT_SLACK
_MINUTES_PER_HOUR = float(MINUTES_PER_HOUR)


class Reach(IntEnum):
    """How far the best vehicle got for a request (the reason when none is eligible)."""

    NO_VEHICLE = 0  # no dispatchable vehicle carrying this with energy above its reserve
    OUT_OF_RANGE = 1  # none can drive there (no road, or the drive eats its spare energy)
    TIME_WINDOW = 2  # none arrives before the window closes
    CAPACITY = 3  # none can bring all of it (indivisible) or 1 Wh (divisible) in the window
    ELIGIBLE = 4


@dataclass(frozen=True)
class Fleet:
    """Per-vehicle, per-request and per-point arrays the model uses (aligned with the inputs).

    Attributes
    ----------
    dispatchable
        Per vehicle: may be sent out in this mode and can give what it carries.
    spare0_kwh
        ``residual - reserve`` before driving (may be negative).
    request_point
        Index of each request's point, -1 if none.
    point_kw
        The kW limit of each point in this solve (the grid loop may lower it).
    """

    source: IntArray
    spare0_kwh: FloatArray
    consumption_kwh_per_km: FloatArray
    vehicle_kw: FloatArray
    vehicle_fuel: BoolArray
    dispatchable: BoolArray
    request_node: IntArray
    need_kwh: FloatArray
    earliest_min: FloatArray
    latest_min: FloatArray
    divisible: BoolArray
    critical: BoolArray
    request_fuel: BoolArray
    request_point: IntArray
    point_ports: IntArray
    point_kw: FloatArray

    @property
    def n_vehicles(self) -> int:
        """Number of vehicles."""
        return int(self.source.size)

    @property
    def n_requests(self) -> int:
        """Number of requests."""
        return int(self.need_kwh.size)

    @property
    def n_points(self) -> int:
        """Number of points."""
        return int(self.point_ports.size)


def dispatchable_states(emergency: bool) -> frozenset[VehicleState]:
    """Return the states a vehicle may be dispatched from in a mode."""
    states = {VehicleState.AVAILABLE, VehicleState.DRIVING}
    if emergency:
        states.add(VehicleState.CHARGING)
    return frozenset(states)


def fleet_arrays(
    inputs: MobilityInputs,
    roads: RoadNetwork,
    *,
    emergency: bool,
    point_kw: FloatArray | None = None,
) -> Fleet:
    """Arrays of a mobility folder for one mode (``point_kw`` overrides the points' limits)."""
    states = dispatchable_states(emergency)
    vehicles = inputs.vehicles
    point_index = {p.point_id: k for k, p in enumerate(inputs.points)}
    requests = inputs.requests
    return Fleet(
        source=np.array([roads.index[v.node] for v in vehicles], dtype=np.int64),
        spare0_kwh=np.array([(v.residual_wh - v.reserve_wh) / WH_PER_KWH for v in vehicles]),
        consumption_kwh_per_km=np.array([v.consumption_kwh_per_km for v in vehicles]),
        vehicle_kw=np.array([v.max_kw for v in vehicles]),
        vehicle_fuel=np.array([v.carrier is Carrier.FUEL for v in vehicles], dtype=bool),
        dispatchable=np.array([v.state in states and v.can_supply for v in vehicles], dtype=bool),
        request_node=np.array([roads.index[r.node] for r in requests], dtype=np.int64),
        need_kwh=np.array([r.need_wh / WH_PER_KWH for r in requests]),
        earliest_min=np.array([r.earliest_min for r in requests]),
        latest_min=np.array([r.latest_min for r in requests]),
        divisible=np.array([r.divisible for r in requests], dtype=bool),
        critical=np.array([r.priority is Priority.CRITICAL for r in requests], dtype=bool),
        request_fuel=np.array([r.carrier is Carrier.FUEL for r in requests], dtype=bool),
        request_point=np.array(
            [point_index[r.point_id] if r.point_id is not None else -1 for r in requests],
            dtype=np.int64,
        ),
        point_ports=np.array([p.ports for p in inputs.points], dtype=np.int64),
        point_kw=(
            np.array([p.max_kw for p in inputs.points])
            if point_kw is None
            else np.asarray(point_kw, dtype=float)
        ),
    )


@dataclass(frozen=True)
class Pairs:
    """The eligible pairs, sorted by vehicle then request.

    Attributes
    ----------
    vehicle, request
        Indices into the fleet's vehicles and requests.
    travel_min, km
        The fastest route's time and length.
    capacity_kwh
        ``u``: the most the vehicle can deliver to the request (whole Wh).
    reach
        Per request, how far the best vehicle got (:class:`Reach`).
    best_arrival_min
        Per request, the earliest arrival of a vehicle in range (``inf`` if none).
    best_capacity_kwh
        Per request, the most one vehicle arriving in time could bring (0 if none).
    """

    vehicle: npt.NDArray[np.int32]
    request: npt.NDArray[np.int32]
    travel_min: FloatArray
    km: FloatArray
    capacity_kwh: FloatArray
    reach: npt.NDArray[np.int8]
    best_arrival_min: FloatArray
    best_capacity_kwh: FloatArray

    @property
    def size(self) -> int:
        """Number of eligible pairs."""
        return int(self.vehicle.size)

    def subset(self, chosen: npt.ArrayLike) -> Pairs:
        """Return the pairs at positions ``chosen`` (same per-request arrays)."""
        index = np.asarray(chosen, dtype=np.int64)
        return Pairs(
            self.vehicle[index],
            self.request[index],
            self.travel_min[index],
            self.km[index],
            self.capacity_kwh[index],
            self.reach,
            self.best_arrival_min,
            self.best_capacity_kwh,
        )


def start_min(fleet: Fleet, pairs: Pairs) -> FloatArray:
    """When delivery can start for each pair: arrival, or the window's opening if later."""
    begins: FloatArray = np.maximum(pairs.travel_min, fleet.earliest_min[pairs.request])
    return begins


def session_hours(fleet: Fleet, pairs: Pairs) -> FloatArray:
    """Hours each pair's delivery may take: from its start to the window's end."""
    hours: FloatArray = (fleet.latest_min[pairs.request] - start_min(fleet, pairs)) / float(
        MINUTES_PER_HOUR
    )
    return hours


def drive_kwh(fleet: Fleet, pairs: Pairs) -> FloatArray:
    """Energy each pair's vehicle burns on the way."""
    burnt: FloatArray = pairs.km * fleet.consumption_kwh_per_km[pairs.vehicle]
    return burnt


def eligible_pairs(fleet: Fleet, roads: RoadNetwork) -> Pairs:
    """Compute every eligible pair and each request's :class:`Reach` (see the module)."""
    n_requests = fleet.n_requests
    reach = np.zeros(n_requests, dtype=np.int8)
    best_arrival = np.full(n_requests, np.inf)
    best_capacity = np.zeros(n_requests)
    # Requests reachable by a vehicle of the right kind at all (stage NO_VEHICLE passed).
    usable = fleet.dispatchable & (fleet.spare0_kwh * WH_PER_KWH >= 1.0 - WH_FLOAT_SLACK)
    for fuel in (False, True):
        if usable[fleet.vehicle_fuel == fuel].any():
            reach[fleet.request_fuel == fuel] = Reach.OUT_OF_RANGE
    candidates = np.nonzero(usable)[0]
    # Power at the request: the vehicle's, capped by the point's limit.
    point_kw = np.where(
        fleet.request_point >= 0,
        fleet.point_kw[np.maximum(fleet.request_point, 0)] if fleet.n_points else np.inf,
        np.inf,
    )
    per_request = (
        np.ascontiguousarray(fleet.request_node, dtype=np.int64),
        _bools(fleet.request_fuel),
        _floats(fleet.earliest_min),
        _floats(fleet.latest_min),
        _floats(point_kw),
        _floats(fleet.need_kwh),
        np.rint(_floats(fleet.need_kwh) * WH_PER_KWH),
        _bools(fleet.divisible),
    )
    step = max(1, _CHUNK_CELLS // max(n_requests, 1))
    chunks = [candidates[begin : begin + step] for begin in range(0, candidates.size, step)]

    def cell_terms(chunk: IntArray) -> tuple[npt.NDArray[Any], ...]:
        # One tree per distinct start node; the kernel reads each cell from its row.
        sources, tree_row = np.unique(fleet.source[chunk], return_inverse=True)
        trees = roads.trees_from(sources)
        return (
            _floats(trees.minutes),
            _floats(trees.km),
            tree_row.astype(np.int64).ravel(),
            _floats(fleet.spare0_kwh[chunk]),
            _floats(fleet.consumption_kwh_per_km[chunk]),
            _floats(fleet.vehicle_kw[chunk]),
            _bools(fleet.vehicle_fuel[chunk]),
            *per_request,
        )

    # The kernels' arguments come as one tuple per chunk, which mypy cannot match to
    # their parameters one by one.
    count_cells: Callable[..., int] = _count_cells
    fill_cells: Callable[..., None] = _fill_cells
    # Counted first, then written into arrays of their final size: each array of tens
    # of millions of pairs allocated once (0.3-0.5 s each to fault in on this machine).
    counts = [
        count_cells(*cell_terms(chunk), reach, best_arrival, best_capacity) for chunk in chunks
    ]
    best_capacity /= WH_PER_KWH
    total = int(sum(counts))
    vehicle = np.empty(total, dtype=np.int32)
    request = np.empty(total, dtype=np.int32)
    travel_min = np.empty(total)
    km = np.empty(total)
    capacity_kwh = np.empty(total)
    offset = 0
    for chunk, count in zip(chunks, counts, strict=True):
        fill_cells(
            *cell_terms(chunk),
            chunk.astype(np.int32),
            vehicle,
            request,
            travel_min,
            km,
            capacity_kwh,
            offset,
        )
        offset += int(count)
    return Pairs(vehicle, request, travel_min, km, capacity_kwh, reach, best_arrival, best_capacity)


def _floats(values: npt.ArrayLike) -> FloatArray:
    """``values`` as the kernel's contiguous float64 (no copy if they are already)."""
    return np.ascontiguousarray(values, dtype=np.float64)


def _bools(values: npt.ArrayLike) -> BoolArray:
    """``values`` as the kernel's contiguous booleans (no copy if they are already)."""
    return np.ascontiguousarray(values, dtype=np.bool_)


# The kernels below are compiled when the module is imported (or loaded from numba's
# cache), not inside the first dispatch, whose time limit would not count it. Measured
# on 10,000 vehicles x 5,000 requests (26.7 M pairs): 10.4 s as numpy arrays per chunk
# (a dozen chunk x requests temporaries, gathers and copies), 3.3 s here, of which the
# shortest-path trees take 1.4 s.
_CELL_ARGS = (
    "float64[:, ::1], float64[:, ::1], int64[:], float64[:], float64[:], float64[:],"
    " boolean[:], int64[:], boolean[:], float64[:], float64[:], float64[:], float64[:],"
    " float64[:], boolean[:]"
)


@numba.njit(cache=True)
def _cell(
    t: float,
    distance: float,
    spare0_kwh: float,
    consumption_kwh_per_km: float,
    vehicle_kw: float,
    same_carrier: bool,
    earliest_min: float,
    latest_min: float,
    point_kw: float,
    need_kwh: float,
    least_wh: float,
) -> tuple[int, float, float, float]:  # pragma: no cover - compiled by numba
    """Judge one vehicle x request cell: how far it gets, its arrival, km and whole Wh.

    The level is the :class:`Reach` it reaches (0 where the carrier differs, the place is
    unreachable or nothing is spare after the drive; 2 arrives, 3 in its window, 4
    eligible: at least ``least_wh``). The module's rules, in the order of the arithmetic
    of the numpy version they replace, so that the same floats come out; one function for
    the counting and the filling pass, so they cannot drift apart.
    """
    if not same_carrier or not np.isfinite(t):
        return 0, t, distance, 0.0
    spare = spare0_kwh - distance * consumption_kwh_per_km
    if not spare * WH_PER_KWH >= _MIN_WH:
        return 0, t, distance, 0.0
    hours = (latest_min - max(t, earliest_min)) / _MINUTES_PER_HOUR
    if not (t < latest_min and hours > 0.0):
        return 2, t, distance, 0.0
    power = min(vehicle_kw, point_kw)
    capacity = min(min(spare, power * hours), need_kwh)
    capacity_wh = np.floor(capacity * WH_PER_KWH + WH_FLOAT_SLACK)
    return (4 if capacity_wh >= least_wh else 3), t, distance, capacity_wh


@numba.njit("int64(" + _CELL_ARGS + ", int8[:], float64[:], float64[:])", cache=True)
def _count_cells(
    tree_minutes: FloatArray,
    tree_km: FloatArray,
    tree_row: IntArray,
    spare0_kwh: FloatArray,
    consumption_kwh_per_km: FloatArray,
    vehicle_kw: FloatArray,
    vehicle_fuel: BoolArray,
    request_node: IntArray,
    request_fuel: BoolArray,
    earliest_min: FloatArray,
    latest_min: FloatArray,
    point_kw: FloatArray,
    need_kwh: FloatArray,
    need_wh: FloatArray,
    divisible: BoolArray,
    reach: npt.NDArray[np.int8],
    best_arrival: FloatArray,
    best_capacity_wh: FloatArray,
) -> int:  # pragma: no cover - compiled by numba
    """Count the eligible pairs of one chunk of vehicles; update each request's reach and bests.

    Vehicle ``r`` of the chunk starts from tree ``tree_row[r]``, request ``c`` is at
    node ``request_node[c]``.
    """
    count = 0
    for r in range(tree_row.size):
        for c in range(request_node.size):
            level, t, _, capacity_wh = _cell(
                tree_minutes[tree_row[r], request_node[c]],
                tree_km[tree_row[r], request_node[c]],
                spare0_kwh[r],
                consumption_kwh_per_km[r],
                vehicle_kw[r],
                vehicle_fuel[r] == request_fuel[c],
                earliest_min[c],
                latest_min[c],
                point_kw[c],
                need_kwh[c],
                1.0 if divisible[c] else need_wh[c],
            )
            if level < 2:  # Reach.TIME_WINDOW
                continue
            best_arrival[c] = min(best_arrival[c], t)
            reach[c] = max(reach[c], level)
            if level >= 3:  # Reach.CAPACITY
                best_capacity_wh[c] = max(best_capacity_wh[c], capacity_wh)
            if level == 4:  # Reach.ELIGIBLE
                count += 1
    return count


@numba.njit(
    "void(" + _CELL_ARGS + ", int32[:], int32[:], int32[:], float64[:], float64[:],"
    " float64[:], int64)",
    cache=True,
)
def _fill_cells(
    tree_minutes: FloatArray,
    tree_km: FloatArray,
    tree_row: IntArray,
    spare0_kwh: FloatArray,
    consumption_kwh_per_km: FloatArray,
    vehicle_kw: FloatArray,
    vehicle_fuel: BoolArray,
    request_node: IntArray,
    request_fuel: BoolArray,
    earliest_min: FloatArray,
    latest_min: FloatArray,
    point_kw: FloatArray,
    need_kwh: FloatArray,
    need_wh: FloatArray,
    divisible: BoolArray,
    chunk_vehicle: npt.NDArray[np.int32],
    vehicle: npt.NDArray[np.int32],
    request: npt.NDArray[np.int32],
    travel_min: FloatArray,
    km: FloatArray,
    capacity_kwh: FloatArray,
    offset: int,
) -> None:  # pragma: no cover - compiled by numba
    """Write one chunk's eligible pairs from ``offset`` on (by vehicle, then request).

    The rules of :func:`_cell`, as :func:`_count_cells` counts them.
    """
    k = offset
    for r in range(tree_row.size):
        for c in range(request_node.size):
            level, t, distance, capacity_wh = _cell(
                tree_minutes[tree_row[r], request_node[c]],
                tree_km[tree_row[r], request_node[c]],
                spare0_kwh[r],
                consumption_kwh_per_km[r],
                vehicle_kw[r],
                vehicle_fuel[r] == request_fuel[c],
                earliest_min[c],
                latest_min[c],
                point_kw[c],
                need_kwh[c],
                1.0 if divisible[c] else need_wh[c],
            )
            if level < 4:  # Reach.ELIGIBLE
                continue
            vehicle[k] = chunk_vehicle[r]
            request[k] = c
            travel_min[k] = t
            km[k] = distance
            capacity_kwh[k] = capacity_wh / WH_PER_KWH
            k += 1
