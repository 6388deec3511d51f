"""The dispatch MILP on OR-Tools CP-SAT (imported only when it solves).

CP-SAT needs integer coefficients, so the model of :mod:`~gridmatch.mobility.model` is
stated in whole units: energy in Wh (capacities and needs are whole Wh already), the
objective in mWh (a Wh of served energy is 1,000, a travel penalty is rounded to the
nearest mWh), and a point's power row in Wh with each session's ``1 / h_p`` rounded
*up* to a thousandth (so the row is never looser than the kW limit). One worker and a
fixed seed: CP-SAT is deterministic then (TOOLCHAIN.md), unless the time limit stops it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gridmatch.mobility.model import Objective
from gridmatch.mobility.pairs import Fleet, Pairs, session_hours
from gridmatch.units import WH_PER_KWH

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
MWH_PER_KWH = 1_000_000
_POWER_SCALE = 1000


@dataclass(frozen=True)
class CpSatAnswer:
    """What CP-SAT found: chosen pair positions and energy, objective and bound in kWh."""

    chosen: IntArray | None
    energy_kwh: FloatArray | None
    bound_kwh: float | None
    proven_optimal: bool
    status: str
    runtime_s: float


def solve_cpsat(
    fleet: Fleet,
    pairs: Pairs,
    objective: Objective,
    start: tuple[IntArray, FloatArray] | None,
    time_limit_s: float,
    mip_gap: float,
    seed: int,
    forced: IntArray | None = None,
) -> CpSatAnswer:
    """Solve the dispatch MILP over ``pairs`` with CP-SAT; ``start`` becomes hints.

    ``forced`` pairs must be sent (a neighbourhood search fixes them).
    """
    from ortools.sat.python import cp_model

    began = time.perf_counter()
    model = cp_model.CpModel()
    n = pairs.size
    request = pairs.request.astype(np.int64)
    divisible = fleet.divisible[request]
    need_wh = np.rint(fleet.need_kwh * WH_PER_KWH).astype(np.int64)
    capacity_wh = np.rint(pairs.capacity_kwh * WH_PER_KWH).astype(np.int64)
    # y[p]: the vehicle of pair p drives to its request.
    y: list[Any] = [model.new_bool_var(f"y{p}") for p in range(n)]
    # x[p]: Wh it delivers (divisible requests; indivisible ones deliver their need).
    x: list[Any] = [
        model.new_int_var(0, int(capacity_wh[p]), f"x{p}") if divisible[p] else None
        for p in range(n)
    ]
    # e[p]: the Wh pair p delivers, as an expression.
    e: list[Any] = [x[p] if divisible[p] else int(need_wh[request[p]]) * y[p] for p in range(n)]
    for p in forced if forced is not None else ():
        model.add(y[int(p)] == 1)
    by_vehicle = _groups(pairs.vehicle.astype(np.int64))
    by_request = _groups(request)
    # One trip per vehicle.
    for positions in by_vehicle.values():
        model.add_at_most_one(y[p] for p in positions)
    # Need (divisible, Wh) or one vehicle (indivisible) per request; links x <= u y.
    for i, positions in by_request.items():
        if fleet.divisible[i]:
            model.add(sum(x[p] for p in positions) <= int(need_wh[i]))
            for p in positions:
                model.add(x[p] <= int(capacity_wh[p]) * y[p])
        else:
            model.add_at_most_one(y[p] for p in positions)
    # Ports and power at points.
    point = fleet.request_point[request]
    hours = session_hours(fleet, pairs)
    per_hour = np.ceil(_POWER_SCALE / hours).astype(np.int64)
    for q, positions in _groups(point[point >= 0], np.nonzero(point >= 0)[0]).items():
        model.add(sum(y[p] for p in positions) <= int(fleet.point_ports[q]))
        limit = int(np.floor(fleet.point_kw[q] * WH_PER_KWH * _POWER_SCALE))
        model.add(sum(int(per_hour[p]) * e[p] for p in positions) <= limit)
    # Second stage of emergency mode: critical energy at least the first stage's.
    if objective.floor_kwh is not None:
        critical = np.nonzero(fleet.critical[request])[0]
        floor_wh = int(np.ceil(objective.floor_rhs_kwh() * WH_PER_KWH - 1e-6))
        model.add(sum(e[p] for p in critical) >= floor_wh)
    weight_mwh = np.rint(objective.weight[request] * (MWH_PER_KWH / WH_PER_KWH)).astype(np.int64)
    penalty_mwh = np.rint(
        objective.travel_penalty_kwh_per_min * pairs.travel_min * MWH_PER_KWH
    ).astype(np.int64)
    model.maximize(sum(int(weight_mwh[p]) * e[p] - int(penalty_mwh[p]) * y[p] for p in range(n)))
    if start is not None:
        chosen, energy = start
        sent = np.zeros(n, dtype=bool)
        sent[chosen] = True
        delivered = np.zeros(n)
        delivered[chosen] = energy
        for p in range(n):
            model.add_hint(y[p], bool(sent[p]))
            if x[p] is not None:
                model.add_hint(x[p], int(np.floor(delivered[p] * WH_PER_KWH + 1e-6)))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(float(time_limit_s), 0.01)
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = int(seed)
    solver.parameters.relative_gap_limit = float(mip_gap)
    status = solver.solve(model)
    runtime = time.perf_counter() - began
    name = solver.status_name(status)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return CpSatAnswer(None, None, None, False, name, runtime)
    values_y = np.array([solver.boolean_value(v) for v in y], dtype=bool)
    picked = np.nonzero(values_y)[0]
    energy_kwh: FloatArray = np.array(
        [
            solver.value(x[p]) / WH_PER_KWH if divisible[p] else fleet.need_kwh[request[p]]
            for p in picked
        ],
        dtype=np.float64,
    )
    bound = solver.best_objective_bound / MWH_PER_KWH
    return CpSatAnswer(
        picked.astype(np.int64),
        energy_kwh,
        float(bound),
        status == cp_model.OPTIMAL,
        name,
        runtime,
    )


def _groups(keys: IntArray, positions: IntArray | None = None) -> dict[int, IntArray]:
    """Positions by key, in order."""
    index = np.arange(keys.size) if positions is None else positions
    order = np.argsort(keys, kind="stable")
    keys, index = keys[order], index[order]
    starts = np.r_[0, np.nonzero(keys[1:] != keys[:-1])[0] + 1] if keys.size else np.zeros(0, int)
    ends = np.r_[starts[1:], keys.size] if keys.size else np.zeros(0, int)
    return {int(keys[s]): index[s:e] for s, e in zip(starts, ends, strict=True)}
