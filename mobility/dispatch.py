"""The dispatch in its two modes: normal (every kWh alike) and emergency (critical first).

**Normal mode** maximises the energy served minus the travel penalty; ``charging``
vehicles stay where they are.

**Emergency mode** is lexicographic. Stage 1 maximises the energy served to critical
requests alone (every dispatchable vehicle, ``charging`` ones too; normal requests are
not in the model). Stage 2 maximises all energy served minus the travel penalty, with
the row "critical energy >= what stage 1 served": no normal request can take a vehicle
that critical ones needed to reach that amount. Stage 2 starts from stage 1's
deliveries, so it always has a feasible start. Stage 1 gets
:data:`FIRST_STAGE_SHARE` of the time limit, stage 2 the rest.

**The gap of an emergency dispatch** is the larger of the two stages' gaps
(:attr:`DispatchResult.gap`), so one number covers both criteria. Stage 1's bounds the
critical energy: no dispatch serves critical requests more than ``(1 + gap)`` times
what this one does (up to its tie-break, a millionth of the travel penalty). Stage 2's
bound holds for every dispatch whose critical energy is at least the floor, so also for
the lexicographic optimum (whose critical energy is at least the floor, since the floor
was reached), and the dispatch's total value (energy minus the travel penalty) is
within ``gap`` of that optimum's. Both are exact only once stage 1 is proven: with a
stage-1 gap above 0, a dispatch serving more critical energy may exist, and the rule
"no normal request takes a vehicle that critical ones needed" holds up to that gap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridmatch.mobility.heuristic import Dispatch, critical_kwh
from gridmatch.mobility.model import Objective
from gridmatch.mobility.pairs import Fleet, Pairs, eligible_pairs, fleet_arrays
from gridmatch.mobility.roads import RoadNetwork
from gridmatch.mobility.solve import SolveSettings, StageResult, solve_stage
from gridmatch.scenario_io.mobility_input import MobilityInputs
from gridmatch.scenario_io.mobility_schema import DispatchMode
from gridmatch.units import WH_PER_KWH, floor_wh_array

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# Stage 1 is the easier one (measured on 1,000 x 5,000: its start and LP bound are
# within 0.03 % in under a second, and the MILP after them found nothing better), so
# stage 2 gets most of the time.
FIRST_STAGE_SHARE = 0.25
# Stage 1's travel penalty, relative to the normal one: it keeps the nearest vehicles
# among equals without trading away any critical energy.
CRITICAL_TIE_BREAK = 1e-6
# What a solver's energy may fall short of a whole Wh and still count as it, in Wh:
# HiGHS's primal feasibility tolerance (1e-7 on rows in kWh). A 600 l fuel delivery came
# back as 5,975,999.9999955 Wh, 1 Wh short under float noise's 1e-6 Wh.
SOLVER_SLACK_WH = 1e-4


# The mode is a run setting like the backend; it lives with them (light to import).
Mode = DispatchMode


@dataclass(frozen=True)
class DispatchResult:
    """A dispatch and how it was found.

    Attributes
    ----------
    dispatch
        Chosen pairs (positions in ``pairs``) and their energy.
    stages
        One result per stage (normal: one; emergency: critical, then all).
    critical_floor_kwh
        Emergency mode: the critical energy stage 1 served (stage 2 kept it).
    """

    mode: Mode
    fleet: Fleet
    pairs: Pairs
    dispatch: Dispatch
    stages: tuple[StageResult, ...]
    critical_floor_kwh: float | None

    @property
    def gap(self) -> float:
        """The largest of the stages' gaps: one number for both (module docstring)."""
        return max(stage.gap for stage in self.stages)


def critical_objective(fleet: Fleet, travel_penalty_kwh_per_min: float) -> Objective:
    """Stage 1's objective: critical energy, with :data:`CRITICAL_TIE_BREAK` of the penalty."""
    return Objective(fleet.critical.astype(float), travel_penalty_kwh_per_min * CRITICAL_TIE_BREAK)


def run_dispatch(
    inputs: MobilityInputs,
    roads: RoadNetwork,
    mode: Mode,
    settings: SolveSettings,
    point_kw: FloatArray | None = None,
) -> DispatchResult:
    """Compute the eligible pairs and solve the mode's stages within the time limit."""
    began = time.perf_counter()
    deadline = began + settings.time_limit_s
    emergency = mode is Mode.EMERGENCY
    fleet = fleet_arrays(inputs, roads, emergency=emergency, point_kw=point_kw)
    pairs = eligible_pairs(fleet, roads)
    penalty = inputs.spec.travel_penalty_kwh_per_min
    everything = Objective(np.ones(fleet.n_requests), penalty)
    if not emergency:
        stage = solve_stage(fleet, pairs, everything, settings, deadline)
        return DispatchResult(mode, fleet, pairs, delivering(stage.dispatch), (stage,), None)
    # Stage 1: critical requests only (pairs to normal ones would only cost travel).
    critical_positions = np.nonzero(fleet.critical[pairs.request])[0]
    critical_pairs = pairs.subset(critical_positions)
    first_deadline = began + FIRST_STAGE_SHARE * settings.time_limit_s
    # Critical energy only; a tiny travel penalty keeps the nearest vehicles among equals
    # without trading away any energy (it is 1e-6 of the normal one).
    first = solve_stage(
        fleet,
        critical_pairs,
        critical_objective(fleet, penalty),
        settings,
        first_deadline,
    )
    first_dispatch = Dispatch(critical_positions[first.dispatch.chosen], first.dispatch.energy_kwh)
    floor = critical_kwh(fleet, pairs, first_dispatch)
    second = solve_stage(
        fleet,
        pairs,
        Objective(np.ones(fleet.n_requests), penalty, floor_kwh=floor),
        settings,
        deadline,
        fixed=first_dispatch,
    )
    return DispatchResult(mode, fleet, pairs, delivering(second.dispatch), (first, second), floor)


def delivering(dispatch: Dispatch) -> Dispatch:
    """Return the trips of a dispatch that deliver at least 1 Wh.

    A vehicle already at a request's node costs no travel, so a solver may choose its
    pair with nothing on it: sent, it would deliver 0 Wh, yet count as sent and hold a
    port at a point.
    """
    keep = floor_wh_array(dispatch.energy_kwh, SOLVER_SLACK_WH) >= 1
    return Dispatch(dispatch.chosen[keep], dispatch.energy_kwh[keep])


def delivered_wh(dispatch: Dispatch, pairs: Pairs) -> IntArray:
    """Whole Wh each trip of ``dispatch`` delivers: rounded down, never above its pair's cap.

    The solver's value within :data:`SOLVER_SLACK_WH` below a whole Wh counts as that
    Wh (else a 600 l delivery would be written 1 Wh short, and "partial"); the pair's
    capacity (whole Wh: spare after the drive, power over the window, the need) keeps
    the rounding from giving what the vehicle does not have.
    """
    cap_wh = np.rint(pairs.capacity_kwh[dispatch.chosen] * WH_PER_KWH).astype(np.int64)
    return np.minimum(floor_wh_array(dispatch.energy_kwh, SOLVER_SLACK_WH), cap_wh)
