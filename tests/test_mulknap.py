"""The exact knapsack parts and the mulknap formulation, against brute force and HiGHS."""

from __future__ import annotations

import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from book_check import checked_welfare
from hypothesis import given, settings
from hypothesis import strategies as st

from gridmatch.matching.backends import highs_runner
from gridmatch.matching.backends.registry import get_backend
from gridmatch.matching.clearing import check_allocation, clear_orders
from gridmatch.matching.knapsack_exact import fill_exactly, solve_knapsack
from gridmatch.matching.knapsack_model import KnapsackArrays, build_knapsack_arrays
from gridmatch.matching.market_rules import MarketRules, PricingRule
from gridmatch.matching.orders import Order, OrderBook, Side
from gridmatch.matching.problem import SlotProblem, build_slot_problems
from gridmatch.matching.solution import (
    BoundSource,
    SolveOptions,
    SolverFailedError,
    TerminationCondition,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from bench_knapsack import hard_book
from pisinger import CLASSES, pisinger_book


def _brute_force(weights: list[int], profits: list[float], capacity: int) -> float:
    return max(
        sum(p for p, take in zip(profits, mask, strict=True) if take)
        for mask in itertools.product([False, True], repeat=len(weights))
        if sum(w for w, take in zip(weights, mask, strict=True) if take) <= capacity
    )


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.integers(1, 50), min_size=1, max_size=11),
    profit_of=st.sampled_from(["random", "strongly", "subset-sum"]),
    seed=st.integers(0, 10_000),
    capacity_share=st.floats(0.0, 1.2),
)
def test_single_knapsack_is_solved_and_proven_exactly(
    weights: list[int], profit_of: str, seed: int, capacity_share: float
) -> None:
    rng = np.random.default_rng(seed)
    if profit_of == "random":
        profits = (rng.integers(0, 60, len(weights)) / 7).tolist()
    elif profit_of == "strongly":
        profits = [w + 10.0 for w in weights]
    else:
        profits = [float(w) for w in weights]
    capacity = int(capacity_share * sum(weights))
    answer = solve_knapsack(
        np.array(weights, dtype=np.int64), np.array(profits), capacity, time.perf_counter() + 10
    )
    assert answer.proven
    assert int(np.array(weights)[answer.chosen].sum()) <= capacity
    assert math.isclose(answer.value, float(np.array(profits)[answer.chosen].sum()), abs_tol=1e-9)
    assert math.isclose(answer.value, _brute_force(weights, profits, capacity), abs_tol=1e-9)
    assert answer.upper_bound >= answer.value - 1e-9


def test_an_unproven_knapsack_keeps_a_valid_bound() -> None:
    # A deadline already past: no core is searched, the answer is greedy and the bound
    # is still an upper bound of the optimum.
    rng = np.random.default_rng(3)
    weights = rng.integers(10, 100, 12)
    profits = (weights + 10).astype(float)
    capacity = int(weights.sum() // 2)
    answer = solve_knapsack(weights, profits, capacity, deadline=0.0)
    optimum = _brute_force(weights.tolist(), profits.tolist(), capacity)
    assert answer.value <= optimum + 1e-9 <= answer.upper_bound + 2e-9


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(st.integers(1, 40), min_size=0, max_size=10),
    capacity=st.integers(0, 150),
)
def test_filling_reaches_the_largest_subset_sum(weights: list[int], capacity: int) -> None:
    chosen = fill_exactly(np.array(weights, dtype=np.int64), capacity)
    filled = sum(w for w, c in zip(weights, chosen, strict=True) if c)
    assert filled <= capacity
    assert filled == _brute_force(weights, [float(w) for w in weights], capacity)


def _brute_force_mkp(book: OrderBook) -> float:
    """Every assignment of each buy to one seller or none (textbook books: one price)."""
    buys = [o for o in book.orders if o.side.value == "buy"]
    sells = [o for o in book.orders if o.side.value == "sell"]
    room = [round(s.quantity_kwh * 1000) for s in sells]
    best = 0.0

    def place(k: int, value: float) -> None:
        nonlocal best
        if k == len(buys):
            best = max(best, value)
            return
        place(k + 1, value)
        wh = round(buys[k].quantity_kwh * 1000)
        for i in range(len(sells)):
            if room[i] >= wh:
                room[i] -= wh
                place(k + 1, value + buys[k].quantity_kwh * buys[k].limit_price_eur_per_kwh)
                room[i] += wh

    place(0, 0.0)
    return best


@pytest.mark.parametrize("kind", CLASSES)
@pytest.mark.parametrize("seed", range(4))
def test_small_pisinger_books_reach_the_brute_force_optimum(kind: str, seed: int) -> None:
    book = pisinger_book(kind, 9, 3, seed)
    result = clear_orders(book, MarketRules(), get_backend("mulknap"), SolveOptions())
    assert result.status.value == "optimal" and result.gap <= 2e-9
    welfare = checked_welfare(book, result.trades)
    assert math.isclose(welfare, _brute_force_mkp(book), rel_tol=1e-12, abs_tol=1e-9)


@pytest.mark.parametrize("kind", CLASSES)
def test_pisinger_books_are_proven_where_highs_is_not(kind: str) -> None:
    # 40 buys, 4 sellers: HiGHS and CP-SAT often cannot close these in 20 s; the
    # surrogate proves them. HiGHS's answer and bound must bracket ours.
    book = pisinger_book(kind, 40, 4, 1)
    rules = MarketRules()
    ours = clear_orders(book, rules, get_backend("mulknap"), SolveOptions(time_limit_s=20))
    assert ours.status.value == "optimal" and ours.gap <= 2e-9
    welfare = checked_welfare(book, ours.trades)
    assert math.isclose(welfare, ours.welfare_eur, rel_tol=1e-12, abs_tol=1e-9)
    highs = clear_orders(book, rules, get_backend("highspy"), SolveOptions(time_limit_s=2))
    assert highs.welfare_eur <= welfare + 1e-6 <= highs.bound_eur + 2e-6


def test_the_surrogate_certifies_what_the_lp_cannot() -> None:
    # Strongly correlated: the LP bound leaves a gap, the surrogate knapsack closes it.
    book = pisinger_book("strongly", 300, 10, 7)
    result = clear_orders(
        book, MarketRules(), get_backend("mulknap"), SolveOptions(time_limit_s=2.0)
    )
    [slot] = result.slots
    assert slot.certified_by is BoundSource.SURROGATE
    # Proven by the filling itself: no branching that would run into the limit.
    assert slot.termination.value == "converged"
    assert slot.bound_eur is not None and slot.bound_eur < slot.lp_bound_eur
    assert result.gap <= 2e-9 and result.status.value == "optimal"


@pytest.mark.parametrize(
    "formulation", ["highspy", "mulknap", "cpsat", "pyomo-highs", "pyomo-textbook"]
)
def test_a_book_that_cannot_be_solved_in_the_limit_stops_and_says_so(formulation: str) -> None:
    # How close the wall time stays to the limit is measured in benchmarks/bench_knapsack.py.
    book = hard_book(3000, 30, seed=5)
    result = clear_orders(
        book, MarketRules(), get_backend(formulation), SolveOptions(time_limit_s=1.0, mip_gap=0.0)
    )
    assert result.status.value != "optimal"
    assert any(s.termination.value == "time_limit" for s in result.slots)
    assert result.gap > 0.0


def _small_arrays() -> KnapsackArrays:
    (problem,) = build_slot_problems(hard_book(60, 5, seed=2), MarketRules())
    return build_knapsack_arrays(problem)


def test_a_killable_highs_run_gives_the_same_answer_as_one_in_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arrays = _small_arrays()
    options = SolveOptions(time_limit_s=20.0, mip_gap=0.0)
    here = highs_runner.run_highs(arrays, options, 20.0, relax=False)
    monkeypatch.setattr(highs_runner, "GUARD_NONZEROS", 0)
    forked = highs_runner.run_highs(arrays, options, 20.0, relax=False)
    assert forked.termination is here.termination
    assert forked.col_values is not None and here.col_values is not None
    assert np.array_equal(forked.col_values, here.col_values)
    assert forked.bound_eur == here.bound_eur


def test_a_highs_run_past_its_deadline_is_killed_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HiGHS stuck where it does not look at its clock (here: asleep) is killed."""

    def stuck(*args: object) -> None:
        time.sleep(60)

    monkeypatch.setattr(highs_runner, "GUARD_NONZEROS", 0)
    monkeypatch.setattr(highs_runner, "_run_here", stuck)
    began = time.perf_counter()
    answer = highs_runner.run_highs(_small_arrays(), SolveOptions(), 0.2, relax=False)
    assert time.perf_counter() - began < 30  # killed, not slept out
    assert answer.col_values is None and answer.bound_eur is None
    assert answer.termination is TerminationCondition.TIME_LIMIT


def test_a_highs_failure_in_its_process_is_a_solver_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object) -> None:
        raise ValueError("bad model")

    monkeypatch.setattr(highs_runner, "GUARD_NONZEROS", 0)
    monkeypatch.setattr(highs_runner, "_run_here", broken)
    with pytest.raises(SolverFailedError, match="bad model"):
        highs_runner.run_highs(_small_arrays(), SolveOptions(), 5.0, relax=False)


def test_uniform_price_is_the_pools_marginal_price_clipped_into_each_pair() -> None:
    from gridmatch.matching.market_rules import PricingRule
    from gridmatch.matching.orders import Order, Side

    # Merit order: s1 (4 kWh at 0.10) then s2 (0.25) serve b1 (0.30); s2 is marginal.
    # The indivisible b3 (0.40) is served too; the fee of 0.02 clips no price here.
    book = OrderBook(
        (
            Order("b1", "B1", Side.BUY, 0, 0, 5.0, 0.30, True),
            Order("b2", "B2", Side.BUY, 0, 0, 5.0, 0.20, True),
            Order("b3", "B3", Side.BUY, 0, 0, 2.0, 0.40, False),
            Order("s1", "S1", Side.SELL, 0, 0, 4.0, 0.10, True),
            Order("s2", "S2", Side.SELL, 0, 0, 10.0, 0.25, True),
        )
    )
    rules = MarketRules(pricing=PricingRule.UNIFORM, grid_fee_eur_per_kwh=0.02)
    result = clear_orders(book, rules, get_backend("highspy"), SolveOptions())
    assert result.trades, "something trades"
    for t in result.trades:
        buy, sell = book.orders[t.buy_order].order_id, book.orders[t.sell_order].order_id
        sell_limit = {"s1": 0.10, "s2": 0.25}[sell]
        buy_max = {"b1": 0.30, "b2": 0.20, "b3": 0.40}[buy] - 0.02
        expected = min(max(0.25, sell_limit), buy_max)
        assert math.isclose(t.price_eur_per_kwh, expected, abs_tol=1e-9), (buy, sell)
    checked_welfare(book, result.trades, 0.02, "uniform")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 100_000), fee=st.sampled_from([0.0, 0.01, 0.05]))
def test_uniform_prices_pass_the_independent_checker(seed: int, fee: float) -> None:
    from gridmatch.matching.market_rules import PricingRule
    from gridmatch.matching.orders import Order, Side

    rng = np.random.default_rng(seed)
    orders = [
        Order(
            f"o{k}",
            f"p{k}",
            Side.BUY if k % 2 else Side.SELL,
            1,
            int(rng.integers(0, 2)),
            int(rng.integers(100, 6000)) / 1000,
            int(rng.integers(0, 40)) / 100,
            bool(rng.integers(0, 2)),
        )
        for k in range(int(rng.integers(2, 12)))
    ]
    book = OrderBook(tuple(orders))
    rules = MarketRules(pricing=PricingRule.UNIFORM, grid_fee_eur_per_kwh=fee)
    result = clear_orders(book, rules, get_backend("highspy"), SolveOptions())
    checked_welfare(book, result.trades, fee, "uniform")


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 100_000), per_km=st.sampled_from([0.0, 0.02]))
def test_lagrangian_bound_lies_between_the_optimum_and_the_lp(seed: int, per_km: float) -> None:
    from gridmatch.matching.backends.lagrangian import lagrangian_bound
    from gridmatch.matching.clearing import lp_bounds_eur
    from gridmatch.matching.orders import Order, Side
    from gridmatch.matching.problem import build_slot_problems

    rng = np.random.default_rng(seed)
    n_buys, n_sells = int(rng.integers(1, 9)), int(rng.integers(1, 4))
    orders = [
        Order(
            f"b{j}",
            f"B{j}",
            Side.BUY,
            int(rng.integers(0, 3)),
            0,
            int(rng.integers(100, 3000)) / 1000,
            int(rng.integers(10, 40)) / 100,
            False,
        )
        for j in range(n_buys)
    ] + [
        Order(
            f"s{i}",
            f"S{i}",
            Side.SELL,
            int(rng.integers(0, 3)),
            0,
            int(rng.integers(500, 6000)) / 1000,
            int(rng.integers(0, 20)) / 100,
            bool(rng.integers(0, 2)),
        )
        for i in range(n_sells)
    ]
    book = OrderBook(tuple(orders))
    distance = np.abs(np.subtract.outer(np.arange(3.0), np.arange(3.0)))
    rules = MarketRules(grid_fee_eur_per_kwh=0.01, grid_fee_eur_per_kwh_per_km=per_km)
    buses = np.unique(book.bus)
    [problem] = build_slot_problems(book, rules, distance[np.ix_(buses, buses)])
    if problem.n_pairs == 0:
        return
    exact = clear_orders(
        book,
        rules,
        get_backend("highspy"),
        SolveOptions(mip_gap=0.0),
        distance[np.ix_(buses, buses)],
    )
    assert exact.status.value == "optimal"
    found = lagrangian_bound(problem, exact.welfare_eur, time.perf_counter() + 10)
    assert found is not None
    bound = found.bound_eur
    assert exact.welfare_eur <= bound + 1e-9
    assert bound <= lp_bounds_eur([problem])[0] + 1e-6


def _dp_optimum(
    weights: npt.NDArray[np.int64], profits: npt.NDArray[np.float64], capacity: int
) -> float:
    """Plain 0/1 knapsack DP (independent oracle)."""
    best = np.zeros(capacity + 1)
    for w, p in zip(weights.tolist(), profits.tolist(), strict=True):
        if p > 0 and w <= capacity:
            best[w:] = np.maximum(best[w:], best[: capacity + 1 - w] + p)
    return float(best[capacity])


def _near_tie_slot(seed: int = 4) -> SlotProblem:
    """Indivisible buys of 1-99 kWh at 0.300000-0.300002 EUR/kWh, one seller at 0."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 300))
    w = rng.integers(1, 100, n)
    limit = np.round(0.30 + rng.integers(0, 3, n) * 1e-6, 6)
    capacity = int(rng.uniform(0.2, 0.8) * w.sum())
    orders = [
        Order(f"b{j}", f"B{j}", Side.BUY, 0, 0, float(w[j]), float(limit[j]), False)
        for j in range(n)
    ]
    orders.append(Order("s", "S", Side.SELL, 0, 0, float(capacity), 0.0, True))
    [problem] = build_slot_problems(OrderBook(tuple(orders)), MarketRules())
    return problem


def test_a_proven_knapsack_bound_covers_the_optimum_on_near_ties() -> None:
    # Review finding: items fixed within the tolerance could leave the bound below it.
    problem = _near_tie_slot()
    weights = problem.buy_quantity_wh()[problem.pair_buy]
    profits = problem.pair_welfare_eur_per_kwh * problem.buy_quantity_kwh[problem.pair_buy]
    capacity = int(problem.sell_quantity_wh()[0])
    answer = solve_knapsack(weights, profits, capacity, time.perf_counter() + 10)
    optimum = _dp_optimum(weights, profits, capacity)
    assert answer.proven
    assert answer.upper_bound >= optimum - 1e-9, (answer.upper_bound, optimum)


def test_mulknap_bound_covers_the_optimum_on_near_ties() -> None:
    problem = _near_tie_slot()
    weights = problem.buy_quantity_wh()[problem.pair_buy]
    profits = problem.pair_welfare_eur_per_kwh * problem.buy_quantity_kwh[problem.pair_buy]
    optimum = _dp_optimum(weights, profits, int(problem.sell_quantity_wh()[0]))
    solution = get_backend("mulknap").solve_slot(problem, SolveOptions(mip_gap=0.0), 10.0)
    check_allocation(problem, solution.pair_quantity_kwh)
    assert solution.status.value == "optimal" and solution.bound_source.value == "surrogate"
    assert solution.bound_eur is not None
    assert solution.bound_eur >= optimum - 1e-9, (solution.bound_eur, optimum)


def test_an_order_that_cannot_trade_does_not_set_the_uniform_price() -> None:
    # s1 sells 5 of its 10 kWh at 0.10 to b1; b2 is s1's own participant (no pair).
    # Review finding: the pool let b2 buy s1's rest and priced b1's trade at b1's limit.
    book = OrderBook(
        (
            Order("b1", "B1", Side.BUY, 0, 0, 5.0, 0.30, True),
            Order("b2", "S1", Side.BUY, 0, 0, 20.0, 0.35, True),
            Order("s1", "S1", Side.SELL, 0, 0, 10.0, 0.10, True),
        )
    )
    result = clear_orders(
        book, MarketRules(pricing=PricingRule.UNIFORM), get_backend("highspy"), SolveOptions()
    )
    [trade] = result.trades
    assert trade.quantity_kwh == 5.0
    # The marginal seller has spare volume at 0.10: the marginal price of this allocation.
    assert abs(trade.price_eur_per_kwh - 0.10) < 1e-9, trade.price_eur_per_kwh
