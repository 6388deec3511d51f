"""The AC check of what vehicles inject at points on grid buses, and the loop that obeys it.

A session at a point runs at constant power ``e / h`` from its start to the window's
end (:mod:`~gridmatch.mobility.model`), so at worst every session of a bus overlaps:
the check injects the sum of the sessions' powers at each bus, as kW over a one-hour
slot (kWh = kW), on top of the network's loads and static generators scaled as
mobility.yaml says, with pandapower through :class:`~gridmatch.grid_models.security.SlotGrid`
(the security rule of ``gridmatch clear``: within limits, or no worse than before).
Deliveries to a request's own node (a house, a generator) do not touch the grid.

If the check fails, the points that cause it get a lower kW limit, ``SHRINK`` times what
they injected, and the dispatch is solved again (vehicles freed there may serve other
requests). A point causes it when its bus pushes a violated element further out: with
the base case's sensitivities (one linearisation, :meth:`SlotGrid.base_sensitivity`), its
share of the push on some violated element is at least :data:`CULPRIT_SHARE` (every
injecting point, if the sensitivities cannot be had). After ``max_rounds`` re-solves the
limits of all points on buses drop to 0: nothing is injected, which is the base case and
secure by the rule.

The user's time limit covers the whole loop: when points sit on grid buses, the first
dispatch gets :data:`FIRST_DISPATCH_SHARE` of it and each re-solve half of what is left
(the last allowed one all of it). Once less than :data:`MIN_RESOLVE_SHARE` of the limit
is left, the loop stops solving and **cuts** instead: the sessions at the culprit points
are taken out of the dispatch as it is (dropping a delivery never breaks the model's
rows, except emergency mode's critical floor, which the cut dispatch no longer claims).
Every stage keeps its bound, which still bounds the cut dispatch (lower point limits only
shrink the problem), and is valued at what that dispatch serves (emergency mode's stage 1
and floor at its critical energy), so the gaps are honest; it is never reported as proven.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from gridmatch.grid_models.security import SecurityLimits, SlotGrid, SlotSecurity
from gridmatch.mobility.dispatch import DispatchResult, Mode, critical_objective, run_dispatch
from gridmatch.mobility.heuristic import Dispatch, critical_kwh, objective_value
from gridmatch.mobility.model import Objective
from gridmatch.mobility.pairs import session_hours
from gridmatch.mobility.roads import RoadNetwork
from gridmatch.mobility.solve import SolveSettings
from gridmatch.scenario_io.mobility_input import MobilityInputs

FloatArray = npt.NDArray[np.float64]
SHRINK = 0.7
CULPRIT_SHARE = 0.1
FIRST_DISPATCH_SHARE = 0.5
MIN_RESOLVE_SHARE = 0.05
_MIN_RESOLVE_S = 0.2
_CHECK_HOURS = 1.0


@dataclass(frozen=True)
class GridOutcome:
    """What the AC check found and did.

    Attributes
    ----------
    checked
        Whether any session injected at a grid bus (and the check ran).
    rounds
        Re-solves with lowered point limits.
    point_kw
        The points' kW limits of the final dispatch.
    capped_points
        Points whose limit the loop lowered.
    cut_points
        Points whose sessions were cut from the dispatch because the time limit left
        no re-solve (empty when every round was solved).
    verdict
        The last check's verdict (``None`` if nothing was checked).
    """

    checked: bool
    secure: bool
    rounds: int
    ac_power_flows: int
    injection_kw_by_bus: dict[int, float]
    point_kw: FloatArray
    capped_points: tuple[str, ...]
    verdict: SlotSecurity | None
    cut_points: tuple[str, ...] = ()


def bus_injection_kw(
    inputs: MobilityInputs, result: DispatchResult
) -> tuple[dict[int, float], FloatArray]:
    """KW injected at each bus by a dispatch, and per point."""
    fleet, pairs, dispatch = result.fleet, result.pairs, result.dispatch
    per_point = np.zeros(fleet.n_points)
    if fleet.n_points == 0 or dispatch.chosen.size == 0:
        return {}, per_point
    chosen = pairs.subset(dispatch.chosen)
    point = fleet.request_point[chosen.request]
    at = point >= 0
    power = dispatch.energy_kwh[at] / session_hours(fleet, chosen)[at]
    np.add.at(per_point, point[at], power)
    by_bus: dict[int, float] = {}
    for q, kw in enumerate(per_point):
        bus = inputs.points[q].bus
        if bus is not None and kw > 0.0:
            by_bus[bus] = by_bus.get(bus, 0.0) + float(kw)
    return by_bus, per_point


def secure_dispatch(
    inputs: MobilityInputs, roads: RoadNetwork, mode: Mode, settings: SolveSettings
) -> tuple[DispatchResult, GridOutcome]:
    """Solve the dispatch, then check and re-solve until the grid is secure (module doc)."""
    began = time.perf_counter()
    deadline = began + settings.time_limit_s
    base_kw = np.array([p.max_kw for p in inputs.points])
    point_kw = base_kw.copy()
    grid_spec = inputs.spec.grid
    on_bus = np.array([p.bus is not None for p in inputs.points], dtype=bool)
    if (
        grid_spec is None
        or inputs.net is None
        or not grid_spec.security.enabled
        or not on_bus.any()
    ):
        result = run_dispatch(inputs, roads, mode, settings, point_kw)
        injection, _ = bus_injection_kw(inputs, result)
        return result, GridOutcome(False, True, 0, 0, injection, point_kw, (), None)
    first = replace(settings, time_limit_s=FIRST_DISPATCH_SHARE * settings.time_limit_s)
    result = run_dispatch(inputs, roads, mode, first, point_kw)
    security = grid_spec.security
    limits = SecurityLimits(
        max_line_loading_percent=security.max_line_loading_percent,
        max_trafo_loading_percent=security.max_trafo_loading_percent,
        vm_min_pu=security.vm_min_pu,
        vm_max_pu=security.vm_max_pu,
    )
    buses = sorted({p.bus for p in inputs.points if p.bus is not None})
    grid = SlotGrid(
        inputs.net,
        [grid_spec.load_scaling],
        [grid_spec.sgen_scaling],
        slot_hours=_CHECK_HOURS,
        trade_buses=buses,
    )
    rounds = 0
    cut: set[int] = set()
    bus_array = np.asarray(buses, dtype=np.int64)
    min_resolve_s = max(_MIN_RESOLVE_S, MIN_RESOLVE_SHARE * settings.time_limit_s)
    while True:
        injection, per_point = bus_injection_kw(inputs, result)
        # kW over the one-hour check slot are kWh.
        verdict = grid.check(0, injection, limits, linearise_at=bus_array)
        if verdict.secure or not injection:
            break
        culprits = _culprit_buses(grid, verdict, bus_array, injection)
        injecting = (
            on_bus
            & (per_point > 0.0)
            & np.array([p.bus in culprits for p in inputs.points], dtype=bool)
        )
        if rounds >= grid_spec.max_rounds:
            point_kw = np.where(on_bus, 0.0, point_kw)
        else:
            point_kw = np.where(injecting, np.minimum(point_kw, SHRINK * per_point), point_kw)
        rounds += 1
        left_s = deadline - time.perf_counter()
        if left_s < min_resolve_s:
            # No time for another solve: take the culprits' sessions out as they are.
            dropped = np.flatnonzero(injecting | (on_bus & (point_kw == 0.0)))
            cut |= {int(q) for q in dropped}
            result = _cut_sessions(inputs, result, dropped)
            continue
        last_round = rounds > grid_spec.max_rounds
        share = 1.0 if last_round else 0.5
        result = run_dispatch(
            inputs, roads, mode, replace(settings, time_limit_s=share * left_s), point_kw
        )
    capped = tuple(
        p.point_id
        for p, kw, base in zip(inputs.points, point_kw, base_kw, strict=True)
        if kw < base
    )
    return result, GridOutcome(
        True,
        # A dispatch that injects nothing is the base case: no worse than without by the
        # rule, even on a grid whose own power flow fails (the check's verdict then is not).
        verdict.secure or not injection,
        rounds,
        grid.ac_power_flows,
        injection,
        point_kw,
        capped,
        verdict,
        tuple(inputs.points[q].point_id for q in sorted(cut)),
    )


def _cut_sessions(
    inputs: MobilityInputs, result: DispatchResult, points: npt.NDArray[np.int64]
) -> DispatchResult:
    """Take the sessions at ``points`` out of ``result``; recompute every stage's value.

    Each stage keeps its bound (still valid: the cut only lowered what is served), so
    its gap grows by what the cut took. In emergency mode stage 1's dispatch and value
    become the critical deliveries left, and so does the floor.
    """
    fleet, pairs, dispatch = result.fleet, result.pairs, result.dispatch
    request_point = fleet.request_point[pairs.request[dispatch.chosen]]
    keep = ~np.isin(request_point, points)
    kept = Dispatch(dispatch.chosen[keep], dispatch.energy_kwh[keep])
    penalty = inputs.spec.travel_penalty_kwh_per_min
    everything = Objective(np.ones(fleet.n_requests), penalty)
    stages = list(result.stages)
    stages[-1] = replace(
        stages[-1],
        dispatch=kept,
        objective_kwh=objective_value(fleet, pairs, everything, kept),
        source="grid cut",
    )
    floor = result.critical_floor_kwh
    if len(stages) == 2:
        # Stage 1 ran over the critical pairs alone: its dispatch in their positions.
        critical_pairs = np.flatnonzero(fleet.critical[pairs.request])
        on_critical = fleet.critical[pairs.request[kept.chosen]]
        first = Dispatch(
            np.searchsorted(critical_pairs, kept.chosen[on_critical]),
            kept.energy_kwh[on_critical],
        )
        stages[0] = replace(
            stages[0],
            dispatch=first,
            objective_kwh=objective_value(
                fleet, pairs.subset(critical_pairs), critical_objective(fleet, penalty), first
            ),
            source="grid cut",
        )
        floor = critical_kwh(fleet, pairs, kept)
    return replace(result, dispatch=kept, stages=tuple(stages), critical_floor_kwh=floor)


def _culprit_buses(
    grid: SlotGrid,
    verdict: SlotSecurity,
    buses: npt.NDArray[np.int64],
    injection: dict[int, float],
) -> set[int]:
    """Buses whose injection pushes a violated element further out of its limit."""
    sensitivity = grid.base_sensitivity(0, buses)
    table = verdict.elements
    if sensitivity is None or sensitivity.shape[0] != len(table):
        return set(injection)
    kwh = np.array([injection.get(int(b), 0.0) for b in buses])
    found: set[int] = set()
    after = table.after.to_numpy(dtype=float)
    high = table.limit_high.to_numpy(dtype=float)
    for row in np.nonzero(table.violated.to_numpy(dtype=bool))[0]:
        direction = 1.0 if after[row] > high[row] else -1.0
        push = direction * sensitivity[row] * kwh
        total = float(push[push > 0.0].sum())
        if total <= 0.0:
            continue
        found |= {
            int(b) for b, share in zip(buses, push / total, strict=True) if share >= CULPRIT_SHARE
        }
    return found or set(injection)
