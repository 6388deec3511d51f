"""The stage-2 neighbourhood search frees vehicles the incumbent sends, as documented.

A reviewer found the code reading the LP's trips wrong, so that the pool was, by
accident, the vehicles the incumbent sends, while the docstring promised those whose
trip differs from the LP's. Measured, the accident was better (module docstring of
``neighbourhood_search``): it is now the rule, written as such, and tested here.
"""

from __future__ import annotations

import time

import numpy as np

from gridmatch.mobility import solve as solve_module
from gridmatch.mobility.example import synthetic_inputs
from gridmatch.mobility.heuristic import critical_kwh, heuristic_dispatch
from gridmatch.mobility.model import Objective
from gridmatch.mobility.pairs import eligible_pairs, fleet_arrays
from gridmatch.mobility.pricing import priced_lp
from gridmatch.mobility.roads import RoadNetwork
from gridmatch.mobility.solve import SolveSettings, neighbourhood_search


def test_the_pool_is_the_vehicles_the_incumbent_sends(monkeypatch) -> None:
    inputs = synthetic_inputs(300, 1000, seed=1)
    roads = RoadNetwork(inputs.roads, inputs.positions)
    fleet = fleet_arrays(inputs, roads, emergency=True)
    pairs = eligible_pairs(fleet, roads)
    penalty = inputs.spec.travel_penalty_kwh_per_min
    start = heuristic_dispatch(fleet, pairs, Objective(np.ones(fleet.n_requests), penalty))
    floor = 0.5 * critical_kwh(fleet, pairs, start)
    objective = Objective(np.ones(fleet.n_requests), penalty, floor_kwh=floor)
    priced = priced_lp(fleet, pairs, objective, start.chosen, time.perf_counter() + 30)
    assert priced is not None

    pools: list[np.ndarray] = []
    real_rng = np.random.default_rng

    class Recorder:
        def __init__(self, seed):
            self._rng = real_rng(seed)

        def choice(self, pool, size, replace):
            pools.append(np.asarray(pool).copy())
            return self._rng.choice(pool, size=size, replace=replace)

    monkeypatch.setattr(solve_module.np.random, "default_rng", Recorder)
    # One round is enough to see the pool (deadline: a single short round).
    deadline = time.perf_counter() + solve_module.FINISH_MARGIN_S + 1.2
    neighbourhood_search(fleet, pairs, objective, SolveSettings(), priced, start, deadline)
    assert pools, "no round ran"

    # The pool the docstring gives: the vehicles the incumbent sends, and only those.
    expected = np.unique(pairs.vehicle[start.chosen])
    expected = expected[fleet.dispatchable[expected]]
    assert expected.size > 0
    assert set(pools[0].tolist()) == set(expected.tolist())
    # Every draw of every round comes from vehicles the incumbent of that round sends:
    # never more vehicles than the fleet can dispatch.
    assert all(fleet.dispatchable[pool].all() for pool in pools)
