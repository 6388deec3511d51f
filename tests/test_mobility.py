"""Energy on wheels (issue #20): every dispatch checked independently, brute force, properties,
the lexicographic rule of emergency mode, bad input, the CLI, V2G in the market.

Every solve's output folder goes through ``tests/mobility_check.py``, which imports nothing
from gridmatch. Brute force enumerates every assignment of vehicles to requests of small
instances (pairs recomputed here with networkx, energies by scipy's LP) and compares
optimal values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import random
import shutil
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pandapower.networks as pn
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from independent_grid import insecure_slots
from mobility_check import check_output, read_inputs
from scipy.optimize import linprog
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.matching.backends.highs_runner import run_highs
from gridmatch.matching.solution import SolveOptions
from gridmatch.mobility import solve as solve_module
from gridmatch.mobility.dispatch import Mode, run_dispatch
from gridmatch.mobility.example import synthetic_inputs, town_grid, write_inputs
from gridmatch.mobility.heuristic import critical_kwh
from gridmatch.mobility.model import Objective, build_model
from gridmatch.mobility.nearest import SupplyIndex
from gridmatch.mobility.pairs import eligible_pairs, fleet_arrays
from gridmatch.mobility.pricing import Duals, priced_lp, reduced_values
from gridmatch.mobility.roads import RoadNetwork
from gridmatch.mobility.run import run_mobility, settings_for, solve_mobility
from gridmatch.mobility.solve import SolveSettings
from gridmatch.mobility.v2g import spare_wh
from gridmatch.results_io.mobility import (
    read_deliveries,
    read_fleet,
    read_map,
    read_mobility_summary,
    read_request_rows,
    read_v2g_offers,
)
from gridmatch.scenario_io.mobility_input import (
    Carrier,
    MobilityInputs,
    Point,
    Priority,
    Request,
    Vehicle,
    VehicleKind,
    VehicleState,
    load_mobility,
)
from gridmatch.scenario_io.mobility_schema import BackendName, MobilitySpec

REPO = Path(__file__).resolve().parents[1]
STORM = REPO / "scenarios" / "storm-town"
runner = CliRunner()
EPSILON = 0.001  # travel_penalty_kwh_per_min of the instances here
EXACT_YAML = "horizon_min: 240\nsolver: {time_limit_s: 20, mip_gap: 0.0}\n"


# --- instances -------------------------------------------------------------------------


def small_inputs(
    seed: int, n_vehicles: int, n_requests: int, *, side: int = 4, with_points: bool = True
) -> MobilityInputs:
    """A small random town: every kind, state and priority, points with few ports."""
    rng = np.random.default_rng(seed)
    town = town_grid(side, side, block_km=1.0, closed_share=0.1, seed=seed)
    nodes = town.nodes
    kinds = list(VehicleKind)
    vehicles = []
    for k in range(n_vehicles):
        kind = kinds[int(rng.choice(3, p=[0.6, 0.25, 0.15]))]
        residual = {"ev": 30.0, "mobile_storage": 120.0, "fuel_truck": 400.0}[kind.value]
        vehicles.append(
            Vehicle(
                f"v{k}",
                kind,
                str(nodes[int(rng.integers(len(nodes)))]),
                VehicleState(
                    str(
                        rng.choice(
                            ["available", "available", "driving", "charging", "out_of_service"],
                            p=[0.35, 0.25, 0.15, 0.15, 0.1],
                        )
                    )
                ),
                int(residual * float(rng.uniform(0.6, 1.0)) * 1000),
                int(float(rng.uniform(2, 6)) * 1000),
                float(rng.choice([3.7, 11.0, 50.0])),
                bool(rng.random() < 0.8),
                round(float(rng.uniform(0.2, 1.5)), 3),
                f"v{k}",
                k + 2,
            )
        )
    points = (
        (
            Point("pA", str(nodes[0]), None, 1, 8.0, 2),
            Point("pB", str(nodes[-1]), None, 2, 30.0, 3),
        )
        if with_points
        else ()
    )
    requests = []
    for k in range(n_requests):
        fuel = rng.random() < 0.2
        point = (
            points[int(rng.integers(len(points)))]
            if points and not fuel and rng.random() < 0.3
            else None
        )
        earliest = float(rng.choice([0.0, 0.0, 10.0, 30.0]))
        latest = earliest + float(rng.choice([8.0, 30.0, 90.0, 200.0]))
        requests.append(
            Request(
                f"r{k}",
                point.node if point else str(nodes[int(rng.integers(len(nodes)))]),
                Carrier.FUEL if fuel else Carrier.ELECTRICITY,
                int(float(rng.uniform(2, 40 if not fuel else 200)) * 1000),
                Priority.CRITICAL if rng.random() < 0.4 else Priority.NORMAL,
                earliest,
                latest,
                bool(rng.random() < 0.6),
                point.point_id if point else None,
                k + 2,
            )
        )
    spec = MobilitySpec.model_validate({"horizon_min": 240.0})
    return MobilityInputs(
        Path("."),
        spec,
        "small",
        tuple(vehicles),
        points,
        tuple(requests),
        town.roads,
        town.positions,
        None,
        (),
    )


def write_folder(folder: Path, inputs: MobilityInputs, yaml_text: str = EXACT_YAML) -> Path:
    write_inputs(folder, inputs, yaml_text)
    return folder


def solve_checked(folder: Path, out: Path, mode: Mode, **options: object):
    run = run_mobility(folder, out, mode, **options)  # type: ignore[arg-type]
    problems = check_output(folder, out, mode.value)
    assert not problems, problems
    return run


# --- brute force -----------------------------------------------------------------------


def _eligible(folder: Path, mode: str) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(vehicle, request) -> (capacity kWh, travel min, session hours), computed here."""
    inputs = read_inputs(folder)
    graph = inputs.graph()
    states = {"available", "driving"} | ({"charging"} if mode == "emergency" else set())
    pairs = {}
    for v in inputs.vehicles.values():
        if v.state not in states or (v.kind == "ev" and not v.bidirectional):
            continue
        if v.node in graph:
            minutes, paths = nx.single_source_dijkstra(graph, v.node, weight="minutes")
        else:
            minutes, paths = {v.node: 0.0}, {v.node: [v.node]}
        for r in inputs.requests.values():
            if (v.kind == "fuel_truck") != r.fuel or r.node not in minutes:
                continue
            path = paths[r.node]
            km = sum(inputs.arcs[(a, b)][1] for a, b in itertools.pairwise(path))
            spare = v.residual_kwh - v.reserve_kwh - km * v.kwh_per_km
            travel = minutes[r.node]
            start = max(travel, r.earliest_min)
            hours = (r.latest_min - start) / 60.0
            if travel >= r.latest_min or hours <= 0 or spare < 0.001 - 1e-9:
                continue
            power = min(v.max_kw, inputs.points[r.point_id].max_kw if r.point_id else math.inf)
            u = math.floor(min(spare, power * hours, r.need_kwh) * 1000 + 1e-6) / 1000
            if u < 0.001 or (not r.divisible and u < r.need_kwh - 1e-9):
                continue
            pairs[(v.vehicle_id, r.request_id)] = (u, travel, hours)
    return pairs


def _best_energy(inputs, chosen, pairs, weight, floor) -> float | None:
    """Best sum(w e) of an assignment (None if infeasible): closed form or scipy's LP."""
    requests = inputs.requests
    split = [(v, r) for v, r in chosen if requests[r].divisible]
    fixed = [(v, r) for v, r in chosen if not requests[r].divisible]
    if len({r for _, r in fixed}) < len(fixed) or {r for _, r in fixed} & {r for _, r in split}:
        return None  # an indivisible request gets one vehicle, in full
    for point_id, point in inputs.points.items():
        if sum(requests[r].point_id == point_id for _, r in chosen) > point.ports:
            return None
    base = sum(weight[r] * requests[r].need_kwh for _, r in fixed)
    critical_fixed = sum(
        requests[r].need_kwh for _, r in fixed if requests[r].priority == "critical"
    )
    a_ub, b_ub = [], []
    for r in {r for _, r in split}:
        a_ub.append([1.0 if rr == r else 0.0 for _, rr in split])
        b_ub.append(requests[r].need_kwh)
    for point_id, point in inputs.points.items():
        row = [
            1.0 / pairs[(v, r)][2] if requests[r].point_id == point_id else 0.0 for v, r in split
        ]
        rigid = sum(
            requests[r].need_kwh / pairs[(v, r)][2]
            for v, r in fixed
            if requests[r].point_id == point_id
        )
        if any(row) or rigid:
            a_ub.append(row)
            b_ub.append(point.max_kw - rigid)
    if floor is not None:
        a_ub.append([-1.0 if requests[r].priority == "critical" else 0.0 for _, r in split])
        b_ub.append(critical_fixed - floor)
    if any(b < -1e-9 for b, row in zip(b_ub, a_ub, strict=True) if not any(row)):
        return None
    if not split:
        return base
    result = linprog(
        c=[-weight[r] for _, r in split],
        A_ub=a_ub or None,
        b_ub=b_ub or None,
        bounds=[(0.0, pairs[p][0]) for p in split],
        method="highs",
    )
    if result.status != 0:
        return None
    return base - float(result.fun)


def brute_force(
    folder: Path, mode: str, epsilon: float, weight_of, floor=None
) -> tuple[float, float]:
    """Best objective over every assignment, and the critical energy it gives."""
    inputs = read_inputs(folder)
    pairs = _eligible(folder, mode)
    weight = {r: weight_of(inputs.requests[r]) for r in inputs.requests}
    options = {v: [None] + [r for (vv, r) in pairs if vv == v] for v in inputs.vehicles}
    best, best_critical = 0.0, 0.0
    for combo in itertools.product(*options.values()):
        chosen = [(v, r) for v, r in zip(options, combo, strict=True) if r is not None]
        if any(weight[r] == 0.0 for _, r in chosen):
            continue  # a trip worth nothing only costs travel
        energy = _best_energy(inputs, chosen, pairs, weight, floor)
        if energy is None:
            continue
        value = energy - epsilon * sum(pairs[p][1] for p in chosen)
        if value > best + 1e-9:
            best = value
            best_critical = energy if floor is None else math.nan
    return best, best_critical


SMALL = [(1, 3, 3), (2, 4, 3), (3, 3, 4), (4, 4, 4), (5, 2, 5), (6, 4, 3), (7, 4, 4), (8, 3, 5)]


@pytest.mark.parametrize(("seed", "n_vehicles", "n_requests"), SMALL)
def test_normal_mode_equals_brute_force(tmp_path, seed, n_vehicles, n_requests):
    folder = write_folder(tmp_path / "in", small_inputs(seed, n_vehicles, n_requests))
    run = solve_checked(folder, tmp_path / "out", Mode.NORMAL)
    expected, _ = brute_force(folder, "normal", EPSILON, lambda r: 1.0)
    assert run.summary.objective_kwh == pytest.approx(expected, abs=1e-6)
    assert run.summary.status == "optimal"


@pytest.mark.parametrize(("seed", "n_vehicles", "n_requests"), SMALL)
def test_emergency_mode_equals_lexicographic_brute_force(tmp_path, seed, n_vehicles, n_requests):
    folder = write_folder(tmp_path / "in", small_inputs(seed, n_vehicles, n_requests))
    run = solve_checked(folder, tmp_path / "out", Mode.EMERGENCY)
    critical = lambda r: 1.0 if r.priority == "critical" else 0.0  # noqa: E731
    _, most_critical = brute_force(folder, "emergency", EPSILON * 1e-6, critical)
    assert run.result.critical_floor_kwh == pytest.approx(most_critical, abs=1e-5)
    expected, _ = brute_force(
        folder, "emergency", EPSILON, lambda r: 1.0, floor=most_critical - 1e-3
    )
    assert run.summary.objective_kwh == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_cp_sat_agrees_with_highs(tmp_path, seed):
    folder = write_folder(tmp_path / "in", small_inputs(seed, 5, 6))
    for mode in Mode:
        highs = solve_checked(folder, tmp_path / f"h-{mode}", mode)
        cpsat = solve_checked(folder, tmp_path / f"c-{mode}", mode, backend=BackendName.CP_SAT)
        assert cpsat.summary.backend == "cp-sat"
        # CP-SAT states the model in Wh with rounded penalties and power coefficients.
        assert cpsat.summary.objective_kwh == pytest.approx(highs.summary.objective_kwh, abs=0.02)


# --- properties ------------------------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    n_vehicles=st.integers(1, 7),
    n_requests=st.integers(1, 9),
    with_points=st.booleans(),
)
def test_random_dispatches_are_feasible_and_emergency_serves_critical_first(
    tmp_path_factory, seed, n_vehicles, n_requests, with_points
):
    base = tmp_path_factory.mktemp("prop")
    folder = write_folder(
        base / "in", small_inputs(seed, n_vehicles, n_requests, with_points=with_points)
    )
    normal = solve_checked(folder, base / "normal", Mode.NORMAL)
    emergency = solve_checked(folder, base / "emergency", Mode.EMERGENCY)
    # Emergency mode has every normal-mode vehicle (and charging ones) for critical needs.
    assert emergency.summary.critical_served_wh >= normal.summary.critical_served_wh - 5
    assert normal.summary.objective_kwh <= normal.summary.bound_kwh + 1e-6
    for run in (normal, emergency):
        rows = read_request_rows(run.out_dir)
        assert all((r.status.value == "served") == (r.reason.value == "") for r in rows)


# --- the lexicographic rule ------------------------------------------------------------


def _critical_only(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("market"))
    lines = (folder / "requests.csv").read_text().splitlines()
    header = lines[0].split(",")
    priority = header.index("priority")
    kept = [lines[0]] + [line for line in lines[1:] if line.split(",")[priority] == "critical"]
    (target / "requests.csv").write_text("\n".join(kept) + "\n")
    return target


@pytest.mark.parametrize("seed", [21, 22, 23, 24])
def test_no_normal_request_takes_a_vehicle_a_critical_one_could_use(tmp_path, seed):
    folder = write_folder(tmp_path / "in", small_inputs(seed, 6, 8))
    if not any(r.priority is Priority.CRITICAL for r in load_mobility(folder).requests):
        pytest.skip("no critical request drawn")
    full = solve_checked(folder, tmp_path / "full", Mode.EMERGENCY)
    alone = solve_checked(
        _critical_only(folder, tmp_path / "crit"), tmp_path / "alone", Mode.EMERGENCY
    )
    assert full.summary.critical_served_wh == pytest.approx(alone.summary.critical_served_wh, abs=3)


def _without_grid(folder: Path, target: Path) -> Path:
    """The folder without its grid check (whose point limits depend on all injections)."""
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("market"))
    text = (target / "mobility.yaml").read_text()
    (target / "mobility.yaml").write_text(text[: text.index("grid:")])
    lines = (target / "points.csv").read_text().splitlines()
    rows = [line.split(",") for line in lines]
    for cells in rows[1:]:
        cells[2] = ""
    (target / "points.csv").write_text("\n".join(",".join(c) for c in rows) + "\n")
    return target


def test_storm_town_serves_critical_as_if_alone(tmp_path):
    storm = _without_grid(STORM, tmp_path / "storm")
    full = solve_checked(storm, tmp_path / "full", Mode.EMERGENCY)
    alone = solve_checked(
        _critical_only(storm, tmp_path / "crit"), tmp_path / "alone", Mode.EMERGENCY
    )
    assert full.summary.critical_served_wh == pytest.approx(alone.summary.critical_served_wh, abs=3)
    normal = solve_checked(storm, tmp_path / "normal", Mode.NORMAL)
    assert full.summary.critical_served_wh > normal.summary.critical_served_wh


# --- large instances: pricing, its bound and its fixing ---------------------------------


def test_priced_solve_is_bounded_by_and_bounds_the_exact_optimum(tmp_path, monkeypatch):
    inputs = small_inputs(31, 14, 30, side=5)
    exact = solve_mobility(inputs, Mode.NORMAL, settings_for(inputs, mip_gap=0.0))
    assert exact.summary.status == "optimal"
    optimum = exact.summary.objective_kwh
    monkeypatch.setattr(solve_module, "FULL_MODEL_PAIRS", 10)
    monkeypatch.setattr(solve_module, "EXACT_MODEL_PAIRS", 0)
    priced = solve_mobility(inputs, Mode.NORMAL, settings_for(inputs, mip_gap=0.0))
    assert priced.result.stages[0].method == "priced"
    assert priced.summary.objective_kwh <= optimum + 1e-6
    assert priced.summary.bound_kwh >= optimum - 1e-6
    monkeypatch.setattr(solve_module, "EXACT_MODEL_PAIRS", 10**9)
    fixed = solve_mobility(inputs, Mode.NORMAL, settings_for(inputs, mip_gap=0.0))
    assert fixed.result.stages[0].method == "priced exact"
    assert fixed.summary.objective_kwh == pytest.approx(optimum, abs=1e-6)
    assert fixed.summary.bound_kwh >= optimum - 1e-6


def test_priced_emergency_keeps_the_critical_floor(tmp_path, monkeypatch):
    inputs = small_inputs(32, 14, 30, side=5)
    exact = solve_mobility(inputs, Mode.EMERGENCY, settings_for(inputs, mip_gap=0.0))
    monkeypatch.setattr(solve_module, "FULL_MODEL_PAIRS", 10)
    priced = solve_mobility(inputs, Mode.EMERGENCY, settings_for(inputs, mip_gap=0.0))
    floor = priced.result.critical_floor_kwh
    assert floor == pytest.approx(exact.result.critical_floor_kwh, abs=1e-3)
    assert priced.summary.critical_served_wh >= exact.summary.critical_served_wh - 5
    assert priced.summary.bound_kwh >= exact.summary.objective_kwh - 1e-6


def test_priced_lp_equals_the_lp_over_every_pair():
    # Column generation states a divisible pair by its kWh alone (y = x / u): its LP
    # must be the full model's LP relaxation, with and without the critical floor.
    inputs = small_inputs(33, 14, 30, side=5)
    roads = RoadNetwork(inputs.roads, inputs.positions)
    fleet = fleet_arrays(inputs, roads, emergency=True)
    pairs = eligible_pairs(fleet, roads)
    ones = np.ones(fleet.n_requests)
    for objective in (Objective(ones, EPSILON), Objective(ones, EPSILON, floor_kwh=30.0)):
        priced = priced_lp(fleet, pairs, objective, np.zeros(0, dtype=np.int64), math.inf)
        assert priced is not None and priced.converged
        full = run_highs(
            build_model(fleet, pairs, objective).arrays,
            SolveOptions(time_limit_s=20.0),
            20.0,
            relax=True,
        )
        assert full.bound_eur is not None
        assert priced.lp_kwh == pytest.approx(full.bound_eur, abs=1e-6)
        assert priced.bound_kwh >= full.bound_eur - 1e-6
        assert priced.bound_kwh == pytest.approx(full.bound_eur, abs=1e-4)


def test_reduced_values_are_each_pairs_best_lagrangian_value():
    # Random non-negative duals: r1 of every pair, computed pair by pair from the
    # formula of mobility/pricing.py's docstring, points and floor included.
    inputs = small_inputs(36, 10, 20, side=4)
    roads = RoadNetwork(inputs.roads, inputs.positions)
    fleet = fleet_arrays(inputs, roads, emergency=True)
    pairs = eligible_pairs(fleet, roads)
    rng = np.random.default_rng(0)
    duals = Duals(
        vehicle=rng.uniform(0, 5, fleet.n_vehicles),
        request=rng.uniform(0, 1.5, fleet.n_requests),
        port=rng.uniform(0, 3, fleet.n_points),
        power=rng.uniform(0, 2, fleet.n_points),
        floor=0.7,
    )
    objective = Objective(np.ones(fleet.n_requests), EPSILON, floor_kwh=10.0)
    reduced = reduced_values(fleet, pairs, objective, duals)
    for p in range(pairs.size):
        v, i = int(pairs.vehicle[p]), int(pairs.request[p])
        q = int(fleet.request_point[i])
        start = max(pairs.travel_min[p], fleet.earliest_min[i])
        hours = (fleet.latest_min[i] - start) / 60.0
        a = 1.0 + 0.7 * fleet.critical[i] - (duals.power[q] / hours if q >= 0 else 0.0)
        cost = EPSILON * pairs.travel_min[p] + duals.vehicle[v] + (duals.port[q] if q >= 0 else 0)
        if fleet.divisible[i]:
            expected = max(a - duals.request[i], 0.0) * pairs.capacity_kwh[p] - cost
        else:
            expected = a * fleet.need_kwh[i] - cost - duals.request[i]
        assert reduced[p] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", [34, 35])
def test_priced_emergency_search_keeps_the_floor_and_brackets_the_optimum(
    tmp_path, monkeypatch, seed
):
    # Both stages priced: the second one runs the neighbourhood search. Its dispatch
    # keeps stage 1's floor, the independent checker accepts it, and the lexicographic
    # optimum (the full MILP's, proven) lies between its value and its bound.
    folder = write_folder(tmp_path / "in", small_inputs(seed, 14, 30, side=5))
    exact = solve_checked(folder, tmp_path / "exact", Mode.EMERGENCY)
    assert exact.summary.status == "optimal"
    monkeypatch.setattr(solve_module, "FULL_MODEL_PAIRS", 10)
    monkeypatch.setattr(solve_module, "EXACT_MODEL_PAIRS", 0)
    priced = solve_checked(folder, tmp_path / "priced", Mode.EMERGENCY, time_limit_s=4.0)
    first, second = priced.result.stages
    assert second.method == "priced"
    assert second.solver_status.startswith("neighbourhood search")
    floor = priced.result.critical_floor_kwh
    assert floor is not None
    assert critical_kwh(priced.result.fleet, priced.result.pairs, priced.result.dispatch) >= (
        floor - 1e-3
    )
    assert first.objective_kwh <= exact.result.stages[0].bound_kwh + 1e-6
    assert first.bound_kwh >= exact.result.stages[0].objective_kwh - 1e-6
    optimum = exact.summary.objective_kwh
    if floor >= exact.result.critical_floor_kwh - 1e-3:
        # Stage 1 found the critical optimum: the two stage-2 problems are the same.
        assert second.objective_kwh <= optimum + 1e-6
    assert second.bound_kwh >= optimum - 1e-6
    assert priced.result.gap == max(first.gap, second.gap)


def test_emergency_dispatch_keeps_the_time_limit():
    # 300 x 1,000: stage 1 in one MILP, stage 2 priced and searched until the deadline.
    inputs = synthetic_inputs(300, 1000, seed=1)
    roads = RoadNetwork(inputs.roads, inputs.positions)
    limit_s = 4.0
    began = time.perf_counter()
    result = run_dispatch(inputs, roads, Mode.EMERGENCY, SolveSettings(time_limit_s=limit_s))
    elapsed_s = time.perf_counter() - began
    assert result.stages[1].method == "priced"
    # Slack for a loaded CI machine, below what a stage 2 given the whole limit again
    # after stage 1's share (1.25 x the limit) would take.
    assert elapsed_s <= limit_s + 0.75
    assert result.gap == max(stage.gap for stage in result.stages)
    assert all(stage.bound_kwh >= stage.objective_kwh for stage in result.stages)


# --- reasons ---------------------------------------------------------------------------


def test_unserved_requests_say_why(tmp_path):
    town = town_grid(3, 3, block_km=1.0, seed=0)
    ev = Vehicle(
        "ev",
        VehicleKind.EV,
        "x00-00",
        VehicleState.AVAILABLE,
        40_000,
        10_000,
        11.0,
        True,
        0.2,
        "ev",
        2,
    )
    far = "x02-02"
    requests = (
        Request("late", far, Carrier.ELECTRICITY, 5_000, Priority.NORMAL, 0.0, 0.5, True, None, 2),
        Request(
            "huge", far, Carrier.ELECTRICITY, 500_000, Priority.NORMAL, 0.0, 200.0, False, None, 3
        ),
        Request("diesel", far, Carrier.FUEL, 50_000, Priority.CRITICAL, 0.0, 200.0, True, None, 4),
        Request(
            "first", far, Carrier.ELECTRICITY, 20_000, Priority.CRITICAL, 0.0, 200.0, True, None, 5
        ),
        Request(
            "second", far, Carrier.ELECTRICITY, 20_000, Priority.NORMAL, 0.0, 200.0, True, None, 6
        ),
    )
    inputs = MobilityInputs(
        Path("."), MobilitySpec(), "why", (ev,), (), requests, town.roads, town.positions, None, ()
    )
    folder = write_folder(tmp_path / "in", inputs)
    solve_checked(folder, tmp_path / "out", Mode.EMERGENCY)
    reason = {r.request_id: r.reason.value for r in read_request_rows(tmp_path / "out")}
    assert reason == {
        "late": "time_window",
        "huge": "capacity",
        "diesel": "no_vehicle",
        "first": "",
        "second": "vehicles_used_by_critical",
    }
    solve_checked(folder, tmp_path / "normal", Mode.NORMAL)
    normal = {r.request_id: r.reason.value for r in read_request_rows(tmp_path / "normal")}
    assert "vehicles_used_elsewhere" in {normal["first"], normal["second"]}


def test_a_window_too_short_for_1_wh_says_so(tmp_path):
    # The vehicle is there already, but 11 kW for 0.006 s is 0.02 Wh: a divisible need's
    # capacity reason, which must not call the request indivisible.
    town = town_grid(2, 2, block_km=1.0, seed=0)
    ev = Vehicle(
        "ev", VehicleKind.EV, "x00-00", VehicleState.AVAILABLE, 40_000, 10_000, 11.0, True, 0.2,
        "ev", 2,
    )  # fmt: skip
    blink = Request(
        "blink", "x00-00", Carrier.ELECTRICITY, 5_000, Priority.NORMAL, 0.0, 1e-4, True, None, 2
    )
    inputs = MobilityInputs(
        Path("."), MobilitySpec(), "blink", (ev,), (), (blink,), town.roads, town.positions,
        None, (),
    )  # fmt: skip
    folder = write_folder(tmp_path / "in", inputs)
    solve_checked(folder, tmp_path / "out", Mode.NORMAL)
    (row,) = read_request_rows(tmp_path / "out")
    assert row.reason.value == "capacity"
    assert "1 Wh" in row.detail and "indivisible" not in row.detail


def test_the_grid_loop_cuts_sessions_when_the_time_limit_leaves_no_resolve(tmp_path):
    # A limit so short that no re-solve fits: the culprit points' sessions are cut from
    # the first dispatch as it is; the result is still secure, checked, and not proven.
    run = solve_checked(STORM, tmp_path / "out", Mode.EMERGENCY, time_limit_s=0.05)
    grid = run.summary.grid
    assert grid.checked and grid.secure
    assert grid.cut_points and set(grid.cut_points) <= set(grid.capped_points)
    assert run.summary.status == "feasible"
    assert run.summary.bound_kwh >= run.summary.objective_kwh
    sessions = {s.point_id for s in run.plan.sessions}
    assert not sessions & set(grid.cut_points)


def test_storm_town_reasons_and_grid_check(tmp_path):
    run = solve_checked(STORM, tmp_path / "out", Mode.EMERGENCY)
    reason = {r.request_id: r.reason.value for r in read_request_rows(tmp_path / "out")}
    assert reason["dairy-farm"] == "no_vehicle_in_range"  # the flood cut it off
    assert reason["sewage-pumps"] == "grid_limit"
    # 600 l of diesel in full: the solver's 5,975,999.9999955 Wh is 5,976,000 Wh.
    hospital = next(
        r for r in read_request_rows(tmp_path / "out") if r.request_id == "hospital-generator"
    )
    assert hospital.served_wh == hospital.need_wh == 5_976_000
    grid = run.summary.grid
    assert grid.checked and grid.secure and grid.capped_points == ["P-depot"]
    # Our own power flow with the final injections: voltages within 1.05 pu, no line over.
    import pandapower as pp

    net = pn.create_cigre_network_lv()
    net.load["scaling"] = 0.6
    for bus, kw in grid.injection_kw_by_bus.items():
        pp.create_sgen(net, int(bus), p_mw=kw / 1000.0, q_mvar=0.0)
    pp.runpp(net)
    assert net.res_bus.vm_pu.max() <= 1.05 + 1e-6
    assert net.res_line.loading_percent.max() <= 100.0


def test_equally_fast_routes_do_not_depend_on_the_order_of_roads(tmp_path):
    # Uniform blocks: many routes of the same minutes; the one chosen is the graph's.
    town = town_grid(5, 5, block_km=1.0, seed=0)
    uniform = [dataclasses.replace(r, km=1.0, minutes=2.0) for r in town.roads]
    routes = set()
    for seed in range(5):
        rows = list(uniform)
        random.Random(seed).shuffle(rows)
        roads = RoadNetwork(rows)
        path = roads.route(roads.index["x00-00"], roads.index["x04-04"])
        routes.add(tuple(roads.node_ids[n] for n in path))
    assert len(routes) == 1
    # The whole command: roads.csv and nodes.csv shuffled, the same deliveries.
    shuffled = shutil.copytree(STORM, tmp_path / "shuffled")
    for name in ("roads.csv", "nodes.csv"):
        header, *lines = (STORM / name).read_text().splitlines()
        random.Random(1).shuffle(lines)
        (shuffled / name).write_text("\n".join([header, *lines]) + "\n")
    for folder, out in ((STORM, "a"), (shuffled, "b")):
        solve_checked(folder, tmp_path / out, Mode.EMERGENCY)
    for name in ("deliveries.csv", "requests.csv", "itineraries.csv", "sessions.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


# --- the nearest-supply query ----------------------------------------------------------


def test_nearest_supply_matches_networkx():
    inputs = load_mobility(STORM)
    index = SupplyIndex(inputs)
    found = index.query("x05-05", 20.0, k=4)
    graph = read_inputs(STORM).graph()
    lengths = nx.single_source_dijkstra_path_length(graph.reverse(), "x05-05", weight="minutes")
    expected = []
    for v in inputs.vehicles:
        if (
            v.state.value == "out_of_service"
            or v.kind is VehicleKind.FUEL_TRUCK
            or not v.can_supply
        ):
            continue
        if v.node not in lengths:
            continue
        path = nx.shortest_path(graph, v.node, "x05-05", weight="minutes")
        km = sum(graph[a][b]["km"] for a, b in itertools.pairwise(path))
        if (v.residual_wh - v.reserve_wh) / 1000 - km * v.consumption_kwh_per_km >= 20.0:
            expected.append((lengths[v.node], v.vehicle_id))
    assert [s.vehicle_id for s in found] == [vid for _, vid in sorted(expected)[:4]]
    assert [s.eta_min for s in found] == pytest.approx([t for t, _ in sorted(expected)[:4]])
    assert all(s.route[0] == s.node and s.route[-1] == "x05-05" for s in found)
    fuel = index.query(index.node_near(9.0, 48.5), carrier=Carrier.FUEL)
    assert {s.kind for s in fuel} == {"fuel_truck"}


def test_nearest_k_is_the_start_of_the_whole_ranking_among_ties():
    # Four EVs parked at the depot node (ETA 0): argpartition picked any of them for k=1.
    index = SupplyIndex(load_mobility(STORM))
    whole = [s.vehicle_id for s in index.query("x02-10", k=100)]
    assert len(whole) >= 4
    for k in range(1, len(whole) + 1):
        assert [s.vehicle_id for s in index.query("x02-10", k=k)] == whole[:k]


# --- the command line ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["normal", "emergency"])
def test_cli_solves_the_storm_in_both_modes_and_draws_the_map(tmp_path, mode):
    out = tmp_path / mode
    result = runner.invoke(
        app, ["mobility", str(STORM), "--mode", mode, "-o", str(out), "--report", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["mode"] == mode and summary["status"] == "optimal"
    assert check_output(STORM, out, mode) == []
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "Grid check" in page
    features = read_map(out)["features"]
    assert {f["properties"]["feature"] for f in features} >= {
        "vehicle",
        "request",
        "route",
        "point",
        "road",
    }
    assert len(read_deliveries(out)) == summary["n_sent"]
    assert all(f.left_kwh >= f.reserve_wh / 1000 - 1e-6 for f in read_fleet(out) if f.sent)
    again = runner.invoke(app, ["report", str(out)])
    assert again.exit_code == 0 and "mobility report" in again.output


def test_cli_nearest(tmp_path):
    result = runner.invoke(
        app, ["mobility", "nearest", str(STORM), "--node", "x05-05", "-k", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout[: result.stdout.rindex("]") + 1])
    assert len(found) == 3 and found[0]["eta_min"] <= found[-1]["eta_min"]
    bad = runner.invoke(app, ["mobility", "nearest", str(STORM), "--node", "nowhere"])
    assert bad.exit_code == 2 and "not in the road graph" in bad.output


# --- bad input -------------------------------------------------------------------------


def _edit_cell(path: Path, row: int, column: str, value: str) -> None:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row - 1].split(",")
    cells[header.index(column)] = value
    lines[row - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


BAD = [
    ("vehicles.csv", 3, "kind", "hovercraft", "vehicles.csv, row 3, field 'kind'"),
    ("vehicles.csv", 2, "residual_kwh", "lots", "vehicles.csv, row 2, field 'residual_kwh'"),
    ("vehicles.csv", 3, "vehicle_id", "ev01", "vehicles.csv, row 3, field 'vehicle_id'"),
    ("vehicles.csv", 2, "residual_l", "30", "vehicles.csv, row 2, field 'residual_l'"),
    ("vehicles.csv", 4, "node", "x99-99", "vehicles.csv, row 4, field 'node'"),
    ("requests.csv", 5, "latest_min", "0", "requests.csv, row 5, field 'latest_min'"),
    ("requests.csv", 2, "need_kwh", "10", "requests.csv, row 2, field 'need_l'"),
    ("requests.csv", 6, "point_id", "P-nowhere", "requests.csv, row 6, field 'point_id'"),
    ("requests.csv", 7, "priority", "urgent", "requests.csv, row 7, field 'priority'"),
    ("roads.csv", 2, "km", "-1", "roads.csv, row 2, field 'km'"),
    ("points.csv", 2, "bus", "999", "points.csv, row 2, field 'bus'"),
    ("points.csv", 3, "ports", "0", "points.csv, row 3, field 'ports'"),
    ("nodes.csv", 2, "lat", "91", "nodes.csv, row 2, field 'lat'"),
]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def storm_result(tmp_path_factory):
    base = tmp_path_factory.mktemp("storm")
    folder = base / "in"
    shutil.copytree(STORM, folder, ignore=shutil.ignore_patterns("market"))
    out = base / "out"
    assert runner.invoke(app, ["mobility", str(folder), "-o", str(out)]).exit_code == 0
    return folder, out


@pytest.mark.parametrize(("name", "row", "column", "value", "where"), BAD)
def test_bad_input_names_file_row_and_field_and_writes_nothing(
    tmp_path, storm_result, name, row, column, value, where
):
    source, out = storm_result
    folder = tmp_path / "in"
    shutil.copytree(source, folder)
    _edit_cell(folder / name, row, column, value)
    before = _digest(out)
    for target in (out, tmp_path / "new"):
        result = runner.invoke(app, ["mobility", str(folder), "-o", str(target)])
        assert result.exit_code == 2, result.output
        assert where in result.output, result.output
    assert _digest(out) == before
    assert not (tmp_path / "new").exists()


def test_bad_yaml_and_bad_parking(tmp_path, storm_result):
    source, _ = storm_result
    folder = tmp_path / "in"
    shutil.copytree(source, folder)
    (folder / "mobility.yaml").write_text((source / "mobility.yaml").read_text() + "speed: 9\n")
    result = runner.invoke(app, ["mobility", str(folder), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "mobility.yaml, field 'speed': unknown key" in result.output
    shutil.copy(source / "mobility.yaml", folder / "mobility.yaml")
    _edit_cell(folder / "parking.csv", 2, "vehicle_id", "ev14")  # not bidirectional
    result = runner.invoke(
        app,
        [
            "mobility",
            "v2g-offers",
            str(folder),
            "--scenario",
            str(STORM / "market"),
            "-o",
            str(tmp_path / "v"),
        ],
    )
    assert result.exit_code == 2 and "parking.csv, row 2, field 'vehicle_id'" in result.output
    assert not (tmp_path / "v").exists()


# --- V2G in the market -----------------------------------------------------------------


def test_v2g_offers_clear_settle_and_credit(tmp_path):
    scenario, cleared = tmp_path / "scenario", tmp_path / "cleared"
    result = runner.invoke(
        app,
        [
            "mobility",
            "v2g-offers",
            str(STORM),
            "--scenario",
            str(STORM / "market"),
            "-o",
            str(scenario),
        ],
    )
    assert result.exit_code == 0, result.output
    offers = read_v2g_offers(scenario / "v2g_offers.csv")
    inputs = load_mobility(STORM)
    vehicles = {v.vehicle_id: v for v in inputs.vehicles}
    parking = {
        row.split(",")[0]: row.split(",")
        for row in (STORM / "parking.csv").read_text().splitlines()[1:]
    }
    for vehicle_id in {o.vehicle_id for o in offers}:
        v = vehicles[vehicle_id]
        cap = spare_wh(v.residual_wh, v.reserve_wh, round(float(parking[vehicle_id][4]) * 1000))
        assert (
            sum(round(o.quantity_kwh * 1000) for o in offers if o.vehicle_id == vehicle_id) <= cap
        )
    result = runner.invoke(app, ["clear", str(scenario), "-o", str(cleared)])
    assert result.exit_code == 0, result.output
    trades = [line.split(",") for line in (cleared / "trades.csv").read_text().splitlines()[1:]]
    sold = [t for t in trades if t[2].startswith("v2g-")]
    assert sold, "no V2G offer cleared"
    # Whatever cleared stays within each vehicle's cap; the grid check was on and holds.
    summary = json.loads((cleared / "summary.json").read_text())
    assert summary["secure"] is True and summary["ac_power_flows"] > 0
    assert insecure_slots(pn.create_cigre_network_lv(), scenario, cleared) == set()
    # Settlement takes them like any trade: its pre-chain conversion plans them (no
    # chain needed here; tests/test_v2g_settle_e2e.py settles them on anvil).
    from gridmatch.settlement.round_data import read_round

    planned = read_round(cleared).trades
    on_chain = {t.sell.order_id for t in planned}
    assert {t[2] for t in sold} <= on_chain | {
        u.sell_order_id for u in read_round(cleared).unsettled
    }
    assert any(order_id.startswith("v2g-") for order_id in on_chain)
    credit_csv = tmp_path / "credit.csv"
    result = runner.invoke(app, ["mobility", "v2g-credit", str(cleared), "-o", str(credit_csv)])
    assert result.exit_code == 0, result.output
    rows = [line.split(",") for line in credit_csv.read_text().splitlines()[1:]]
    credit = {r[0]: float(r[5]) for r in rows}
    for vehicle_id in credit:
        mine = [t for t in sold if t[2].startswith(f"v2g-{vehicle_id}-")]
        assert credit[vehicle_id] == pytest.approx(
            sum(float(t[7]) * float(t[8]) for t in mine), abs=1e-6
        )
    # Written again in place: fine. Over the result's own tables: refused, result intact.
    again = runner.invoke(app, ["mobility", "v2g-credit", str(cleared), "-o", str(credit_csv)])
    assert again.exit_code == 0, again.output
    for name in ("trades.csv", "manifest.json"):
        before = (cleared / name).read_bytes()
        over = runner.invoke(
            app, ["mobility", "v2g-credit", str(cleared), "-o", str(cleared / name)]
        )
        assert over.exit_code == 2 and "not a v2g credit table" in over.output
        assert (cleared / name).read_bytes() == before


def test_v2g_offers_refuse_to_overwrite_the_scenario(tmp_path):
    scenario = tmp_path / "market"
    shutil.copytree(STORM / "market", scenario)
    result = runner.invoke(
        app,
        ["mobility", "v2g-offers", str(STORM), "--scenario", str(scenario), "-o", str(scenario)],
    )
    assert result.exit_code == 2 and "a folder of its own" in result.output


def test_v2g_offers_of_a_vehicle_parked_twice_keep_every_departure_charge(tmp_path):
    # ev10 holds 55 kWh, reserve 12: parked 16-18 (35 kWh wanted at departure), then
    # 19-23 (20 kWh). Each stay's spare was counted afresh: 55 kWh offered, down to 0.
    folder = shutil.copytree(STORM, tmp_path / "storm", ignore=shutil.ignore_patterns("market"))
    (folder / "parking.csv").write_text(
        "vehicle_id,point_id,arrive_slot,depart_slot,departure_kwh,limit_price_eur_per_kwh\n"
        "ev10,P-depot,19,23,20.000,0.12\n"
        "ev10,P-depot,16,18,35.000,0.12\n"
    )
    out = tmp_path / "offers"
    result = runner.invoke(
        app,
        [
            "mobility",
            "v2g-offers",
            str(folder),
            "--scenario",
            str(STORM / "market"),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    offers = read_v2g_offers(out / "v2g_offers.csv")
    first = sum(o.quantity_kwh for o in offers if o.slot < 18)
    assert first <= 55.0 - 35.0 + 1e-9
    assert sum(o.quantity_kwh for o in offers) <= 55.0 - 20.0 + 1e-9


def test_summary_reads_back(tmp_path):
    run = solve_checked(STORM, tmp_path / "out", Mode.NORMAL)
    again = read_mobility_summary(tmp_path / "out")
    assert again == run.summary


def test_a_trip_that_delivers_nothing_is_not_sent() -> None:
    # A vehicle at the request's node travels 0 minutes: a solver may choose its pair
    # with no energy on it (it was written as a 0 Wh delivery, the vehicle "sent").
    from gridmatch.mobility.dispatch import delivering
    from gridmatch.mobility.heuristic import Dispatch

    dispatch = Dispatch(np.array([3, 5, 8]), np.array([2.5, 0.0, 0.0004]))
    kept = delivering(dispatch)
    assert kept.chosen.tolist() == [3] and kept.energy_kwh.tolist() == [2.5]
