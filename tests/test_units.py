"""The one kWh -> whole-Wh rule (rounded down), at every hop where energy becomes Wh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridmatch.matching.orders import Order, OrderBook, Side
from gridmatch.results_io.folder import ResultFiles, write_result
from gridmatch.results_io.rows import OrderRow, OrderStatus, TradeRow, order_status
from gridmatch.results_io.summary import SlotSummary, Summary
from gridmatch.rounds.schedule import CarryOver
from gridmatch.scenario_io.schema import RoundsSpec
from gridmatch.settlement.meters import read_meter_csv
from gridmatch.settlement.round_data import read_round
from gridmatch.units import (
    WH_FLOAT_SLACK,
    exact_micro_eur,
    exact_wh,
    floor_wh,
    floor_wh_array,
    remaining_wh,
)

KWH = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(KWH)
def test_floor_wh_never_counts_more_than_the_energy(kwh: float) -> None:
    wh = floor_wh(kwh)
    assert wh <= kwh * 1000 + WH_FLOAT_SLACK
    assert wh > kwh * 1000 - 1
    assert floor_wh_array(np.array([kwh]))[0] == wh


@given(st.integers(0, 10**9))
def test_whole_wh_survive_float_noise(wh: int) -> None:
    kwh = wh / 1000
    assert floor_wh(kwh) == wh == int(exact_wh(kwh))
    assert floor_wh(sum([kwh / 3] * 3)) == wh or abs(sum([kwh / 3] * 3) - kwh) > 1e-9


@given(st.integers(1, 10**6), st.floats(0.0, 1.0))
def test_what_is_left_of_an_order_never_exceeds_its_quantity(
    quantity_wh: int, share: float
) -> None:
    traded_kwh = quantity_wh / 1000 * share
    left = int(remaining_wh(np.array([quantity_wh]), np.array([traded_kwh]))[0])
    assert 0 <= left <= quantity_wh
    # traded + left never exceeds the order (beyond float noise).
    assert traded_kwh * 1000 + left <= quantity_wh + WH_FLOAT_SLACK


@given(st.integers(1, 10**6), st.floats(0.0, 1.0))
def test_the_status_rule_follows_the_wh_rule(quantity_wh: int, share: float) -> None:
    quantity_kwh = quantity_wh / 1000
    filled = quantity_kwh * share
    status = order_status(quantity_kwh, filled)
    left = int(remaining_wh(np.array([quantity_wh]), np.array([filled]))[0])
    if filled <= 1e-6:
        assert status is OrderStatus.UNFILLED
    elif left == 0:
        assert status is OrderStatus.FILLED
    else:
        assert status is OrderStatus.PARTIALLY_FILLED


def test_rounds_carry_whole_wh_down(tmp_path: Path) -> None:
    # A divisible sell of 1 kWh trades 0.3004 kWh in a round (grid rows make fractional
    # fills): the next round may offer 699 Wh, not 700.
    orders = (
        Order("s", "ps", Side.SELL, 1, 5, 1.0, 0.1, True),
        Order("b", "pb", Side.BUY, 2, 5, 1.0, 0.3, True),
    )
    carry = CarryOver(
        OrderBook(orders), (0, 0), 60.0, RoundsSpec(interval_min=30), track_background=False
    )
    carry.record_trades([(5, "b", "s", 0.3004, 0.06)])  # 0.06 EUR paid by "pb"
    assert carry.remaining_wh().tolist() == [699, 699]
    book = carry.round_input(
        2, 30, "greedy", __import__("gridmatch").matching.solution.SolveOptions()
    ).book
    assert [o.quantity_kwh for o in book.orders] == [0.699, 0.699]


def _settlement_folder(folder: Path, quantity_kwh: float) -> Path:
    """A result folder of one trade of ``quantity_kwh`` between two orders of 1e5 kWh."""
    buy = Order("b", "alice", Side.BUY, 5, 0, 1e5, 0.3, True)
    sell = Order("s", "carol", Side.SELL, 17, 0, 1e5, 0.1, True)
    trade = TradeRow(0, "b", "s", "alice", "carol", 5, 17, quantity_kwh, 0.2, 0.01, 0.3, 0.1, 0.0)
    summary = Summary(
        scenario="units",
        status="heuristic",
        welfare_eur=0.0,
        bound_eur=None,
        gap=None,
        formulation="none",
        solver="none",
        solver_version="n/a",
        runtime_s=0.0,
        secure=None,
        n_orders=2,
        n_trades=1,
        traded_kwh=quantity_kwh,
        day_start_utc="2026-12-01T00:00:00+00:00",
        max_fee_eur_per_kwh=0.01,
        slots=(
            SlotSummary(
                slot=0, n_buy_orders=1, n_sell_orders=1, welfare_eur=0.0, termination="converged"
            ),
        ),
    )
    orders = [
        OrderRow(buy, quantity_kwh, OrderStatus.PARTIALLY_FILLED),
        OrderRow(sell, quantity_kwh, OrderStatus.PARTIALLY_FILLED),
    ]
    write_result(folder, ResultFiles([trade], orders, summary, {"units": True}))
    return folder


@settings(max_examples=50, deadline=None)
@given(st.floats(0.001, 1e5))
def test_settlement_locks_whole_wh_rounded_down(tmp_path_factory, quantity_kwh: float) -> None:  # type: ignore[no-untyped-def]
    folder = _settlement_folder(tmp_path_factory.mktemp("settle") / "out", quantity_kwh)
    chain_round = read_round(folder)
    (trade,) = chain_round.trades
    assert trade.quantity_wh == floor_wh(quantity_kwh)
    assert trade.quantity_wh <= quantity_kwh * 1000 + WH_FLOAT_SLACK
    # What is not settled is recorded, and settled + unsettled = traded.
    unsettled = sum(u.unsettled_kwh for u in chain_round.unsettled)
    assert abs(trade.quantity_wh / 1000 + unsettled - quantity_kwh) < 1e-9


def test_meter_readings_count_whole_wh_rounded_down(tmp_path: Path) -> None:
    meters = tmp_path / "meters.csv"
    meters.write_text("meter_id,slot,exported_kwh,imported_kwh\ncarol,0,1.5009,1.4991\n")
    (reading,) = read_meter_csv(meters)
    assert (reading.exported_wh, reading.imported_wh) == (1500, 1499)


@pytest.mark.parametrize(
    "text", ["0.5000000000000000000000000000009", "999999.9999999999999999999999999"]
)
def test_an_amount_finer_than_a_micro_eur_is_refused_however_many_digits(text: str) -> None:
    # Under decimal's default 28 digits these were rounded to whole micro-EUR first.
    with pytest.raises(ValueError, match="finer than 1 micro-EUR"):
        exact_micro_eur(text)
