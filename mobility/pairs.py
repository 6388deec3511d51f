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

Pairs are computed for all vehicles and requests at once (vectorised, in chunks of
vehicles), and so is, per request, the furthest stage that any vehicle reached: the
reason an unserved request gets when no vehicle is eligible at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

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
# Vehicle x request cells evaluated at once (bounds the temporary arrays to ~100 MB).
_CHUNK_CELLS = 2_000_000


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
    parts: list[tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray]] = []
    step = max(1, _CHUNK_CELLS // max(n_requests, 1))
    for begin in range(0, candidates.size, step):
        chunk = candidates[begin : begin + step]
        trees = roads.trees_from(fleet.source[chunk])
        travel = trees.minutes[:, fleet.request_node]
        km = trees.km[:, fleet.request_node]
        spare = fleet.spare0_kwh[chunk, None] - km * fleet.consumption_kwh_per_km[chunk, None]
        same_kind = fleet.vehicle_fuel[chunk, None] == fleet.request_fuel[None, :]
        in_range = same_kind & np.isfinite(travel) & (spare * WH_PER_KWH >= 1.0 - WH_FLOAT_SLACK)
        begins = np.maximum(travel, fleet.earliest_min[None, :])
        hours = (fleet.latest_min[None, :] - begins) / float(MINUTES_PER_HOUR)
        in_time = in_range & (travel < fleet.latest_min[None, :]) & (hours > 0.0)
        power = np.minimum(fleet.vehicle_kw[chunk, None], point_kw[None, :])
        with np.errstate(invalid="ignore"):
            capacity = np.minimum(np.minimum(spare, power * hours), fleet.need_kwh[None, :])
        capacity_wh = np.floor(np.where(in_time, capacity, 0.0) * WH_PER_KWH + WH_FLOAT_SLACK)
        need_wh = np.rint(fleet.need_kwh * WH_PER_KWH)
        enough = np.where(fleet.divisible[None, :], capacity_wh >= 1.0, capacity_wh >= need_wh)
        eligible = in_time & enough
        best_arrival = np.minimum(best_arrival, np.where(in_range, travel, np.inf).min(axis=0))
        best_capacity = np.maximum(best_capacity, capacity_wh.max(axis=0) / WH_PER_KWH)
        reach = np.maximum(reach, np.where(in_range.any(axis=0), Reach.TIME_WINDOW, 0))
        reach = np.maximum(reach, np.where(in_time.any(axis=0), Reach.CAPACITY, 0))
        reach = np.maximum(reach, np.where(eligible.any(axis=0), Reach.ELIGIBLE, 0))
        rows, cols = np.nonzero(eligible)
        parts.append(
            (
                chunk[rows],
                cols.astype(np.int64),
                travel[rows, cols],
                km[rows, cols],
                capacity_wh[rows, cols] / WH_PER_KWH,
            )
        )
    if not parts:
        empty_i = np.zeros(0, dtype=np.int32)
        empty_f = np.zeros(0)
        return Pairs(
            empty_i,
            empty_i.copy(),
            empty_f,
            empty_f.copy(),
            empty_f.copy(),
            reach,
            best_arrival,
            best_capacity,
        )
    return Pairs(
        np.concatenate([p[0] for p in parts]).astype(np.int32),
        np.concatenate([p[1] for p in parts]).astype(np.int32),
        np.concatenate([p[2] for p in parts]),
        np.concatenate([p[3] for p in parts]),
        np.concatenate([p[4] for p in parts]),
        reach.astype(np.int8),
        best_arrival,
        best_capacity,
    )
