"""Stage 2's whole-trip bound and its MILP over the LP's pairs (mobility/request_bound.py).

The bound must hold for every dispatch at any non-negative multipliers, and be at most
the LP's at the LP's own; its knapsack must be the optimum of the rounded problem
(brute force over every subset). The MILP over the LP's pairs must keep every row and
never lose against its start. The end-to-end run through the independent checker,
bracketing the proven lexicographic optimum, is
``test_priced_emergency_search_keeps_the_floor_and_brackets_the_optimum`` in
``test_mobility.py`` (both new steps run there).
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest

from gridmatch.matching.backends.highs_runner import run_highs
from gridmatch.matching.solution import SolveOptions
from gridmatch.mobility.example import synthetic_inputs
from gridmatch.mobility.heuristic import critical_kwh, heuristic_dispatch, objective_value
from gridmatch.mobility.model import Objective, build_model
from gridmatch.mobility.pairs import eligible_pairs, fleet_arrays
from gridmatch.mobility.pricing import Duals, priced_lp, reduced_values
from gridmatch.mobility.request_bound import knapsack_over_trips, whole_trip_bound_kwh
from gridmatch.mobility.roads import RoadNetwork
from gridmatch.mobility.solve import SolveSettings, check_rows, support_search


def _brute_force(capacity, cost, value, need) -> float:
    best = 0.0
    for size in range(1, capacity.size + 1):
        for subset in itertools.combinations(range(capacity.size), size):
            picked = list(subset)
            worth = value * min(need, capacity[picked].sum()) - cost[picked].sum()
            best = max(best, worth)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_the_knapsack_is_the_rounded_problems_optimum(seed) -> None:
    rng = np.random.default_rng(seed)
    levels = 20
    groups = []
    for _ in range(8):
        m = int(rng.integers(1, 8))
        need = float(rng.uniform(5, 300))
        capacity = rng.uniform(0.01, 1.0, m) * need
        cost = rng.uniform(0, 2, m) * capacity
        groups.append((capacity, cost, float(rng.uniform(0.5, 3)), need))
    starts = np.r_[0, np.cumsum([g[0].size for g in groups])].astype(np.int64)
    out = knapsack_over_trips(
        starts,
        np.concatenate([g[0] for g in groups]),
        np.concatenate([g[1] for g in groups]),
        np.array([g[2] for g in groups]),
        np.array([g[3] for g in groups]),
        levels,
    )
    for k, (capacity, cost, value, need) in enumerate(groups):
        grid = need / levels
        rounded = grid * np.ceil(capacity / grid - 1e-12)
        rounded = np.where(rounded < capacity, rounded + grid, rounded)
        # Exactly the rounded problem's optimum, so at least the true one's.
        assert out[k] == pytest.approx(_brute_force(rounded, cost, value, need), abs=1e-9)
        assert out[k] >= _brute_force(capacity, cost, value, need) - 1e-9


def _stage_two(seed: int):
    inputs = synthetic_inputs(12, 30, seed=seed)
    roads = RoadNetwork(inputs.roads, inputs.positions)
    fleet = fleet_arrays(inputs, roads, emergency=True)
    pairs = eligible_pairs(fleet, roads)
    penalty = inputs.spec.travel_penalty_kwh_per_min
    ones = np.ones(fleet.n_requests)
    critical_first = Objective(ones + 100.0 * fleet.critical, penalty)
    start = heuristic_dispatch(fleet, pairs, critical_first)
    objective = Objective(ones, penalty, floor_kwh=critical_kwh(fleet, pairs, start))
    model = build_model(fleet, pairs, objective)
    exact = run_highs(model.arrays, SolveOptions(time_limit_s=30.0, mip_gap=0.0), 30.0, relax=False)
    assert exact.proven_optimal and exact.col_values is not None
    priced = priced_lp(fleet, pairs, objective, start.chosen, math.inf)
    assert priced is not None and priced.converged
    optimum = float(model.arrays.col_cost @ exact.col_values)
    return fleet, pairs, objective, start, optimum, priced


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_the_whole_trip_bound_bounds_the_optimum_at_any_multipliers(seed) -> None:
    fleet, pairs, objective, _, optimum, priced = _stage_two(seed)
    at_lp = whole_trip_bound_kwh(fleet, pairs, objective, priced.duals, priced.reduced, math.inf)
    assert optimum - 1e-6 <= at_lp <= priced.last_bound_kwh + 1e-6
    rng = np.random.default_rng(seed)
    for _ in range(5):
        duals = Duals(
            vehicle=priced.duals.vehicle * rng.uniform(0, 2, fleet.n_vehicles),
            request=priced.duals.request * rng.uniform(0, 2, fleet.n_requests),
            port=rng.uniform(0, 3, fleet.n_points),
            power=rng.uniform(0, 2, fleet.n_points),
            floor=priced.duals.floor * float(rng.uniform(0, 2)),
        )
        reduced = reduced_values(fleet, pairs, objective, duals)
        assert whole_trip_bound_kwh(fleet, pairs, objective, duals, reduced, math.inf) >= (
            optimum - 1e-6
        )


def test_the_whole_trip_bound_is_below_the_lp_where_trips_are_split() -> None:
    # Not a mechanism that never bites: on some of these instances the LP splits trips
    # and whole trips cost it.
    tighter = 0
    for seed in (3, 4, 5, 6):
        fleet, pairs, objective, _, _, priced = _stage_two(seed)
        bound = whole_trip_bound_kwh(
            fleet, pairs, objective, priced.duals, priced.reduced, math.inf
        )
        tighter += bound < priced.last_bound_kwh - 1e-3
    assert tighter >= 1


def test_the_whole_trip_bound_gives_up_without_time() -> None:
    fleet, pairs, objective, _, _, priced = _stage_two(3)
    bound = whole_trip_bound_kwh(fleet, pairs, objective, priced.duals, priced.reduced, 0.0)
    assert bound == math.inf


@pytest.mark.parametrize("seed", [3, 5])
def test_the_milp_over_the_lps_pairs_keeps_every_row_and_its_start(seed) -> None:
    fleet, pairs, objective, start, optimum, priced = _stage_two(seed)
    found = support_search(
        fleet, pairs, objective, SolveSettings(), priced, start, time.perf_counter() + 20.0
    )
    check_rows(fleet, pairs, objective, found)
    value = objective_value(fleet, pairs, objective, found)
    assert objective_value(fleet, pairs, objective, start) - 1e-9 <= value <= optimum + 1e-6
