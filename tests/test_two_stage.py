"""The patent's two-stage method: stage 1 meets the rows closest to what was declared,
stage 2 matches the caps, and the result is secure by an independent power flow."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from feasibility import check_result_folder, line_distances_km
from independent_grid import insecure_slots
from scipy.optimize import linprog
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.grid_models.networks import build_pandapower_network
from gridmatch.matching.backends.registry import get_backend
from gridmatch.matching.backends.two_stage import (
    TwoStageBackend,
    capped_problem,
    schedule_volumes_kwh,
)
from gridmatch.matching.clearing import check_allocation
from gridmatch.matching.grid_rows import ROW_TOLERANCE, GridRows
from gridmatch.matching.market_rules import MarketRules
from gridmatch.matching.orders import Order, OrderBook, Side
from gridmatch.matching.problem import SlotProblem, build_slot_problems
from gridmatch.matching.solution import SolveOptions

HEADER = "order_id,participant_id,side,bus,slot,quantity_kwh,limit_price_eur_per_kwh,divisible"


def _slot_with_a_feeder_limit(limit_kwh: float) -> SlotProblem:
    """Two sellers at bus 2 (far end), buyers at bus 1; one row: export at bus 2 <= limit."""
    book = OrderBook(
        (
            Order("s1", "S1", Side.SELL, 2, 0, 6.0, 0.05, True),
            Order("s2", "S2", Side.SELL, 2, 0, 4.0, 0.08, False),
            Order("s3", "S3", Side.SELL, 1, 0, 3.0, 0.12, True),
            Order("b1", "B1", Side.BUY, 1, 0, 5.0, 0.30, True),
            Order("b2", "B2", Side.BUY, 1, 0, 2.0, 0.25, False),
            Order("b3", "B3", Side.BUY, 1, 0, 4.0, 0.20, False),
        )
    )
    [problem] = build_slot_problems(book, MarketRules())
    rows = GridRows(
        buses=np.array([1, 2]),
        coefficient_per_kwh=np.array([[0.0, 1.0]]),
        lower=np.array([-np.inf]),
        upper=np.array([limit_kwh]),
        element=("line",),
        element_index=np.array([0]),
    )
    return replace(problem, grid=rows)


def test_stage_one_is_the_l1_closest_balanced_schedule_within_the_rows() -> None:
    problem = _slot_with_a_feeder_limit(5.0)
    assert problem.grid is not None
    volume = schedule_volumes_kwh(problem, problem.grid)
    assert volume is not None
    declared = np.concatenate([problem.buy_quantity_kwh, problem.sell_quantity_kwh])
    n_buys = problem.buy_quantity_kwh.size
    assert np.all(volume <= declared + 1e-9) and np.all(volume >= -1e-9)
    assert math.isclose(volume[:n_buys].sum(), volume[n_buys:].sum(), abs_tol=1e-7)
    # Bus-2 export within the limit, and the modification minimal (checked by scipy).
    at_bus_2 = np.concatenate([np.zeros(n_buys), (problem.sell_bus == 2).astype(float)])
    assert float(at_bus_2 @ volume) <= 5.0 + 1e-7
    balance = np.concatenate([-np.ones(n_buys), np.ones(problem.sell_quantity_kwh.size)])
    reference = linprog(
        -np.ones(declared.size),
        A_ub=at_bus_2[None, :],
        b_ub=[5.0],
        A_eq=balance[None, :],
        b_eq=[0.0],
        bounds=list(zip(np.zeros(declared.size), declared, strict=True)),
    )
    assert math.isclose(volume.sum(), -reference.fun, abs_tol=1e-6)


def test_stage_two_trades_within_the_caps_and_the_rows() -> None:
    problem = _slot_with_a_feeder_limit(5.0)
    assert problem.grid is not None
    solution = TwoStageBackend().solve_slot(problem, SolveOptions(), 10.0)
    check_allocation(problem, solution.pair_quantity_kwh)
    injection = problem.bus_injection_kwh(problem.grid.buses, solution.pair_quantity_kwh)
    assert problem.grid.holds(injection)
    volume = schedule_volumes_kwh(problem, problem.grid)
    assert volume is not None
    capped, kept = capped_problem(problem, volume)
    sold = np.bincount(problem.pair_sell, weights=solution.pair_quantity_kwh, minlength=3)
    assert np.all(sold <= capped.sell_quantity_kwh + ROW_TOLERANCE)
    assert set(np.flatnonzero(solution.pair_quantity_kwh)) <= set(kept.tolist())
    assert solution.status.value == "feasible" and solution.bound_eur is None


def test_without_grid_rows_it_is_the_exact_knapsack() -> None:
    problem = replace(_slot_with_a_feeder_limit(5.0), grid=None)
    ours = TwoStageBackend().solve_slot(problem, SolveOptions(mip_gap=1e-9), 10.0)
    exact = get_backend("highspy").solve_slot(problem, SolveOptions(mip_gap=1e-9), 10.0)
    assert ours.status.value == "optimal"
    assert math.isclose(
        problem.welfare_eur(ours.pair_quantity_kwh),
        problem.welfare_eur(exact.pair_quantity_kwh),
        abs_tol=1e-9,
    )


def test_two_stage_secure_clearing_passes_an_independent_power_flow(tmp_path: Path) -> None:
    # PV at the far ends of the Kerber suburb, houses next to the transformer.
    import networkx as nx
    import pandapower.topology as top

    net = build_pandapower_network("create_kerber_vorstadtnetz_kabel_1")
    distance = nx.single_source_dijkstra_path_length(
        top.create_nxgraph(net), int(net.trafo.lv_bus.iloc[0])
    )
    houses = sorted({int(b) for b in net.load.bus}, key=lambda b: (distance[b], b))
    rows = [f"s{k},pv{k},sell,{bus},0,80,0.05,true" for k, bus in enumerate(houses[-4:])]
    rows += [
        f"b{k},home{k},buy,{bus},0,{40 + 10 * k},0.30,false" for k, bus in enumerate(houses[:6])
    ]
    scenario = tmp_path / "kerber"
    scenario.mkdir()
    (scenario / "scenario.yaml").write_text(
        "name: kerber\nnetwork:\n  pandapower: create_kerber_vorstadtnetz_kabel_1\n"
    )
    (scenario / "orders.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    out = tmp_path / "out"
    done = CliRunner().invoke(
        app, ["clear", str(scenario), "--out", str(out), "--formulation", "two-stage"]
    )
    assert done.exit_code == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["secure"] is True and summary["formulation"] == "two-stage"
    assert insecure_slots(net, scenario, out) == set()
    check_result_folder(scenario, out, line_distances_km(net))
    assert 0.0 < summary["welfare_eur"] <= summary["unconstrained_welfare_eur"] + 1e-9
