"""The compiled and vectorised kernels of large dispatches give what the old code gave.

Each kernel replaced a numpy or Python version that was too slow on the largest
dispatches the input allows (10,000 vehicles x 5,000 requests, 26.7 M eligible pairs).
The old versions are kept here, verbatim but for names, as the references, and the new
ones must agree with them on small random instances (of every kind the generator
makes: fuel, points, indivisible requests, unreachable nodes, windows).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gridmatch.mobility.example import synthetic_inputs
from gridmatch.mobility.pairs import (
    Fleet,
    Pairs,
    Reach,
    eligible_pairs,
    fleet_arrays,
)
from gridmatch.mobility.roads import RoadNetwork
from gridmatch.units import MINUTES_PER_HOUR, WH_FLOAT_SLACK, WH_PER_KWH

_CHUNK_CELLS = 2_000_000


def _old_eligible_pairs(fleet: Fleet, roads: RoadNetwork) -> Pairs:
    """``pairs.eligible_pairs`` before its numba kernel (numpy per chunk of vehicles)."""
    n_requests = fleet.n_requests
    reach = np.zeros(n_requests, dtype=np.int8)
    best_arrival = np.full(n_requests, np.inf)
    best_capacity = np.zeros(n_requests)
    usable = fleet.dispatchable & (fleet.spare0_kwh * WH_PER_KWH >= 1.0 - WH_FLOAT_SLACK)
    for fuel in (False, True):
        if usable[fleet.vehicle_fuel == fuel].any():
            reach[fleet.request_fuel == fuel] = Reach.OUT_OF_RANGE
    candidates = np.nonzero(usable)[0]
    point_kw = np.where(
        fleet.request_point >= 0,
        fleet.point_kw[np.maximum(fleet.request_point, 0)] if fleet.n_points else np.inf,
        np.inf,
    )
    parts = []
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


def _instance(n_vehicles: int, n_requests: int, seed: int, *, emergency: bool = False):
    inputs = synthetic_inputs(n_vehicles, n_requests, seed=seed, fuel_share=0.2)
    roads = RoadNetwork(inputs.roads, inputs.positions)
    return fleet_arrays(inputs, roads, emergency=emergency), roads


def _assert_same_pairs(new: Pairs, old: Pairs) -> None:
    for name in (
        "vehicle",
        "request",
        "travel_min",
        "km",
        "capacity_kwh",
        "reach",
        "best_arrival_min",
        "best_capacity_kwh",
    ):
        got, want = getattr(new, name), getattr(old, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("seed", range(6))
def test_eligible_pairs_match_the_numpy_version(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_vehicles, n_requests = int(rng.integers(1, 120)), int(rng.integers(1, 300))
    fleet, roads = _instance(n_vehicles, n_requests, seed, emergency=bool(seed % 2))
    new = eligible_pairs(fleet, roads)
    assert new.size > 0 or seed > 0
    _assert_same_pairs(new, _old_eligible_pairs(fleet, roads))


def test_eligible_pairs_match_over_several_chunks(monkeypatch) -> None:
    from gridmatch.mobility import pairs as pairs_module

    fleet, roads = _instance(90, 200, seed=11)
    # Chunks of 7 vehicles: reach and the bests carried over chunk boundaries.
    monkeypatch.setattr(pairs_module, "_CHUNK_CELLS", 7 * 200)
    new = eligible_pairs(fleet, roads)
    _assert_same_pairs(new, _old_eligible_pairs(fleet, roads))


def test_eligible_pairs_match_with_no_usable_vehicle() -> None:
    fleet, roads = _instance(5, 20, seed=3)
    import dataclasses

    fleet = dataclasses.replace(fleet, dispatchable=np.zeros(fleet.n_vehicles, dtype=bool))
    new = eligible_pairs(fleet, roads)
    assert new.size == 0
    _assert_same_pairs(new, _old_eligible_pairs(fleet, roads))


def _old_greedy(fleet: Fleet, pairs: Pairs, candidate, profit):
    """``heuristic._greedy`` before its slices and kernel (a Python loop, full sort)."""
    order = candidate[np.argsort(-profit, kind="stable")]
    vehicle_used = np.zeros(fleet.n_vehicles, dtype=bool)
    request_used = np.zeros(fleet.n_requests, dtype=bool)
    picked = []
    for position in order:
        v, i = pairs.vehicle[position], pairs.request[position]
        if vehicle_used[v] or request_used[i]:
            continue
        vehicle_used[v] = request_used[i] = True
        picked.append(int(position))
    return np.asarray(picked, dtype=np.int64)


@pytest.mark.parametrize("seed", range(4))
def test_greedy_picks_what_the_full_scan_picked(seed: int) -> None:
    from gridmatch.mobility import heuristic

    fleet, roads = _instance(60, 150, seed)
    pairs = eligible_pairs(fleet, roads)
    rng = np.random.default_rng(seed)
    candidate = np.sort(rng.choice(pairs.size, size=pairs.size // 2, replace=False))
    # Few distinct profits: ties everywhere (the earlier candidate first).
    profit = rng.integers(0, 12, size=candidate.size).astype(float)
    got = heuristic._greedy(fleet, pairs, candidate, profit)
    np.testing.assert_array_equal(got, _old_greedy(fleet, pairs, candidate, profit))
    # Continuous profits too (the real ones).
    profit = rng.random(candidate.size)
    got = heuristic._greedy(fleet, pairs, candidate, profit)
    np.testing.assert_array_equal(got, _old_greedy(fleet, pairs, candidate, profit))


@pytest.mark.parametrize("seed", range(6))
def test_greedy_matches_under_contention(seed: int) -> None:
    """Many vehicles on few requests: most vehicles pass over all their best pairs."""
    from types import SimpleNamespace

    from gridmatch.mobility import heuristic

    rng = np.random.default_rng(seed)
    n_vehicles, n_requests = int(rng.integers(1, 200)), int(rng.integers(1, 80))
    cells = rng.random((n_vehicles, n_requests)) < rng.uniform(0.2, 1.0)
    vehicle, request = (a.astype(np.int32) for a in np.nonzero(cells))
    pairs = SimpleNamespace(vehicle=vehicle, request=request)
    fleet = SimpleNamespace(n_vehicles=n_vehicles, n_requests=n_requests)
    candidate = np.arange(vehicle.size, dtype=np.int64)
    for profit in (rng.integers(0, 4, size=vehicle.size).astype(float), rng.random(vehicle.size)):
        got = heuristic._greedy(fleet, pairs, candidate, profit)
        np.testing.assert_array_equal(got, _old_greedy(fleet, pairs, candidate, profit))


def _old_top_per_group(groups, score, k, n_groups=0):
    """``pricing.top_per_group`` before its kernel (argpartition or lexsort)."""
    if groups.size == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    if n_groups and np.all(groups[1:] >= groups[:-1]):
        counts = np.bincount(groups, minlength=n_groups)
        width = int(counts.max())
        if k >= width:
            return np.arange(groups.size, dtype=np.int64)
        if n_groups * width <= 4 * groups.size + 1_000_000:
            starts = np.r_[0, np.cumsum(counts)[:-1]]
            slot = np.arange(groups.size) - starts[groups]
            dense = np.full((n_groups, width), -np.inf)
            dense[groups, slot] = score
            best = np.argpartition(-dense, k - 1, axis=1)[:, :k]
            rows = np.repeat(np.arange(n_groups), k)
            cols = best.ravel()
            keep = cols < counts[rows]
            return np.sort(starts[rows[keep]] + cols[keep])
    order = np.lexsort((-score, groups))
    ordered = groups[order]
    starts = np.r_[0, np.nonzero(ordered[1:] != ordered[:-1])[0] + 1]
    rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
    return order[rank < k]


@pytest.mark.parametrize("k", [1, 3, 15, 400])
@pytest.mark.parametrize("seed", range(4))
def test_top_per_group_matches_the_lexsort(seed: int, k: int) -> None:
    from gridmatch.mobility.pricing import top_per_group

    rng = np.random.default_rng(seed)
    n_groups = int(rng.integers(1, 60))
    groups = rng.integers(0, n_groups, size=int(rng.integers(0, 3000)))
    # Few distinct scores: the tie rule (earlier position first) is what is tested.
    score = rng.integers(-5, 5, size=groups.size).astype(float)
    got = top_per_group(groups, score, k)
    assert np.all(np.diff(got) > 0)
    np.testing.assert_array_equal(got, np.sort(_old_top_per_group(groups, score, k)))
    # Sorted groups with n_groups: the old dense argpartition (ties arbitrary there, so
    # distinct scores).
    groups = np.sort(groups)
    score = rng.permutation(groups.size).astype(float)
    got = top_per_group(groups, score, k, n_groups)
    np.testing.assert_array_equal(got, np.sort(_old_top_per_group(groups, score, k, n_groups)))


def _old_reduced_values(fleet, pairs, objective, duals):
    """``pricing.reduced_values`` before its kernel (numpy, with per-pair terms)."""
    from gridmatch.mobility.pairs import session_hours

    request = pairs.request.astype(np.int64)
    vehicle = pairs.vehicle.astype(np.int64)
    at_point = np.nonzero(fleet.request_point[request] >= 0)[0]
    point = fleet.request_point[request[at_point]]
    hours = session_hours(fleet, pairs.subset(at_point))
    travel_cost = objective.travel_penalty_kwh_per_min * pairs.travel_min
    value = objective.weight + duals.floor * fleet.critical
    per_kwh = np.where(fleet.divisible, np.maximum(value - duals.request, 0.0), 0.0)
    lump = np.where(fleet.divisible, 0.0, value * fleet.need_kwh - duals.request)
    reduced = (
        per_kwh[request] * pairs.capacity_kwh + lump[request] - travel_cost - duals.vehicle[vehicle]
    )
    if at_point.size:
        at = at_point
        at_request = request[at]
        kwh_value = value[at_request] - duals.power[point] / hours
        reduced[at] = (
            np.where(
                fleet.divisible[at_request],
                np.maximum(kwh_value - duals.request[at_request], 0.0) * pairs.capacity_kwh[at],
                kwh_value * fleet.need_kwh[at_request] - duals.request[at_request],
            )
            - travel_cost[at]
            - duals.vehicle[vehicle[at]]
            - duals.port[point]
        )
    return reduced


def _old_pair_profit(fleet, pairs, objective):
    """``model.pair_profit`` before its kernel."""
    energy = np.where(
        fleet.divisible[pairs.request], pairs.capacity_kwh, fleet.need_kwh[pairs.request]
    )
    return objective.weight[pairs.request] * energy - (
        objective.travel_penalty_kwh_per_min * pairs.travel_min
    )


def _old_combinatorial_bound_kwh(fleet, pairs, objective):
    """``solve.combinatorial_bound_kwh`` before its kernel."""
    if pairs.size == 0:
        return 0.0
    worth = objective.weight[pairs.request] * pairs.capacity_kwh
    reachable = np.bincount(pairs.request, pairs.capacity_kwh, fleet.n_requests)
    by_requests = float(np.sum(objective.weight * np.minimum(fleet.need_kwh, reachable)))
    best_trip = np.zeros(fleet.n_vehicles)
    np.maximum.at(best_trip, pairs.vehicle, worth)
    return min(by_requests, float(np.sum(best_trip)))


@pytest.mark.parametrize("seed", range(5))
def test_pricing_terms_match_the_numpy_versions(seed: int) -> None:
    from gridmatch.mobility.model import Objective, pair_profit
    from gridmatch.mobility.pricing import Duals, reduced_values
    from gridmatch.mobility.solve import combinatorial_bound_kwh

    rng = np.random.default_rng(seed)
    # At least 50 requests: the generator puts one point per 50 of them.
    fleet, roads = _instance(int(rng.integers(20, 150)), int(rng.integers(50, 400)), seed)
    assert fleet.n_points > 0
    pairs = eligible_pairs(fleet, roads)
    weight = np.where(rng.random(fleet.n_requests) < 0.5, 1.0, fleet.critical.astype(float))
    objective = Objective(weight, 0.001 * (seed + 1), floor_kwh=None if seed % 2 else 10.0)
    duals = Duals(
        vehicle=rng.exponential(5.0, fleet.n_vehicles) * (rng.random(fleet.n_vehicles) < 0.7),
        request=rng.exponential(0.5, fleet.n_requests) * (rng.random(fleet.n_requests) < 0.5),
        port=rng.exponential(1.0, fleet.n_points),
        power=rng.exponential(0.3, fleet.n_points),
        floor=float(rng.exponential(1.0)),
    )
    np.testing.assert_array_equal(
        reduced_values(fleet, pairs, objective, duals),
        _old_reduced_values(fleet, pairs, objective, duals),
    )
    np.testing.assert_array_equal(
        pair_profit(fleet, pairs, objective), _old_pair_profit(fleet, pairs, objective)
    )
    assert combinatorial_bound_kwh(fleet, pairs, objective) == _old_combinatorial_bound_kwh(
        fleet, pairs, objective
    )


def test_an_lp_without_time_gives_no_bound_and_the_stage_says_so(monkeypatch) -> None:
    """Column generation's first LP stopped by the deadline: no duals, no Lagrangian bound.

    The stage keeps its start, certified by the pairs' own bound only, and its status
    says why; before, a first LP that did not finish raised a SolverError.
    """
    import time

    from gridmatch.mobility import solve as solve_module
    from gridmatch.mobility.heuristic import objective_value
    from gridmatch.mobility.model import Objective
    from gridmatch.mobility.pricing import priced_lp
    from gridmatch.mobility.solve import SolveSettings, combinatorial_bound_kwh, solve_stage

    fleet, roads = _instance(300, 1000, seed=1)
    pairs = eligible_pairs(fleet, roads)
    assert pairs.size > solve_module.FULL_MODEL_PAIRS
    objective = Objective(np.ones(fleet.n_requests), 0.001)
    extra = np.zeros(0, dtype=np.int64)
    assert priced_lp(fleet, pairs, objective, extra, time.perf_counter() - 1.0) is None

    # The stage's pricing share ends before any LP can finish.
    monkeypatch.setattr(solve_module, "PRICING_SHARE", 0.0)
    stage = solve_stage(fleet, pairs, objective, SolveSettings(), time.perf_counter() + 30)
    assert "time limit before the LP" in stage.solver_status
    assert stage.source == "heuristic"
    assert stage.objective_kwh == objective_value(fleet, pairs, objective, stage.dispatch)
    assert stage.bound_kwh == max(
        combinatorial_bound_kwh(fleet, pairs, objective), stage.objective_kwh
    )
    assert 0.0 < stage.gap < math.inf


@pytest.mark.parametrize("seed", range(3))
def test_candidates_match_the_numpy_masks(seed: int) -> None:
    from gridmatch.mobility import heuristic

    fleet, roads = _instance(80, 200, seed)
    pairs = eligible_pairs(fleet, roads)
    rng = np.random.default_rng(seed)
    profit = rng.normal(size=pairs.size)
    fixed_vehicle = rng.random(fleet.n_vehicles) < 0.2
    open_request = rng.random(fleet.n_requests) < 0.8
    candidate, has_vehicle, has_request = heuristic._candidates(
        profit, pairs.vehicle, pairs.request, fixed_vehicle, open_request
    )
    # The expressions heuristic_dispatch used before.
    want = np.nonzero((profit > 0.0) & ~fixed_vehicle[pairs.vehicle] & open_request[pairs.request])[
        0
    ]
    np.testing.assert_array_equal(candidate, want)
    np.testing.assert_array_equal(np.flatnonzero(has_vehicle), np.unique(pairs.vehicle[want]))
    np.testing.assert_array_equal(np.flatnonzero(has_request), np.unique(pairs.request[want]))


def test_no_lp_is_tried_without_the_time_to_set_it_up(monkeypatch) -> None:
    import time

    from gridmatch.mobility import pricing
    from gridmatch.mobility.model import Objective

    fleet, roads = _instance(100, 300, seed=2)
    pairs = eligible_pairs(fleet, roads)
    objective = Objective(np.ones(fleet.n_requests), 0.001)
    extra = np.zeros(0, dtype=np.int64)
    # As if each pair took a second to set up: a minute is not enough.
    monkeypatch.setattr(pricing, "SETUP_S_PER_PAIR", 1.0)
    monkeypatch.setattr(pricing, "_LpOverPairs", None)  # never built
    assert pricing.priced_lp(fleet, pairs, objective, extra, time.perf_counter() + 60) is None


def test_large_fleets_get_fewer_first_columns_per_vehicle() -> None:
    from gridmatch.mobility.pricing import (
        INITIAL_PER_VEHICLE,
        MAX_INITIAL_BY_VEHICLE,
        _per_vehicle,
    )

    # Up to 10,000 vehicles as before; 100,000 get one each, not a first LP of 1.5 M.
    assert _per_vehicle(INITIAL_PER_VEHICLE, MAX_INITIAL_BY_VEHICLE, 10_000) == 15
    assert _per_vehicle(INITIAL_PER_VEHICLE, MAX_INITIAL_BY_VEHICLE, 30_000) == 5
    assert _per_vehicle(INITIAL_PER_VEHICLE, MAX_INITIAL_BY_VEHICLE, 100_000) == 1
    assert _per_vehicle(INITIAL_PER_VEHICLE, MAX_INITIAL_BY_VEHICLE, 0) == 15
