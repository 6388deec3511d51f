"""One stage of the dispatch: a heuristic start, the MILP on HiGHS or CP-SAT, a certificate.

Small instances (at most :data:`FULL_MODEL_PAIRS` eligible pairs) go to the solver
whole, and its own bound is the proof. Larger ones are priced first
(:mod:`~gridmatch.mobility.pricing`): the LP over all pairs by column generation gives a
bound :math:`L` for every pair; pairs that cannot be in any dispatch better than the
heuristic's are left out, and if what remains fits in :data:`EXACT_MODEL_PAIRS` the MILP
over it is exact for the whole instance (its bound, or the heuristic's value, whichever
is higher, is a bound for all pairs).

Otherwise the MILP searches a neighbourhood (RINS, relaxation-induced neighbourhood
search): the pairs the LP used, plus the heuristic's, with every pair on which the
heuristic and the LP agree (sent in both) fixed. Only :math:`L` certifies the result.
Measured on 1,000 vehicles x 5,000 requests: the heuristic stood 0.082 % below
:math:`L`, ten seconds of the neighbourhood MILP 0.015 %.

The second stage of emergency mode (a critical floor) searches differently when
priced: RINS over the LP's pairs found nothing better than the start in the time left
(the LP meets the floor with fractions of vehicles, so it and the start agree on few
pairs). Instead :func:`support_search` solves the MILP over the pairs the LP uses (and
the start's: about a thousand, proven in seconds), and :func:`neighbourhood_search`
runs rounds of small MILPs from there, each freeing 150 vehicles (five pairs each)
around the incumbent. The certificate is :math:`L` or, lower, the same multipliers'
bound with each request's trips whole (:mod:`~gridmatch.mobility.request_bound`),
whichever is lower. Any priced stage still above its gap at the end gets that bound
too, if the time left allows.

The stage reports the best dispatch found, the best bound proven, and the gap between
them; every solver run is given only the time that still lets the stage end by its
deadline (:func:`solver_limit_s`), the LPs of column generation too. A priced stage
whose first LP has no time to finish keeps its start, certified by
:func:`combinatorial_bound_kwh` alone, and its status says so.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from gridmatch.errors import SolverError
from gridmatch.matching.backends.highs_runner import (
    GUARD_GRACE_MIN_S,
    GUARD_GRACE_SHARE,
    GUARD_NONZEROS,
    run_highs,
)
from gridmatch.matching.solution import SolveOptions
from gridmatch.mobility.cpsat_solver import solve_cpsat
from gridmatch.mobility.heuristic import (
    Dispatch,
    critical_kwh,
    heuristic_dispatch,
    objective_value,
    repair_floor,
)
from gridmatch.mobility.model import Objective, build_model, column_values, read_columns
from gridmatch.mobility.pairs import Fleet, Pairs, session_hours
from gridmatch.mobility.pricing import PricedLp, priced_lp, top_per_group
from gridmatch.mobility.request_bound import whole_trip_bound_kwh
from gridmatch.scenario_io.mobility_schema import BackendName

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
FULL_MODEL_PAIRS = 60_000
# A priced instance is solved exactly over the pairs that may improve on the start only
# if they are this few (HiGHS did not prove 85,000 of them in 20 s); otherwise the
# neighbourhood search runs.
EXACT_MODEL_PAIRS = 20_000
# Share of a stage's time the second stage's alternative starts may take, and of what is
# left then that column generation may take before the MILP gets the rest.
HEURISTIC_SHARE = 0.25
PRICING_SHARE = 0.5
# Extra weights of a critical kWh in the second stage's alternative starts.
CRITICAL_BONUSES = (100.0, 10.0, 3.0, 1.0)
# Rows of a solver's answer may be off by this much (kWh) before it is refused.
FEASIBILITY_TOLERANCE_KWH = 1e-4
# The second stage's neighbourhood search on priced instances (module docstring): each
# round frees this many vehicles, each with its best pairs by reduced value, and gives
# HiGHS at most this long. Measured on 1,000 x 5,000 electricity only, 20 s of search
# from the start 7.8 % below the LP bound: 100 vehicles, 20 pairs, 2 s: 5.6-5.7 %; 50
# vehicles, 1 s: 6.1 %; 200 vehicles, 4 s: no better dispatch (every round hit its
# limit); drawing the vehicles by how much better their best pair prices, or half
# mobile storage and half EVs, or along the start's and the LP's pairs: none either.
# Later, from the support search's start (about 3.3 % below the whole-trip bound, load
# 2.8-4.3 on 2 cores, one run each unless given): 100 vehicles x 20 pairs 52,064 kWh
# (twice, 7-8 rounds, most at their limit); x 5 pairs: 100 vehicles 52,297 (58
# rounds), 150 52,302 and 52,355 (24 and 33 rounds), 200 52,394 and 52,179, 300
# 52,178; x 3 pairs: 150 52,250, 300 52,218, 400 52,046; 200 x 8: 52,057; at load
# 1.6-2.3, 100 x 20 52,131 and 150 x 5 52,299. Five pairs a vehicle keep a round's MILP
# small enough for HiGHS to finish it well within its limit, so far more rounds run.
# With fuel (gap 0.36-0.42 % either way) it made no difference beyond the noise.
SEARCH_VEHICLES = 150
SEARCH_PAIRS_PER_VEHICLE = 5
SEARCH_ROUND_S = 2.0
# The second stage's MILP over the LP's pairs (support_search): at most this share of
# the stage's time left, and this long.
SUPPORT_SHARE = 0.5
SUPPORT_MAX_S = 8.0
# The whole-trip bound (request_bound) may take at most this share of the time left
# (measured 0.3-1.0 s on 1,000 x 5,000).
WHOLE_TRIP_SHARE = 0.25
# A round shorter than this rarely finds anything: the search stops instead.
SEARCH_MIN_ROUND_S = 0.5
# Time a stage keeps back from its deadline for what surrounds a solver run (building
# the model, forking, reading and checking the answer: up to 0.3 s measured under load).
FINISH_MARGIN_S = 0.4
# Share of its time a MILP small enough to run in this process gets: nothing kills HiGHS
# there, and it has run 25-45 % past its limit (highs_runner's measurement); with the
# whole limit, the neighbourhood search's last round ended 0.14 s after the deadline.
IN_PROCESS_SHARE = 0.65


@dataclass(frozen=True)
class SolveSettings:
    """Run settings that change results (written to the manifest)."""

    backend: BackendName = BackendName.HIGHS
    time_limit_s: float = 30.0
    mip_gap: float = 1e-4
    seed: int = 0


@dataclass(frozen=True)
class StageResult:
    """What one stage found.

    Attributes
    ----------
    dispatch
        The best dispatch found (positions in the stage's pairs).
    bound_kwh
        Proven upper bound on the stage's objective over all eligible pairs.
    method
        ``full`` (every pair in the MILP), ``priced exact`` (pairs left out are proven
        useless), ``priced`` (only the Lagrangian bound certifies) or ``none`` (no pair).
    source
        Where the dispatch came from: ``solver`` or ``heuristic``.
    """

    dispatch: Dispatch
    objective_kwh: float
    bound_kwh: float
    method: str
    source: str
    backend: str
    solver_status: str
    n_pairs: int
    n_model_pairs: int
    lp_rounds: int
    runtime_s: float

    @property
    def gap(self) -> float:
        """Relative gap between the bound and the dispatch (0 when both are 0)."""
        return relative_gap(self.objective_kwh, self.bound_kwh)


def relative_gap(value: float, bound: float) -> float:
    """``(bound - value) / |value|``, 0 when they agree to 1e-9 kWh, ``inf`` without a bound."""
    if not math.isfinite(bound):
        return math.inf
    difference = bound - value
    if difference <= 1e-9:
        return 0.0
    return difference / max(abs(value), 1e-9)


def solve_stage(
    fleet: Fleet,
    pairs: Pairs,
    objective: Objective,
    settings: SolveSettings,
    deadline: float,
    fixed: Dispatch | None = None,
) -> StageResult:
    """Solve one stage over ``pairs`` by ``deadline`` (``time.perf_counter`` seconds).

    Raises
    ------
    SolverError
        The solver's answer breaks a row of the model (a solver bug, never repaired).
    """
    began = time.perf_counter()
    start = heuristic_dispatch(fleet, pairs, objective, fixed)
    start_value = objective_value(fleet, pairs, objective, start)
    if objective.floor_kwh is not None:
        # The first stage's vehicles were chosen for critical energy alone; a dispatch
        # that weighs critical energy heavily, and normal energy too, often meets the
        # floor with other vehicles and leaves far more for normal requests.
        # Heavier bonuses meet the floor more often, lighter ones leave more for normal
        # requests; a dispatch short of the floor is repaired by moves to critical ones.
        # On large instances the repair rarely succeeds (measured: 1,000 x 5,000, the
        # lighter bonuses fell 0.1-10 % short of the floor and single moves could not
        # close it) and each try costs seconds that pricing needs: the heaviest only.
        bonuses = CRITICAL_BONUSES if pairs.size <= FULL_MODEL_PAIRS else CRITICAL_BONUSES[:1]
        # Each try is cut at the share's end: on 1,000 x 5,000 with a 5 s limit one try
        # and its repair took 3.3 s, and the stage ended 1 s after its deadline.
        alternatives_end = began + HEURISTIC_SHARE * (deadline - began)
        for bonus in bonuses:
            if time.perf_counter() > alternatives_end:
                break
            weighed = dataclasses.replace(
                objective, weight=objective.weight + bonus * fleet.critical
            )
            other: Dispatch | None = heuristic_dispatch(
                fleet, pairs, weighed, deadline=alternatives_end
            )
            assert other is not None
            if critical_kwh(fleet, pairs, other) < objective.floor_rhs_kwh():
                other = repair_floor(fleet, pairs, objective, other, deadline=alternatives_end)
            if other is None:
                continue
            other_value = objective_value(fleet, pairs, objective, other)
            if other_value > start_value:
                start, start_value = other, other_value
    if pairs.size == 0:
        return StageResult(
            start,
            0.0,
            0.0,
            "none",
            "heuristic",
            settings.backend.value,
            "no pairs",
            0,
            0,
            0,
            time.perf_counter() - began,
        )
    lagrangian = math.inf
    rounds = 0
    forced = np.zeros(0, dtype=np.int64)
    priced: PricedLp | None = None
    if pairs.size <= FULL_MODEL_PAIRS:
        positions = np.arange(pairs.size, dtype=np.int64)
        method = "full"
    else:
        extra = np.union1d(start.chosen, fixed.chosen if fixed is not None else [])
        now = time.perf_counter()
        pricing_deadline = now + PRICING_SHARE * (deadline - now)
        priced = priced_lp(fleet, pairs, objective, extra.astype(np.int64), pricing_deadline)
        if priced is None:
            # No LP optimum in the time: no duals, so no Lagrangian bound and nothing
            # to search around. The start stands, certified by what the pairs alone
            # bound (honest, if loose), and the status says why.
            bound = max(combinatorial_bound_kwh(fleet, pairs, objective), start_value)
            return StageResult(
                start,
                start_value,
                bound,
                "priced",
                "heuristic",
                settings.backend.value,
                "time limit before the LP's optimum: pairs' bound only",
                pairs.size,
                0,
                0,
                time.perf_counter() - began,
            )
        lagrangian, rounds = priced.bound_kwh, priced.rounds
        # Pairs that may be in a dispatch better than the start (module docstring).
        threshold = start_value - priced.last_bound_kwh - 1e-9
        useful = np.nonzero(priced.reduced >= threshold)[0]
        if useful.size <= EXACT_MODEL_PAIRS:
            positions = np.union1d(useful, extra)
            method = "priced exact"
        elif objective.floor_kwh is not None:
            # The floor leaves the LP's dispatch far from integer ones (its fractional
            # vehicles are what meets the floor): its bound gets whole trips, the
            # start the MILP over the LP's pairs, then small neighbourhoods of that,
            # each a MILP of a few thousand pairs.
            # Before the searches, which take the time left (a second on 26.7 M pairs).
            pairs_bound = combinatorial_bound_kwh(fleet, pairs, objective)
            lagrangian = min(
                lagrangian, _whole_trip_bound(fleet, pairs, objective, priced, deadline)
            )
            improved = support_search(fleet, pairs, objective, settings, priced, start, deadline)
            best, rounds_searched = neighbourhood_search(
                fleet, pairs, objective, settings, priced, improved, deadline
            )
            best_value = objective_value(fleet, pairs, objective, best)
            source = "solver" if best_value > start_value + 1e-9 else "heuristic"
            # A short limit leaves column generation one round, whose bound can be far
            # above what the requests can take at all (measured: 106 M kWh for 1.4 M).
            bound = min(lagrangian, pairs_bound)
            return StageResult(
                best,
                best_value,
                max(bound, best_value),
                "priced",
                source,
                settings.backend.value,
                f"neighbourhood search, {rounds_searched} rounds",
                pairs.size,
                int(priced.selected.size),
                rounds,
                time.perf_counter() - began,
            )
        else:
            positions = np.union1d(priced.selected, extra)
            sent_in_lp = np.zeros(pairs.size, dtype=bool)
            sent_in_lp[priced.selected[priced.y_values > 1.0 - 1e-6]] = True
            forced = start.chosen[sent_in_lp[start.chosen]]
            method = "priced"
        positions = positions.astype(np.int64)
    sub = pairs.subset(positions)
    where = np.full(pairs.size, -1, dtype=np.int64)
    where[positions] = np.arange(positions.size)
    start_sub = (where[start.chosen], start.energy_kwh)
    # Before the solver, which gets the time left: on 26.7 M pairs this takes a second.
    pairs_bound = combinatorial_bound_kwh(fleet, pairs, objective)
    remaining = solver_limit_s(deadline)
    found, solver_bound, status = _run_backend(
        fleet, sub, objective, settings, start_sub, remaining, where[forced]
    )
    best, best_value, source = start, start_value, "heuristic"
    if found is not None:
        candidate = Dispatch(positions[found.chosen], found.energy_kwh)
        value = objective_value(fleet, pairs, objective, candidate)
        if value > start_value + 1e-9:
            best, best_value, source = candidate, value, "solver"
    if method in ("full", "priced exact") and solver_bound is not None:
        bound = max(solver_bound, start_value)
        bound = min(bound, lagrangian)
    else:
        bound = lagrangian
    # A MILP stopped before its root bound still leaves the stage a finite certificate.
    bound = min(bound, pairs_bound)
    if priced is not None and relative_gap(best_value, bound) > settings.mip_gap:
        bound = min(bound, _whole_trip_bound(fleet, pairs, objective, priced, deadline))
    bound = max(bound, best_value)
    return StageResult(
        best,
        best_value,
        bound,
        method,
        source,
        settings.backend.value,
        status,
        pairs.size,
        positions.size,
        rounds,
        time.perf_counter() - began,
    )


def combinatorial_bound_kwh(fleet: Fleet, pairs: Pairs, objective: Objective) -> float:
    """Bound any dispatch's objective from above by the pairs alone (no solver).

    The travel penalty only lowers the objective, so the weighted energy bounds it;
    that is at most what the requests can take (each its need, or all its pairs can
    bring) and at most what the vehicles can give (each one trip: its best pair).
    """
    if pairs.size == 0:
        return 0.0
    reachable, best_trip = _reachable_and_best_trip(
        np.ascontiguousarray(pairs.vehicle, dtype=np.int32),
        np.ascontiguousarray(pairs.request, dtype=np.int32),
        np.ascontiguousarray(pairs.capacity_kwh, dtype=np.float64),
        np.ascontiguousarray(objective.weight, dtype=np.float64),
        fleet.n_vehicles,
    )
    by_requests = float(np.sum(objective.weight * np.minimum(fleet.need_kwh, reachable)))
    return min(by_requests, float(np.sum(best_trip)))


# Compiled at import (or loaded from numba's cache), so that no dispatch pays for it.
# One pass instead of np.bincount and np.maximum.at (2 s on 26.7 M pairs).
@numba.njit(
    "Tuple((float64[:], float64[:]))(int32[:], int32[:], float64[:], float64[:], int64)",
    cache=True,
)
def _reachable_and_best_trip(
    vehicle: npt.NDArray[np.int32],
    request: npt.NDArray[np.int32],
    capacity_kwh: FloatArray,
    weight: FloatArray,
    n_vehicles: int,
) -> tuple[FloatArray, FloatArray]:  # pragma: no cover - compiled by numba
    """Per request the kWh all its pairs could bring; per vehicle its best trip's worth."""
    reachable = np.zeros(weight.size)
    best_trip = np.zeros(n_vehicles)
    for p in range(vehicle.size):
        reachable[request[p]] += capacity_kwh[p]
        best_trip[vehicle[p]] = max(best_trip[vehicle[p]], weight[request[p]] * capacity_kwh[p])
    return reachable, best_trip


def solver_limit_s(deadline: float) -> float:
    """Time a solver run may be given so that the stage still ends by ``deadline``.

    HiGHS in its guarded child may run 1 % (at least 0.05 s) past its limit, and the
    answer still has to be read and checked: both are kept back. The margin for that
    is at most a tenth of what is left, so a short stage keeps most of its time.
    """
    left = deadline - time.perf_counter()
    left -= min(FINISH_MARGIN_S, 0.1 * max(left, 0.0))
    return max((left - GUARD_GRACE_MIN_S) / (1.0 + GUARD_GRACE_SHARE), 0.05)


def _whole_trip_bound(
    fleet: Fleet, pairs: Pairs, objective: Objective, priced: PricedLp, deadline: float
) -> float:
    """:func:`whole_trip_bound_kwh` at the LP's last duals, in its share of the time left."""
    now = time.perf_counter()
    return whole_trip_bound_kwh(
        fleet,
        pairs,
        objective,
        priced.duals,
        priced.reduced,
        min(
            deadline - FINISH_MARGIN_S - SEARCH_MIN_ROUND_S,
            now + WHOLE_TRIP_SHARE * (deadline - now),
        ),
    )


def support_search(
    fleet: Fleet,
    pairs: Pairs,
    objective: Objective,
    settings: SolveSettings,
    priced: PricedLp,
    start: Dispatch,
    deadline: float,
) -> Dispatch:
    """Solve the MILP over the LP's pairs and ``start``'s from ``start``; return the better.

    The LP's pairs are where its fractions meet the floor; an integer dispatch among
    them (measured on 1,000 x 5,000 electricity only: 1,246 pairs, proven in 3 s,
    52,057 kWh against the start's 50,287 and the neighbourhood search's 51,806 after
    24 s) is the neighbourhood search's start. At most :data:`SUPPORT_SHARE` of what is
    left, and :data:`SUPPORT_MAX_S`.
    """
    in_lp = priced.selected[priced.y_values > 1e-6]
    positions = np.union1d(in_lp, start.chosen).astype(np.int64)
    left = deadline - time.perf_counter()
    limit = min(SUPPORT_MAX_S, SUPPORT_SHARE * left, solver_limit_s(deadline))
    if limit < SEARCH_MIN_ROUND_S:
        return start
    unforced = np.zeros(0, dtype=np.int64)
    candidate = _solve_among(fleet, pairs, objective, settings, positions, start, limit, unforced)
    if candidate is None:
        return start
    start_value = objective_value(fleet, pairs, objective, start)
    if objective_value(fleet, pairs, objective, candidate) > start_value + 1e-9:
        return candidate
    return start


def neighbourhood_search(
    fleet: Fleet,
    pairs: Pairs,
    objective: Objective,
    settings: SolveSettings,
    priced: PricedLp,
    start: Dispatch,
    deadline: float,
) -> tuple[Dispatch, int]:
    """Improve ``start`` by MILPs over small neighbourhoods until ``deadline``.

    Each round frees :data:`SEARCH_VEHICLES` vehicles drawn (seeded) from those the
    incumbent sends (all dispatchable ones if it sends none); every other vehicle keeps
    its trip (its energy may still change). Drawing from the vehicles whose trip differs
    from the LP's instead was measured worse on 1,000 x 5,000 (0.75 % and 6.2 % against
    0.55 % and 4.75 %): the LP's trips are fractions, and the sent vehicles are where
    reassignments pay. A freed vehicle may take its
    :data:`SEARCH_PAIRS_PER_VEHICLE` pairs of highest reduced value at the LP's duals,
    the pairs the LP gave it, or stay home. The incumbent is the MILP's start, so a
    round never makes it worse; every row (the floor too) is in each MILP.

    Returns
    -------
    tuple
        The best dispatch found and the number of rounds run.
    """
    rng = np.random.default_rng(settings.seed)
    in_lp = priced.selected[priced.y_values > 1e-6]
    best_pairs = top_per_group(
        pairs.vehicle, priced.reduced, SEARCH_PAIRS_PER_VEHICLE, fleet.n_vehicles
    )
    best_pairs_vehicle = pairs.vehicle[best_pairs]
    in_lp_vehicle = pairs.vehicle[in_lp]
    best, best_value = start, objective_value(fleet, pairs, objective, start)
    rounds = 0
    while deadline - time.perf_counter() > FINISH_MARGIN_S + SEARCH_MIN_ROUND_S:
        rounds += 1
        sent = np.zeros(fleet.n_vehicles, dtype=bool)
        sent[pairs.vehicle[best.chosen]] = True
        pool = np.nonzero(sent & fleet.dispatchable)[0]
        if pool.size == 0:
            pool = np.nonzero(fleet.dispatchable)[0]
        if pool.size == 0:
            break
        free = np.zeros(fleet.n_vehicles, dtype=bool)
        free[rng.choice(pool, size=min(SEARCH_VEHICLES, pool.size), replace=False)] = True
        positions = np.unique(
            np.concatenate(
                [best_pairs[free[best_pairs_vehicle]], in_lp[free[in_lp_vehicle]], best.chosen]
            )
        ).astype(np.int64)
        forced = best.chosen[~free[pairs.vehicle[best.chosen]]]
        limit = min(SEARCH_ROUND_S, solver_limit_s(deadline))
        candidate = _solve_among(fleet, pairs, objective, settings, positions, best, limit, forced)
        if candidate is None:
            continue
        value = objective_value(fleet, pairs, objective, candidate)
        if value > best_value + 1e-9:
            best, best_value = candidate, value
    return best, rounds


def _solve_among(
    fleet: Fleet,
    pairs: Pairs,
    objective: Objective,
    settings: SolveSettings,
    positions: IntArray,
    start: Dispatch,
    time_limit_s: float,
    forced: IntArray,
) -> Dispatch | None:
    """Solve the MILP over the pairs at ``positions`` from ``start``, ``forced`` sent.

    ``positions`` are sorted and hold ``start``'s and ``forced``'s pairs; the dispatch
    found (if any) is returned in positions of all ``pairs``.
    """
    where = np.full(pairs.size, -1, dtype=np.int64)
    where[positions] = np.arange(positions.size)
    found, _, _ = _run_backend(
        fleet,
        pairs.subset(positions),
        objective,
        settings,
        (where[start.chosen], start.energy_kwh),
        time_limit_s,
        where[forced],
    )
    return None if found is None else Dispatch(positions[found.chosen], found.energy_kwh)


def _run_backend(
    fleet: Fleet,
    pairs: Pairs,
    objective: Objective,
    settings: SolveSettings,
    start: tuple[IntArray, FloatArray],
    time_limit_s: float,
    forced: IntArray,
) -> tuple[Dispatch | None, float | None, str]:
    """Solve the MILP over ``pairs`` (``forced`` pairs sent): dispatch (checked), bound, status."""
    if settings.backend is BackendName.CP_SAT:
        answer = solve_cpsat(
            fleet, pairs, objective, start, time_limit_s, settings.mip_gap, settings.seed, forced
        )
        found = None
        if answer.chosen is not None and answer.energy_kwh is not None:
            found = Dispatch(answer.chosen, answer.energy_kwh)
            check_rows(fleet, pairs, objective, found)
        return found, answer.bound_kwh, answer.status
    model = build_model(fleet, pairs, objective)
    if model.arrays.matrix.nnz < GUARD_NONZEROS:
        # Run in this process, where nothing stops HiGHS at its limit, and it has run
        # up to 45 % past it (highs_runner): the stage's deadline must still hold.
        time_limit_s *= IN_PROCESS_SHARE
    if forced.size:
        lower = model.arrays.col_lower.copy()
        lower[model.y_col[forced]] = 1.0
        model = dataclasses.replace(
            model, arrays=dataclasses.replace(model.arrays, col_lower=lower)
        )
    options = SolveOptions(
        time_limit_s=time_limit_s, mip_gap=settings.mip_gap, threads=1, seed=settings.seed
    )
    answer_h = run_highs(
        model.arrays,
        options,
        time_limit_s,
        relax=False,
        start_values=column_values(model, start[0], start[1]),
    )
    found = None
    if answer_h.col_values is not None:
        chosen, energy = read_columns(model, fleet, answer_h.col_values)
        found = Dispatch(chosen, energy)
        check_rows(fleet, pairs, objective, found)
    status = answer_h.termination.value
    if answer_h.proven_optimal:
        status = "optimal"
    return found, answer_h.bound_eur, status


def check_rows(fleet: Fleet, pairs: Pairs, objective: Objective, dispatch: Dispatch) -> None:
    """Refuse a solver's dispatch that breaks a row of the model.

    Raises
    ------
    SolverError
        Naming the row family that is broken.
    """
    tolerance = FEASIBILITY_TOLERANCE_KWH
    chosen = dispatch.chosen
    vehicle = pairs.vehicle[chosen]
    request = pairs.request[chosen]
    problems = []
    if np.unique(vehicle).size != vehicle.size:
        problems.append("a vehicle makes two trips")
    if np.any(dispatch.energy_kwh > pairs.capacity_kwh[chosen] + tolerance):
        problems.append("a vehicle delivers more than it can")
    delivered = np.zeros(fleet.n_requests)
    np.add.at(delivered, request, dispatch.energy_kwh)
    if np.any(delivered > fleet.need_kwh + tolerance):
        problems.append("a request gets more than its need")
    whole = ~fleet.divisible[request]
    if np.unique(request[whole]).size != int(whole.sum()):
        problems.append("an indivisible request gets two vehicles")
    point = fleet.request_point[request]
    if fleet.n_points and np.any(point >= 0):
        at = point >= 0
        ports = np.bincount(point[at], minlength=fleet.n_points)
        if np.any(ports > fleet.point_ports):
            problems.append("a point has more sessions than ports")
        hours = session_hours(fleet, pairs.subset(chosen))
        load = np.bincount(
            point[at], weights=dispatch.energy_kwh[at] / hours[at], minlength=fleet.n_points
        )
        if np.any(load > fleet.point_kw * (1 + 1e-6) + tolerance):
            problems.append("a point's power limit is exceeded")
    if objective.floor_kwh is not None:
        critical = float(np.sum(dispatch.energy_kwh[fleet.critical[request]]))
        if critical < objective.floor_rhs_kwh() - tolerance:
            problems.append("the critical floor is broken")
    if problems:
        raise SolverError("the solver's dispatch breaks the model: " + "; ".join(problems))
