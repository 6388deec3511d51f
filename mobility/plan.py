"""Turn a dispatch into what each party needs: rows for requests, vehicles, points, a map.

Per request (the user): the vehicles sent, where they are, their route, ETA and energy,
or why nobody comes. Per vehicle (the owner and driver): what it gives, burns and keeps,
step by step. Per point (its operator): the sessions on its ports. Energy is reported in
whole Wh, rounded down (:func:`gridmatch.mobility.dispatch.delivered_wh`).

A request that is not served in full gets the first reason that applies:
no eligible vehicle at all (``Reach`` of :mod:`~gridmatch.mobility.pairs`: none
dispatchable, none in range, none in time, none with enough for an indivisible need);
else its point's limit lowered by the grid check; else, if a vehicle that could have come
stayed free, the point's ports or power, the travel penalty, or the solver's time limit;
else every vehicle that could have come went elsewhere (to a critical request, or not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gridmatch.mobility.dispatch import DispatchResult, delivered_wh
from gridmatch.mobility.grid_check import GridOutcome
from gridmatch.mobility.model import Objective, pair_profit
from gridmatch.mobility.pairs import Reach, drive_kwh, session_hours, start_min
from gridmatch.mobility.roads import RoadNetwork
from gridmatch.results_io.mobility import (
    Activity,
    DeliveryRow,
    FleetRow,
    ItineraryRow,
    RequestRow,
    RequestStatus,
    SessionRow,
    UnservedReason,
)
from gridmatch.scenario_io.mobility_input import Carrier, MobilityInputs, Vehicle
from gridmatch.units import MINUTES_PER_HOUR, WH_PER_KWH

FloatArray = npt.NDArray[np.float64]
# Delivery rows with a route written out; beyond, the route is the two end nodes only
# (a 5,000-request dispatch's routes would make deliveries.csv tens of MB).
MAX_ROUTES = 20_000


@dataclass(frozen=True)
class Plan:
    """The rows of a dispatch's output files."""

    requests: tuple[RequestRow, ...]
    deliveries: tuple[DeliveryRow, ...]
    fleet: tuple[FleetRow, ...]
    itineraries: tuple[ItineraryRow, ...]
    sessions: tuple[SessionRow, ...]
    geojson: dict[str, Any]
    reasons: dict[str, int]


def _round_min(value: float) -> float:
    # Minutes to 1e-8 (0.6 microseconds): a row's start, end and power then hold its
    # energy to 0.2 Wh even at 1,000,000 kW, the most a vehicle may have (to 1e-5 min,
    # a fuel truck's 23,904 kW pump was 2 Wh short of what its row said it delivered).
    return round(float(value), 8)


def build_plan(
    inputs: MobilityInputs,
    roads: RoadNetwork,
    result: DispatchResult,
    grid: GridOutcome,
    proven: bool,
) -> Plan:
    """Every output row of a dispatch (see the module docstring)."""
    fleet, pairs, dispatch = result.fleet, result.pairs, result.dispatch
    chosen = pairs.subset(dispatch.chosen)
    energy_wh = delivered_wh(dispatch, pairs)
    begins = start_min(fleet, chosen)
    hours = session_hours(fleet, chosen)
    burnt = drive_kwh(fleet, chosen)
    kwh_per_l = inputs.spec.fuel_kwh_per_l
    deliveries: list[DeliveryRow] = []
    itineraries: list[ItineraryRow] = []
    sessions: list[SessionRow] = []
    features: list[dict[str, Any]] = []
    by_request: dict[int, list[int]] = {}
    by_vehicle: dict[int, int] = {}
    order = np.lexsort((chosen.travel_min, chosen.request))
    for k in order:
        by_request.setdefault(int(chosen.request[k]), []).append(int(k))
        by_vehicle[int(chosen.vehicle[k])] = int(k)
    session_count: dict[int, int] = {}
    for rank, k in enumerate(order):
        v, i = int(chosen.vehicle[k]), int(chosen.request[k])
        vehicle, request = inputs.vehicles[v], inputs.requests[i]
        point = inputs.points[fleet.request_point[i]] if fleet.request_point[i] >= 0 else None
        wh = int(energy_wh[k])
        if point is not None:
            # A point session spreads its energy to the window's end (model docstring).
            power = wh / WH_PER_KWH / hours[k]
            end = float(fleet.latest_min[i])
        else:
            power = float(fleet.vehicle_kw[v])
            end = float(begins[k] + MINUTES_PER_HOUR * wh / WH_PER_KWH / power)
        route_nodes = (
            roads.route(int(fleet.source[v]), int(fleet.request_node[i]))
            if rank < MAX_ROUTES
            else [int(fleet.source[v]), int(fleet.request_node[i])]
        )
        route = [roads.node_ids[n] for n in route_nodes]
        lon, lat = inputs.positions.get(vehicle.node, (math.nan, math.nan))
        fuel_l = wh / WH_PER_KWH / kwh_per_l if request.carrier is Carrier.FUEL else 0.0
        deliveries.append(
            DeliveryRow(
                request_id=request.request_id,
                priority=request.priority.value,
                vehicle_id=vehicle.vehicle_id,
                vehicle_kind=vehicle.kind.value,
                vehicle_node=vehicle.node,
                vehicle_lon=lon,
                vehicle_lat=lat,
                point_id=point.point_id if point is not None else "",
                eta_min=_round_min(chosen.travel_min[k]),
                start_min=_round_min(begins[k]),
                end_min=_round_min(end),
                distance_km=round(float(chosen.km[k]), 6),
                drive_kwh=round(float(burnt[k]), 6),
                energy_wh=wh,
                fuel_l=round(fuel_l, 6),
                power_kw=round(float(power), 6),
                route=" ".join(route),
            )
        )
        steps = [
            (
                Activity.DRIVE,
                vehicle.node,
                request.node,
                0.0,
                chosen.travel_min[k],
                round(float(chosen.km[k]), 6),
                0,
                f"burns {burnt[k]:.3f} kWh",
            ),
        ]
        if begins[k] > chosen.travel_min[k]:
            steps.append(
                (
                    Activity.WAIT,
                    request.node,
                    "",
                    chosen.travel_min[k],
                    begins[k],
                    0.0,
                    0,
                    "the window opens later",
                )
            )
        steps.append(
            (Activity.DELIVER, request.node, "", begins[k], end, 0.0, wh, f"{power:.3f} kW")
        )
        for step, (activity, node, to_node, t0, t1, km, e, detail) in enumerate(steps):
            itineraries.append(
                ItineraryRow(
                    vehicle.vehicle_id,
                    step,
                    activity,
                    node,
                    to_node,
                    _round_min(t0),
                    _round_min(t1),
                    km,
                    e,
                    request.request_id,
                    point.point_id if point is not None else "",
                    detail,
                )
            )
        if point is not None:
            q = int(fleet.request_point[i])
            session_count[q] = session_count.get(q, 0) + 1
            sessions.append(
                SessionRow(
                    point.point_id,
                    "" if point.bus is None else str(point.bus),
                    session_count[q],
                    vehicle.vehicle_id,
                    request.request_id,
                    _round_min(begins[k]),
                    _round_min(end),
                    wh,
                    round(float(power), 6),
                )
            )
        if route and all(n in inputs.positions for n in route):
            features.append(
                _feature(
                    {
                        "type": "LineString",
                        "coordinates": [list(inputs.positions[n]) for n in route],
                    },
                    feature="route",
                    vehicle_id=vehicle.vehicle_id,
                    request_id=request.request_id,
                    eta_min=_round_min(chosen.travel_min[k]),
                    distance_km=float(chosen.km[k]),
                    energy_wh=wh,
                )
            )
    sessions.sort(key=lambda s: (s.point_id, s.port))
    fleet_rows = []
    for v, vehicle in enumerate(inputs.vehicles):
        k = by_vehicle.get(v)
        delivered = int(energy_wh[k]) if k is not None else 0
        burnt_v = float(burnt[k]) if k is not None else 0.0
        note = ""
        if k is None:
            note = _idle_note(vehicle, bool(fleet.dispatchable[v]), result.mode.value)
            itineraries.append(
                ItineraryRow(
                    vehicle.vehicle_id,
                    0,
                    Activity.IDLE if fleet.dispatchable[v] else Activity.UNAVAILABLE,
                    vehicle.node,
                    "",
                    0.0,
                    float(inputs.spec.horizon_min),
                    0.0,
                    0,
                    "",
                    "",
                    note,
                )
            )
        fleet_rows.append(
            FleetRow(
                vehicle_id=vehicle.vehicle_id,
                kind=vehicle.kind.value,
                state=vehicle.state.value,
                node=vehicle.node,
                owner_id=vehicle.owner_id,
                dispatchable=bool(fleet.dispatchable[v]),
                sent=k is not None,
                request_id=inputs.requests[int(chosen.request[k])].request_id
                if k is not None
                else "",
                residual_wh=vehicle.residual_wh,
                reserve_wh=vehicle.reserve_wh,
                delivered_wh=delivered,
                drive_kwh=round(burnt_v, 6),
                left_kwh=round((vehicle.residual_wh - delivered) / WH_PER_KWH - burnt_v, 6),
                note=note,
            )
        )
        lon_lat = inputs.positions.get(vehicle.node)
        features.append(
            _feature(
                {"type": "Point", "coordinates": list(lon_lat)} if lon_lat else None,
                feature="vehicle",
                vehicle_id=vehicle.vehicle_id,
                kind=vehicle.kind.value,
                state=vehicle.state.value,
                sent=k is not None,
                request_id=fleet_rows[-1].request_id,
            )
        )
    itineraries.sort(key=lambda r: (r.vehicle_id, r.step))
    request_rows, reasons = _request_rows(inputs, result, grid, proven, energy_wh, by_request)
    for row in request_rows:
        lon_lat = inputs.positions.get(row.node)
        features.append(
            _feature(
                {"type": "Point", "coordinates": list(lon_lat)} if lon_lat else None,
                feature="request",
                request_id=row.request_id,
                priority=row.priority,
                status=row.status.value,
                need_wh=row.need_wh,
                served_wh=row.served_wh,
                reason=row.reason.value,
            )
        )
    for point in inputs.points:
        lon_lat = inputs.positions.get(point.node)
        features.append(
            _feature(
                {"type": "Point", "coordinates": list(lon_lat)} if lon_lat else None,
                feature="point",
                point_id=point.point_id,
                bus=point.bus,
                ports=point.ports,
                max_kw=point.max_kw,
            )
        )
    for road in inputs.roads:
        if road.from_node in inputs.positions and road.to_node in inputs.positions:
            features.append(
                _feature(
                    {
                        "type": "LineString",
                        "coordinates": [
                            list(inputs.positions[road.from_node]),
                            list(inputs.positions[road.to_node]),
                        ],
                    },
                    feature="road",
                    km=road.km,
                    minutes=road.minutes,
                )
            )
    geojson = {"type": "FeatureCollection", "features": features}
    return Plan(
        tuple(request_rows),
        tuple(deliveries),
        tuple(fleet_rows),
        tuple(itineraries),
        tuple(sessions),
        geojson,
        reasons,
    )


def _feature(geometry: dict[str, Any] | None, **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def _idle_note(vehicle: Vehicle, dispatchable: bool, mode: str) -> str:
    if not vehicle.can_supply:
        return "cannot discharge (not bidirectional)"
    if not dispatchable:
        return f"{vehicle.state.value} (not dispatched in {mode} mode)"
    if vehicle.residual_wh <= vehicle.reserve_wh:
        return "at or below its reserve"
    return "not needed"


def _request_rows(
    inputs: MobilityInputs,
    result: DispatchResult,
    grid: GridOutcome,
    proven: bool,
    energy_wh: npt.NDArray[np.int64],
    by_request: dict[int, list[int]],
) -> tuple[list[RequestRow], dict[str, int]]:
    fleet, pairs, dispatch = result.fleet, result.pairs, result.dispatch
    chosen = pairs.subset(dispatch.chosen)
    used_by = np.full(fleet.n_vehicles, -1, dtype=np.int64)
    used_by[chosen.vehicle] = chosen.request
    capped = set(grid.capped_points)
    penalty = inputs.spec.travel_penalty_kwh_per_min
    profit = pair_profit(fleet, pairs, Objective(np.ones(fleet.n_requests), penalty))
    # The pairs of requests not served in full, grouped by request: their reasons read
    # them (sorting all pairs took 1.9 s on 26.7 M, for the 214 requests that needed it).
    served_wh = np.zeros(fleet.n_requests, dtype=np.int64)
    for i, ks in by_request.items():
        served_wh[i] = sum(int(energy_wh[k]) for k in ks)
    short = served_wh < np.array([r.need_wh for r in inputs.requests], dtype=np.int64)
    wanted = np.flatnonzero(short[pairs.request])
    order = wanted[np.argsort(pairs.request[wanted], kind="stable")]
    starts = np.searchsorted(
        pairs.request[order], np.arange(fleet.n_requests + 1, dtype=pairs.request.dtype)
    )
    id_rank = np.argsort(np.argsort(np.array([r.request_id for r in inputs.requests])))
    rows = []
    reasons: dict[str, int] = {}
    for i, request in enumerate(inputs.requests):
        ks = by_request.get(i, [])
        served = int(served_wh[i])
        need = request.need_wh
        status = (
            RequestStatus.SERVED
            if served >= need
            else (RequestStatus.PARTIAL if served > 0 else RequestStatus.UNSERVED)
        )
        reason, detail = UnservedReason.NONE, ""
        if status is not RequestStatus.SERVED:
            mine = order[starts[i] : starts[i + 1]]
            reason, detail = _reason(
                inputs, result, i, mine, used_by, profit, capped, proven, id_rank
            )
            reasons[reason.value] = reasons.get(reason.value, 0) + 1
        vehicles = [inputs.vehicles[int(chosen.vehicle[k])].vehicle_id for k in ks]
        rows.append(
            RequestRow(
                request_id=request.request_id,
                priority=request.priority.value,
                carrier=request.carrier.value,
                node=request.node,
                point_id=request.point_id or "",
                earliest_min=request.earliest_min,
                latest_min=request.latest_min,
                need_wh=need,
                served_wh=served,
                status=status,
                n_vehicles=len(ks),
                vehicles=";".join(vehicles),
                first_eta_min=(
                    _round_min(min(float(chosen.travel_min[k]) for k in ks)) if ks else math.nan
                ),
                reason=reason,
                detail=detail,
            )
        )
    return rows, reasons


def _reason(
    inputs: MobilityInputs,
    result: DispatchResult,
    i: int,
    eligible: npt.NDArray[np.int64],
    used_by: npt.NDArray[np.int64],
    profit: FloatArray,
    capped: set[str],
    proven: bool,
    id_rank: npt.NDArray[np.int64],
) -> tuple[UnservedReason, str]:
    fleet, pairs = result.fleet, result.pairs
    request = inputs.requests[i]
    reach = Reach(int(pairs.reach[i]))
    what = "fuel" if request.carrier is Carrier.FUEL else "electricity"
    if reach is Reach.NO_VEHICLE:
        kind = "fuel truck" if request.carrier is Carrier.FUEL else "vehicle that can discharge"
        return UnservedReason.NO_VEHICLE, f"no dispatchable {kind} has {what} above its reserve"
    if reach is Reach.OUT_OF_RANGE:
        return (
            UnservedReason.OUT_OF_RANGE,
            "no vehicle can drive there with energy left (no road, or too far)",
        )
    if reach is Reach.TIME_WINDOW:
        return (
            UnservedReason.TIME_WINDOW,
            f"the first vehicle in range arrives at {pairs.best_arrival_min[i]:.1f} min; "
            f"the window closes at {request.latest_min:g} min",
        )
    if reach is Reach.CAPACITY:
        best_kwh, need_kwh = pairs.best_capacity_kwh[i], request.need_wh / WH_PER_KWH
        if request.divisible:
            detail = f"no vehicle can bring 1 Wh within the window (at most {best_kwh:.3f} kWh)"
        else:
            detail = (
                f"indivisible: one vehicle can bring at most {best_kwh:.3f} of "
                f"{need_kwh:.3f} kWh within the window"
            )
        return UnservedReason.CAPACITY, detail
    point = inputs.points[fleet.request_point[i]] if request.point_id is not None else None
    if point is not None and point.point_id in capped:
        return UnservedReason.GRID_LIMIT, f"the grid check lowered point {point.point_id}'s limit"
    vehicles = pairs.vehicle[eligible]
    free = eligible[used_by[vehicles] < 0]
    if free.size:
        if point is not None:
            return (
                UnservedReason.POINT_LIMIT,
                f"{free.size} vehicle(s) could come; point {point.point_id}'s ports or kW "
                "are taken",
            )
        if np.all(profit[free] <= 0.0):
            return UnservedReason.TRAVEL_COST, "the drive costs more than the energy it brings"
        return (
            UnservedReason.SOLVER_LIMIT,
            f"{free.size} free vehicle(s) could come; the solver stopped within its gap or "
            "time limit"
            if not proven
            else f"{free.size} free vehicle(s) could come; the solver's gap tolerance left it out",
        )
    others = used_by[vehicles]
    critical = others[(others != i) & fleet.critical[np.maximum(others, 0)]]
    n = int(vehicles.size)  # a request has one pair per vehicle
    # Only emergency mode puts critical requests first; in normal mode they are just others.
    if critical.size and result.mode.value == "emergency":
        # The first five ids among the distinct requests (hundreds, for thousands of trips).
        distinct = np.unique(critical)
        first = distinct[np.argsort(id_rank[distinct], kind="stable")[:5]]
        names = [inputs.requests[int(r)].request_id for r in first]
        return (
            UnservedReason.USED_BY_CRITICAL,
            f"all {n} vehicle(s) that could come went elsewhere, to critical requests too "
            f"({', '.join(names)})",
        )
    return UnservedReason.USED_ELSEWHERE, f"all {n} vehicle(s) that could come are in use"
