"""``gridmatch mobility DIR``: read the folder, dispatch, check the grid, write the output.

Independent of the command line, so tests and the benchmark call it directly.
Everything is validated before anything is solved, and the output folder is written
atomically: after any failure it holds the previous complete output or nothing.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gridmatch.mobility.dispatch import DispatchResult, Mode
from gridmatch.mobility.grid_check import GridOutcome, secure_dispatch
from gridmatch.mobility.plan import Plan, build_plan
from gridmatch.mobility.roads import RoadNetwork
from gridmatch.mobility.solve import SolveSettings
from gridmatch.results_io.atomic import recover
from gridmatch.results_io.manifest import input_hashes, package_versions
from gridmatch.results_io.mobility import (
    GridSummary,
    MobilityResultFiles,
    MobilitySummary,
    StageSummary,
    write_mobility_result,
)
from gridmatch.scenario_io.mobility_input import Carrier, MobilityInputs, load_mobility
from gridmatch.scenario_io.mobility_schema import BackendName

_STAGE_NAMES = {1: ("all",), 2: ("critical", "all")}
# The output rows are built after the dispatch and inside the time limit: the dispatch
# gets what is left of it less this reserve, per vehicle x request cell and fixed (rows
# of 10,000 x 5,000 took 1.0-1.3 s at load 1.5; twice that is kept back), and at least
# this share of the limit.
PLAN_RESERVE_S_PER_CELL = 5e-8
PLAN_RESERVE_S = 0.05
MIN_DISPATCH_SHARE = 0.5


@dataclass(frozen=True)
class MobilityRun:
    """What :func:`run_mobility` solved and wrote (``result`` and ``plan`` for callers)."""

    out_dir: Path | None
    summary: MobilitySummary
    result: DispatchResult
    grid: GridOutcome
    plan: Plan
    roads: RoadNetwork
    inputs: MobilityInputs


def settings_for(
    inputs: MobilityInputs,
    *,
    backend: BackendName | None = None,
    time_limit_s: float | None = None,
    mip_gap: float | None = None,
    seed: int | None = None,
) -> SolveSettings:
    """Return the run's settings: mobility.yaml's, overridden by whatever is given."""
    solver = inputs.spec.solver
    return SolveSettings(
        backend=backend or solver.backend,
        time_limit_s=time_limit_s if time_limit_s is not None else solver.time_limit_s,
        mip_gap=mip_gap if mip_gap is not None else solver.mip_gap,
        seed=seed if seed is not None else solver.seed,
    )


def in_id_order(inputs: MobilityInputs) -> MobilityInputs:
    """Return the inputs with vehicles, requests and points sorted by their ids.

    The dispatch is solved in this order, so that the order of the files' rows cannot
    choose among equally good dispatches (a MILP solver picks among optima by column
    order): the same folder with its rows shuffled gives the same dispatch.
    """
    return replace(
        inputs,
        vehicles=tuple(sorted(inputs.vehicles, key=lambda v: v.vehicle_id)),
        requests=tuple(sorted(inputs.requests, key=lambda r: r.request_id)),
        points=tuple(sorted(inputs.points, key=lambda p: p.point_id)),
    )


def in_file_order(inputs: MobilityInputs, plan: Plan) -> Plan:
    """``plan`` with its per-request, per-delivery and per-vehicle rows in file row order.

    Deliveries follow their requests' rows (stably: within a request, by arrival, then
    vehicle id); itineraries and sessions stay sorted by vehicle and point id.
    """
    request_row = {r.request_id: r.row for r in inputs.requests}
    vehicle_row = {v.vehicle_id: v.row for v in inputs.vehicles}
    return replace(
        plan,
        requests=tuple(sorted(plan.requests, key=lambda r: request_row[r.request_id])),
        deliveries=tuple(sorted(plan.deliveries, key=lambda d: request_row[d.request_id])),
        fleet=tuple(sorted(plan.fleet, key=lambda f: vehicle_row[f.vehicle_id])),
    )


def solve_mobility(inputs: MobilityInputs, mode: Mode, settings: SolveSettings) -> MobilityRun:
    """Dispatch validated inputs (grid check included) and build the output rows.

    Solved in id order (:func:`in_id_order`); the returned ``inputs``, ``result`` and
    ``plan`` are in that order, the plan's per-request and per-vehicle rows in the files'.
    """
    began = time.perf_counter()
    inputs = in_id_order(inputs)
    roads = RoadNetwork(inputs.roads, inputs.positions)
    result, grid = secure_dispatch(inputs, roads, mode, dispatch_settings(inputs, settings, began))
    proven = not grid.cut_points and all(
        stage.gap <= settings.mip_gap + 1e-12 for stage in result.stages
    )
    plan = in_file_order(inputs, build_plan(inputs, roads, result, grid, proven))
    summary = _summary(inputs, mode, settings, result, grid, plan, proven, began)
    return MobilityRun(None, summary, result, grid, plan, roads, inputs)


def dispatch_settings(
    inputs: MobilityInputs, settings: SolveSettings, began: float
) -> SolveSettings:
    """Return the dispatch's settings: the limit less what came before and the rows' reserve.

    Parameters
    ----------
    began
        ``time.perf_counter()`` when the run began (its limit counts from then).
    """
    cells = len(inputs.vehicles) * len(inputs.requests)
    reserve_s = PLAN_RESERVE_S + PLAN_RESERVE_S_PER_CELL * cells
    left_s = settings.time_limit_s - (time.perf_counter() - began) - reserve_s
    return replace(settings, time_limit_s=max(left_s, MIN_DISPATCH_SHARE * settings.time_limit_s))


def run_mobility(
    directory: Path,
    out_dir: Path,
    mode: Mode,
    *,
    backend: BackendName | None = None,
    time_limit_s: float | None = None,
    mip_gap: float | None = None,
    seed: int | None = None,
) -> MobilityRun:
    """Validate ``directory``, dispatch and write ``out_dir`` atomically.

    Raises
    ------
    gridmatch.errors.InputError
        A file of ``directory`` is missing or malformed (file, row and field named);
        nothing is written.
    gridmatch.errors.OutputFolderError
        ``out_dir`` holds files gridmatch did not write.
    gridmatch.errors.SolverError
        A solver failed or returned a dispatch that breaks the model.
    """
    recover(out_dir)  # a killed earlier run's staging folder, before anything can fail
    inputs = load_mobility(directory)
    settings = settings_for(
        inputs, backend=backend, time_limit_s=time_limit_s, mip_gap=mip_gap, seed=seed
    )
    run = solve_mobility(inputs, mode, settings)
    plan = run.plan
    files = MobilityResultFiles(
        summary=run.summary,
        requests=plan.requests,
        deliveries=plan.deliveries,
        fleet=plan.fleet,
        itineraries=plan.itineraries,
        sessions=plan.sessions,
        geojson=plan.geojson,
        manifest=mobility_manifest(inputs, mode, settings),
    )
    write_mobility_result(out_dir, files)
    return replace(run, out_dir=out_dir)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _summary(
    inputs: MobilityInputs,
    mode: Mode,
    settings: SolveSettings,
    result: DispatchResult,
    grid: GridOutcome,
    plan: Plan,
    proven: bool,
    began: float,
) -> MobilitySummary:
    rows = plan.requests
    critical = [r for r in rows if r.priority == "critical"]
    normal = [r for r in rows if r.priority != "critical"]
    fuel_requests = {r.request_id for r in inputs.requests if r.carrier is Carrier.FUEL}
    last = result.stages[-1]
    names = _STAGE_NAMES.get(len(result.stages), ("all",) * len(result.stages))
    verdict = grid.verdict
    return MobilitySummary(
        name=inputs.name,
        mode=mode.value,
        backend=settings.backend.value,
        status="optimal" if proven else "feasible",
        gap=_finite(result.gap),  # the largest stage gap: it covers both criteria
        objective_kwh=last.objective_kwh,
        bound_kwh=last.bound_kwh if math.isfinite(last.bound_kwh) else last.objective_kwh,
        n_vehicles=len(inputs.vehicles),
        n_dispatchable=int(result.fleet.dispatchable.sum()),
        n_sent=len(plan.deliveries),
        n_requests=len(rows),
        n_served=sum(r.status.value == "served" for r in rows),
        n_partial=sum(r.status.value == "partial" for r in rows),
        n_unserved=sum(r.status.value == "unserved" for r in rows),
        need_wh=sum(r.need_wh for r in rows),
        served_wh=sum(r.served_wh for r in rows),
        critical_need_wh=sum(r.need_wh for r in critical),
        critical_served_wh=sum(r.served_wh for r in critical),
        normal_need_wh=sum(r.need_wh for r in normal),
        normal_served_wh=sum(r.served_wh for r in normal),
        critical_floor_kwh=result.critical_floor_kwh,
        fuel_served_l=sum(d.fuel_l for d in plan.deliveries if d.request_id in fuel_requests),
        reasons=plan.reasons,
        stages=[
            StageSummary(
                name=name,
                method=stage.method,
                source=stage.source,
                solver_status=stage.solver_status,
                objective_kwh=stage.objective_kwh,
                bound_kwh=stage.bound_kwh if math.isfinite(stage.bound_kwh) else 0.0,
                gap=_finite(stage.gap),
                n_pairs=stage.n_pairs,
                n_model_pairs=stage.n_model_pairs,
                lp_rounds=stage.lp_rounds,
                runtime_s=stage.runtime_s,
            )
            for name, stage in zip(names, result.stages, strict=True)
        ],
        grid=GridSummary(
            checked=grid.checked,
            secure=grid.secure,
            rounds=grid.rounds,
            ac_power_flows=grid.ac_power_flows,
            injection_kw_by_bus={
                str(bus): kw for bus, kw in sorted(grid.injection_kw_by_bus.items())
            },
            capped_points=list(grid.capped_points),
            cut_points=list(grid.cut_points),
            max_line_loading_percent=(
                verdict.worst("line", "loading_percent") if verdict is not None else None
            ),
            min_vm_pu=verdict.worst("bus", "vm_pu", lowest=True) if verdict is not None else None,
            max_vm_pu=verdict.worst("bus", "vm_pu") if verdict is not None else None,
        ),
        time_limit_s=settings.time_limit_s,
        mip_gap=settings.mip_gap,
        seed=settings.seed,
        horizon_min=inputs.spec.horizon_min,
        travel_penalty_kwh_per_min=inputs.spec.travel_penalty_kwh_per_min,
        fuel_kwh_per_l=inputs.spec.fuel_kwh_per_l,
        runtime_s=time.perf_counter() - began,
    )


def mobility_manifest(
    inputs: MobilityInputs, mode: Mode, settings: SolveSettings
) -> dict[str, Any]:
    """Everything needed to reproduce a dispatch."""
    root = inputs.directory.resolve()
    return {
        "kind": "mobility",
        "scenario": inputs.name,
        "scenario_dir": str(root),
        "inputs": {
            **input_hashes(inputs.directory, inputs.input_files),
        },
        "options": {
            "mode": mode.value,
            "backend": settings.backend.value,
            "time_limit_s": settings.time_limit_s,
            "mip_gap": settings.mip_gap,
            "seed": settings.seed,
            "threads": 1,
            **inputs.spec.model_dump(mode="json", exclude={"solver"}),
        },
        "versions": {"python": sys.version.split()[0], **package_versions()},
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
