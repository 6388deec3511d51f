"""The AC certificate of secure clearing: valid against brute force, tighter than the LP.

Validity is checked the hard way: on small books every assignment of indivisible buys
to sellers is AC-checked, and the best secure welfare must never exceed the bound.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.grid_models import ac_relaxation
from gridmatch.grid_models.ac_relaxation import ac_case, solve_ac_relaxation
from gridmatch.grid_models.security import SecurityLimits, SlotGrid
from gridmatch.matching.market_rules import MarketRules
from gridmatch.matching.orders import Order, OrderBook, Side
from gridmatch.matching.problem import SlotProblem, build_slot_problems

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
LIMITS = SecurityLimits()


def _problem(orders: list[Order]) -> SlotProblem:
    book = OrderBook(orders)
    (problem,) = build_slot_problems(book, MarketRules(grid_fee_eur_per_kwh=0.01))
    return problem


def _grid(net: pp.pandapowerNet, problem: SlotProblem, load_scaling: float) -> SlotGrid:
    return SlotGrid(net, [load_scaling], None, 1.0, trade_buses=problem.order_buses())


def _bound(grid: SlotGrid, problem: SlotProblem) -> float:
    base = grid.base_network(problem.slot)
    assert base is not None
    case = ac_case(base[0], base[1], LIMITS)
    assert case is not None
    found = solve_ac_relaxation(case, problem, grid.slot_hours)
    assert found is not None
    return found.bound_eur


def _secure(grid: SlotGrid, problem: SlotProblem, pair_kwh: np.ndarray) -> bool:
    buses = problem.order_buses()
    injection = problem.bus_injection_kwh(buses, pair_kwh)
    by_bus = {int(b): float(v) for b, v in zip(buses, injection, strict=True) if v != 0.0}
    if not by_bus:
        return True
    return grid.check(problem.slot, by_bus, LIMITS).secure


def _brute_force_secure_optimum(grid: SlotGrid, problem: SlotProblem) -> float:
    """Best welfare over every assignment of the (indivisible) buys, AC-checked."""
    n_buy = problem.buy_order.size
    choices = [[-1, *np.flatnonzero(problem.pair_buy == b).tolist()] for b in range(n_buy)]
    best = 0.0
    for pick in itertools.product(*choices):
        kwh = np.zeros(problem.n_pairs)
        for b, p in enumerate(pick):
            if p >= 0:
                kwh[p] = problem.buy_quantity_kwh[b]
        sold = np.bincount(problem.pair_sell, kwh, problem.sell_order.size)
        if np.any(sold > problem.sell_quantity_kwh + 1e-9):
            continue
        welfare = problem.welfare_eur(kwh)
        if welfare > best and _secure(grid, problem, kwh):
            best = welfare
    return best


@st.composite
def _books(draw: st.DrawFn) -> list[Order]:
    buses = list(range(1, 33))
    orders = []
    for k in range(draw(st.integers(1, 2))):
        orders.append(
            Order(f"s{k}", f"s{k}", Side.SELL, draw(st.sampled_from(buses)), 0,
                  float(draw(st.integers(200, 2500))), 0.05, True)
        )  # fmt: skip
    for k in range(draw(st.integers(1, 4))):
        orders.append(
            Order(f"b{k}", f"b{k}", Side.BUY, draw(st.sampled_from(buses)), 0,
                  float(draw(st.integers(100, 1500))), draw(st.sampled_from([0.2, 0.3])), False)
        )  # fmt: skip
    return orders


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders=_books(), load_scaling=st.sampled_from([0.6, 1.0]))
def test_no_secure_assignment_beats_the_certificate(
    orders: list[Order], load_scaling: float
) -> None:
    problem = _problem(orders)
    if problem.n_pairs == 0:
        return
    grid = _grid(pn.case33bw(), problem, load_scaling)
    bound = _bound(grid, problem)
    assert _brute_force_secure_optimum(grid, problem) <= bound + 1e-9
    # The certificate never claims much more than the grid-blind LP allows (the safe
    # dual bound may sit a few 1e-8 above it; the clearing takes the lower of the two).
    trivial = float(problem.pair_max_kwh() @ problem.pair_welfare_eur_per_kwh)
    assert bound <= trivial * (1 + 1e-6) + 1e-6


def test_the_certificate_is_tight_where_the_lp_ignores_the_grid() -> None:
    """The feeder's head sells to its far end: the voltage band, not the market, binds."""
    orders = [Order("s0", "s0", Side.SELL, 1, 0, 4000.0, 0.05, True)]
    orders += [Order(f"b{k}", f"b{k}", Side.BUY, 14 + k, 0, 800.0, 0.3, True) for k in range(4)]
    problem = _problem(orders)
    grid = _grid(pn.case33bw(), problem, 0.3)
    bound = _bound(grid, problem)
    lp_bound = float(problem.pair_welfare_eur_per_kwh.max() * 3200.0)
    assert bound < 0.8 * lp_bound
    # Divisible orders: the relaxation's own trades, shrunk a little, are AC-secure and
    # within 1 % of the bound (on a radial feeder under a lower voltage limit the
    # relaxation is all but exact; under an upper one with reverse flow it is not).
    base = grid.base_network(0)
    assert base is not None
    case = ac_case(base[0], base[1], LIMITS)
    assert case is not None
    found = solve_ac_relaxation(case, problem, 1.0)
    assert found is not None
    secure_kwh = 0.995 * found.pair_quantity_kwh
    assert _secure(grid, problem, secure_kwh)
    assert problem.welfare_eur(secure_kwh) >= 0.99 * bound


def test_the_case_read_back_matches_pandapower_on_the_bundled_grids() -> None:
    for net in (pn.create_cigre_network_lv(), pn.case33bw(), pn.create_cigre_network_mv()):
        pp.runpp(net)
        before = _base_state(net)
        assert ac_case(net, before, LIMITS) is not None


def _base_state(net: pp.pandapowerNet) -> object:
    import pandas as pd

    parts = []
    for element, table, result, quantity in (
        ("line", net.line, "res_line", "loading_percent"),
        ("trafo", net.trafo, "res_trafo", "loading_percent"),
        ("trafo3w", net.trafo3w, "res_trafo3w", "loading_percent"),
        ("bus", net.bus, "res_bus", "vm_pu"),
    ):
        index = table.index[table.in_service.to_numpy(dtype=bool)]
        values = net[result][quantity].reindex(index).to_numpy(dtype=float)
        parts.append(pd.DataFrame({"element": element, "index": index, "quantity": quantity,
                                   "v": values}))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def test_a_network_the_relaxation_does_not_model_is_refused() -> None:
    net = pn.case33bw()
    pp.create_gen(net, 10, p_mw=0.1, vm_pu=1.0)
    pp.runpp(net)
    assert ac_relaxation.unsupported_reason(net) == "in-service gen elements"
    assert ac_case(net, _base_state(net), LIMITS) is None


def test_a_poor_dual_vector_still_gives_a_valid_bound() -> None:
    """The safe dual bound: any dual vector bounds from above, the optimal one tightest."""
    orders = [Order("s0", "s0", Side.SELL, 17, 0, 4000.0, 0.05, True)]
    orders += [Order(f"b{k}", f"b{k}", Side.BUY, 2 + k, 0, 800.0, 0.3, True) for k in range(5)]
    problem = _problem(orders)
    grid = _grid(pn.case33bw(), problem, 0.6)
    base = grid.base_network(0)
    assert base is not None
    case = ac_case(base[0], base[1], LIMITS)
    assert case is not None
    program = ac_relaxation._conic_program(case, problem, 1.0)
    exact = _bound(grid, problem)
    rng = np.random.default_rng(0)
    n_rows = program.b.size
    for z in (np.zeros(n_rows), rng.normal(size=n_rows)):
        weak = ac_relaxation._safe_welfare_bound(program, z)
        assert weak is None or weak >= exact - 1e-9


@pytest.mark.parametrize("scenario", ["cigre-lv-day", "case33bw-evening"])
def test_secure_clearing_reports_the_certificate_and_splits_the_gap(
    tmp_path: Path, scenario: str
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["clear", str(SCENARIOS / scenario), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["secure"] is True
    certified = set(summary["ac_certified_slots"])
    assert certified
    for slot in summary["slots"]:
        assert (slot["certified_by"] == "ac_relaxation") == (slot["slot"] in certified)
        if slot["slot"] in certified:
            assert slot["welfare_eur"] <= slot["bound_eur"] + 1e-9
            assert slot["bound_eur"] <= slot["lp_bound_eur"] + 1e-6
    total = summary["market_gap"] + summary["security_gap"]
    assert total == pytest.approx(summary["gap"], abs=1e-12)
    assert summary["bound_eur"] < summary["lp_bound_eur"]


def _three_winding_net() -> pp.pandapowerNet:
    """20 kV grid, a 20/0.4/0.4 kV three-winding transformer feeding two LV buses."""
    net = pp.create_empty_network()
    mv = pp.create_bus(net, 20.0)
    lv_a, lv_b = pp.create_bus(net, 0.4), pp.create_bus(net, 0.4)
    pp.create_ext_grid(net, mv)
    pp.create_transformer3w_from_parameters(
        net, mv, lv_a, lv_b, vn_hv_kv=20.0, vn_mv_kv=0.4, vn_lv_kv=0.4,
        sn_hv_mva=0.4, sn_mv_mva=0.25, sn_lv_mva=0.25, vk_hv_percent=6.0,
        vk_mv_percent=6.0, vk_lv_percent=6.0, vkr_hv_percent=0.5, vkr_mv_percent=0.5,
        vkr_lv_percent=0.5, pfe_kw=0.5, i0_percent=0.1,
    )  # fmt: skip
    pp.create_load(net, lv_a, p_mw=0.05, q_mvar=0.01)
    pp.create_load(net, lv_b, p_mw=0.05, q_mvar=0.01)
    return net


def test_a_three_winding_transformer_is_modelled_and_its_windings_bind() -> None:
    # Sellers behind one LV winding sell to buyers behind the other: both windings
    # (250 kVA) carry the trade, and the certificate must hold them to it.
    net = _three_winding_net()
    pp.runpp(net)
    case = ac_case(net, _base_state(net), LIMITS)
    assert case is not None and "trafo3w" in case.ends.element
    orders = [Order("s0", "s0", Side.SELL, 1, 0, 400.0, 0.05, True)]
    orders += [Order(f"b{k}", f"b{k}", Side.BUY, 2, 0, 100.0, 0.3, False) for k in range(4)]
    problem = _problem(orders)
    grid = _grid(net, problem, 1.0)
    bound = _bound(grid, problem)
    best = _brute_force_secure_optimum(grid, problem)
    assert 0.0 < best <= bound + 1e-9
    lp_bound = float(problem.pair_max_kwh() @ problem.pair_welfare_eur_per_kwh)
    assert bound < 0.75 * lp_bound  # 400 kW sold through 250 kVA windings
