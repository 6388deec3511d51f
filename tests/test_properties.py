"""Generated small instances: every exact backend agrees, greedy <= optimum <= LP bound,
and on all-indivisible instances the optimum equals a brute-force enumeration."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

from book_check import checked_welfare
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridmatch.matching.backends.base import BackendKind
from gridmatch.matching.backends.registry import BACKENDS, executable_formulations, get_backend
from gridmatch.matching.clearing import ClearingResult, clear_orders
from gridmatch.matching.market_rules import MarketRules
from gridmatch.matching.orders import Order, OrderBook, Side
from gridmatch.matching.solution import SolveOptions

OPTIONS = SolveOptions(time_limit_s=20, mip_gap=1e-9, threads=1, seed=0)
EXACT = [f for f in executable_formulations() if BACKENDS[f].kind is BackendKind.EXACT]
HEURISTIC = [f for f in executable_formulations() if BACKENDS[f].kind is BackendKind.HEURISTIC]


@st.composite
def order_books(draw: st.DrawFn, *, divisible_buys: bool = True, max_buys: int = 6) -> OrderBook:
    orders = []
    for slot in range(draw(st.integers(1, 2))):
        n_buys = draw(st.integers(1, max_buys))
        n_sells = draw(st.integers(1, 3))
        for k in range(n_buys + n_sells):
            side = Side.BUY if k < n_buys else Side.SELL
            divisible = draw(st.booleans()) if (side is Side.SELL or divisible_buys) else False
            orders.append(
                Order(
                    order_id=f"{side.value}-{slot}-{k}",
                    # A small pool: some books pair a participant's buy and sell.
                    participant_id=f"p{draw(st.integers(0, 4))}",
                    side=side,
                    bus=1,
                    slot=slot,
                    quantity_kwh=draw(st.integers(100, 6000)) / 1000,
                    limit_price_eur_per_kwh=draw(st.integers(0, 40)) / 100,
                    divisible=divisible,
                )
            )
    return OrderBook(tuple(orders))


fees = st.sampled_from([0.0, 0.01, 0.05])


def _checked_welfare(book: OrderBook, result: ClearingResult, fee: float) -> float:
    welfare = checked_welfare(book, result.trades, fee)
    assert math.isclose(welfare, result.welfare_eur, rel_tol=1e-9, abs_tol=1e-9)
    return welfare


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=order_books(), fee=fees)
def test_exact_backends_agree_and_greedy_and_lp_bracket_them(book: OrderBook, fee: float) -> None:
    rules = MarketRules(grid_fee_eur_per_kwh=fee)
    optimum = None
    lp_bound = None
    for name in EXACT:
        result = clear_orders(book, rules, get_backend(name), OPTIONS)
        welfare = _checked_welfare(book, result, fee)
        assert result.status.value == "optimal", name
        if optimum is None:
            optimum, lp_bound = welfare, result.lp_bound_eur
        assert math.isclose(welfare, optimum, rel_tol=1e-6, abs_tol=1e-6), name
    assert optimum is not None and lp_bound is not None
    for name in HEURISTIC:
        heuristic = clear_orders(book, rules, get_backend(name), OPTIONS)
        assert _checked_welfare(book, heuristic, fee) <= optimum + 1e-9, name
    assert optimum <= lp_bound + 1e-9


def _brute_force_welfare(book: OrderBook, fee: float) -> float:
    """Try every assignment of each (indivisible) buy to one seller of its slot, or none."""
    by_slot: dict[int, list[Order]] = defaultdict(list)
    for order in book.orders:
        by_slot[order.slot].append(order)
    total = 0.0
    for orders in by_slot.values():
        buys = [o for o in orders if o.side is Side.BUY]
        sells = [o for o in orders if o.side is Side.SELL]
        best = 0.0
        for choice in itertools.product([None, *range(len(sells))], repeat=len(buys)):
            load = [0.0] * len(sells)
            welfare = 0.0
            ok = True
            for buy, s in zip(buys, choice, strict=True):
                if s is None:
                    continue
                surplus = buy.limit_price_eur_per_kwh - sells[s].limit_price_eur_per_kwh - fee
                if surplus < 0 or buy.participant_id == sells[s].participant_id:
                    ok = False
                    break
                load[s] += buy.quantity_kwh
                welfare += buy.quantity_kwh * surplus
            if not ok:
                continue
            for sell, kwh in zip(sells, load, strict=True):
                over = kwh > sell.quantity_kwh + 1e-9
                partial = not sell.divisible and 1e-9 < kwh < sell.quantity_kwh - 1e-9
                if over or partial:
                    ok = False
            if ok:
                best = max(best, welfare)
        total += best
    return total


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=order_books(divisible_buys=False, max_buys=5), fee=fees)
def test_exact_backends_equal_brute_force_on_indivisible_books(book: OrderBook, fee: float) -> None:
    rules = MarketRules(grid_fee_eur_per_kwh=fee)
    optimum = _brute_force_welfare(book, fee)
    for name in EXACT:
        result = clear_orders(book, rules, get_backend(name), OPTIONS)
        welfare = _checked_welfare(book, result, fee)
        assert math.isclose(welfare, optimum, rel_tol=1e-9, abs_tol=1e-9), name
        # Every bound a solver claims must hold, before the clearing takes the best one.
        solver_bounds = [r.bound_eur for r in result.slots]
        if all(b is not None for b in solver_bounds):
            assert sum(b for b in solver_bounds if b is not None) >= optimum - 1e-9, name
        assert result.lp_bound_eur >= optimum - 1e-9


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=order_books(max_buys=8), fee=fees)
def test_min_cost_flow_bound_equals_the_general_lp_relaxation(book: OrderBook, fee: float) -> None:
    # The certificate in every clearing is the flow form of the LP relaxation; a general
    # LP code on the knapsack arrays must find the same optimum.
    from gridmatch.matching.problem import build_slot_problems

    for problem in build_slot_problems(book, MarketRules(grid_fee_eur_per_kwh=fee)):
        flow = get_backend("lp-flow").solve_slot(problem, OPTIONS, 10.0)
        lp = get_backend("lp-relaxation").solve_slot(problem, OPTIONS, 10.0)
        assert flow.bound_eur is not None and lp.bound_eur is not None
        traded_wh = 1000 * float(problem.buy_quantity_kwh.sum())
        # Rounded up by at most one cost unit per Wh, never below the LP optimum.
        assert lp.bound_eur - 1e-9 <= flow.bound_eur <= lp.bound_eur + 1e-9 + 1e-12 * traded_wh
        assert math.isclose(problem.welfare_eur(flow.pair_quantity_kwh), lp.bound_eur, abs_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(st.integers(1, 40), min_size=0, max_size=9),
    values=st.lists(st.integers(0, 100), min_size=9, max_size=9),
    capacity=st.integers(0, 120),
)
def test_knapsack_dp_finds_the_best_subset(
    weights: list[int], values: list[int], capacity: int
) -> None:
    import numpy as np

    from gridmatch.matching.backends.seller_dp import best_subset

    value_of = [v / 7 for v in values[: len(weights)]]
    chosen = best_subset(np.array(weights, dtype=np.int64), np.array(value_of), capacity)
    assert sum(w for w, c in zip(weights, chosen, strict=True) if c) <= capacity
    best = max(
        sum(v for v, take in zip(value_of, mask, strict=True) if take)
        for mask in itertools.product([False, True], repeat=len(weights))
        if sum(w for w, take in zip(weights, mask, strict=True) if take) <= capacity
    )
    got = sum(v for v, c in zip(value_of, chosen, strict=True) if c)
    assert math.isclose(got, best, abs_tol=1e-9)
