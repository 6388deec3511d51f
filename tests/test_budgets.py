"""Prepaid budgets in matching: no buyer pays more than its account holds, in any formulation.

Budgets are checked by the independent checker (feasibility.py: quantity x (price + fee)
per buyer, from the trades alone), optima against brute force on small books.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from book_check import checked_welfare
from feasibility import check_result_folder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.matching.backends.registry import executable_formulations, get_backend
from gridmatch.matching.clearing import clear_orders
from gridmatch.matching.market_rules import MarketRules, PricingRule
from gridmatch.matching.orders import Order, OrderBook, Side

FEE = 0.01
EXACT = ["highspy", "mulknap", "two-stage", "pyomo-highs", "cpsat"]


def _book(rng: np.random.Generator, n_slots: int = 2) -> OrderBook:
    orders = []
    for slot in range(n_slots):
        for k in range(3):
            kwh = float(rng.integers(2, 9))
            price = round(float(rng.uniform(0.05, 0.12)), 3)
            orders.append(Order(f"s{slot}-{k}", f"pv{k}", Side.SELL, 1, slot, kwh, price, True))
        for k in range(6):
            kwh = float(rng.integers(1, 6))
            price = round(float(rng.uniform(0.2, 0.35)), 3)
            divisible = bool(rng.integers(0, 2))
            participant = f"home{k % 3}"
            order_id = f"b{slot}-{k}"
            orders.append(Order(order_id, participant, Side.BUY, 1, slot, kwh, price, divisible))
    return OrderBook(tuple(orders))


ACCOUNTS = {"home0": 0.9, "home1": 0.35, "home2": 0.0}


@pytest.mark.parametrize("formulation", executable_formulations())
@pytest.mark.parametrize("pricing", ["midpoint", "pay_as_bid", "uniform"])
def test_every_formulation_keeps_every_budget(formulation: str, pricing: str) -> None:
    book = _book(np.random.default_rng(7))
    rules = MarketRules(pricing=PricingRule(pricing), grid_fee_eur_per_kwh=FEE)
    free = clear_orders(book, rules, get_backend(formulation), _options())
    budgeted = clear_orders(book, rules, get_backend(formulation), _options(), None, ACCOUNTS)
    checked_welfare(book, budgeted.trades, FEE, pricing, available_eur=ACCOUNTS)
    # The budgets bind on this book: without them the homes pay more than they hold.
    with pytest.raises(AssertionError, match="pays"):
        checked_welfare(book, free.trades, FEE, pricing, available_eur=ACCOUNTS)
    assert budgeted.welfare_eur < free.welfare_eur
    assert budgeted.budget_limited  # some orders were left short for lack of money
    # home2 holds nothing: none of its orders trade.
    home2 = {k for k, o in enumerate(book.orders) if o.participant_id == "home2"}
    assert not any(t.buy_order in home2 for t in budgeted.trades)


def _options() -> object:
    from gridmatch.matching.solution import SolveOptions

    return SolveOptions(time_limit_s=20.0, mip_gap=0.0)


def _brute_force(book: OrderBook, rules: MarketRules, available: dict[str, float]) -> float:
    """Best welfare over every assignment of indivisible buys, one slot, budgets kept."""
    buys = [k for k, o in enumerate(book.orders) if o.side is Side.BUY]
    sells = [k for k, o in enumerate(book.orders) if o.side is Side.SELL]
    best = 0.0
    for pick in itertools.product([None, *sells], repeat=len(buys)):
        sold = dict.fromkeys(sells, 0.0)
        paid: dict[str, float] = {}
        welfare = 0.0
        feasible = True
        for b, s in zip(buys, pick, strict=True):
            if s is None:
                continue
            buy, sell = book.orders[b], book.orders[s]
            fee = rules.grid_fee_eur_per_kwh
            if buy.limit_price_eur_per_kwh < sell.limit_price_eur_per_kwh + fee:
                feasible = False
                break
            sold[s] += buy.quantity_kwh
            price = (buy.limit_price_eur_per_kwh - fee + sell.limit_price_eur_per_kwh) / 2
            paid[buy.participant_id] = paid.get(buy.participant_id, 0.0) + buy.quantity_kwh * (
                price + fee
            )
            welfare += buy.quantity_kwh * (
                buy.limit_price_eur_per_kwh - sell.limit_price_eur_per_kwh - fee
            )
        feasible = feasible and all(sold[s] <= book.orders[s].quantity_kwh + 1e-9 for s in sells)
        feasible = feasible and all(
            eur <= available.get(p, np.inf) + 1e-9 for p, eur in paid.items()
        )
        if feasible:
            best = max(best, welfare)
    return best


@st.composite
def _small_books(draw: st.DrawFn) -> tuple[OrderBook, dict[str, float]]:
    orders = []
    for k in range(draw(st.integers(1, 2))):
        kwh = float(draw(st.integers(2, 8)))
        price = draw(st.sampled_from([0.05, 0.08, 0.1]))
        orders.append(Order(f"s{k}", f"pv{k}", Side.SELL, 1, 0, kwh, price, True))
    for k in range(draw(st.integers(1, 5))):
        kwh = float(draw(st.integers(1, 5)))
        price = draw(st.sampled_from([0.2, 0.25, 0.3]))
        orders.append(Order(f"b{k}", f"h{k % 2}", Side.BUY, 1, 0, kwh, price, False))
    available = {"h0": draw(st.sampled_from([0.0, 0.3, 0.6, 1.2])), "h1": 0.5}
    return OrderBook(tuple(orders)), available


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_small_books())
def test_exact_formulations_find_the_budgeted_optimum(
    case: tuple[OrderBook, dict[str, float]],
) -> None:
    book, available = case
    rules = MarketRules(grid_fee_eur_per_kwh=FEE)
    best = _brute_force(book, rules, available)
    for formulation in EXACT:
        result = clear_orders(book, rules, get_backend(formulation), _options(), None, available)
        welfare = checked_welfare(book, result.trades, FEE, "midpoint", available_eur=available)
        assert welfare == pytest.approx(best, abs=1e-6), formulation


def test_money_is_spent_in_delivery_order() -> None:
    """One EUR buys slot 0's energy; slot 1 gets what is left, even at a better price."""
    orders = [
        Order("s0", "pv", Side.SELL, 1, 0, 10.0, 0.10, True),
        Order("s1", "pv", Side.SELL, 1, 1, 10.0, 0.10, True),
        Order("b0", "home", Side.BUY, 1, 0, 4.0, 0.26, True),
        Order("b1", "home", Side.BUY, 1, 1, 8.0, 0.40, True),
    ]
    book = OrderBook(tuple(orders))
    rules = MarketRules(pricing=PricingRule.PAY_AS_OFFER)
    result = clear_orders(book, rules, get_backend("highspy"), _options(), None, {"home": 1.0})
    by_slot = {t.slot: t.quantity_kwh for t in result.trades}
    assert by_slot[0] == pytest.approx(4.0)  # 0.40 EUR
    # The 0.60 EUR left buy 6 of 8 kWh (less the model's 1 µEUR of slack below the cap).
    assert by_slot[1] == pytest.approx(6.0, abs=1e-4)
    assert result.budget_limited == frozenset({3})


HEADER = "order_id,participant_id,side,bus,slot,quantity_kwh,limit_price_eur_per_kwh,divisible"


def _scenario(folder: Path, accounts: str, security: bool = False) -> Path:
    folder.mkdir(parents=True)
    yaml_text = (
        f"name: {folder.name}\nnetwork:\n  pandapower: create_cigre_network_lv\n"
        "market:\n  grid_fee_eur_per_kwh: 0.01\naccounts: accounts.csv\n"
    )
    if not security:
        yaml_text += "security:\n  enabled: false\n"
    (folder / "scenario.yaml").write_text(yaml_text)
    rows = [HEADER, "s1,pv,sell,12,0,30,0.08,true"]
    rows += [f"b{k},home{k},buy,{14 + k},0,6,0.30,true" for k in range(4)]
    (folder / "orders.csv").write_text("\n".join(rows) + "\n")
    (folder / "accounts.csv").write_text(accounts)
    return folder


@pytest.mark.parametrize("security", [False, True])
def test_orders_say_budget_when_money_cut_them(tmp_path: Path, security: bool) -> None:
    accounts = "participant_id,balance_eur,emergency_credit_eur\nhome0,0.5,0.1\nhome1,5,0\n"
    scenario = _scenario(tmp_path / "s", accounts, security)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["clear", str(scenario), "-o", str(out)])
    assert result.exit_code == 0, result.output
    check_result_folder(scenario, out)
    status = {r["order_id"]: r["status"] for r in csv.DictReader((out / "orders.csv").open())}
    # 0.6 EUR at 0.195 EUR/kWh (midpoint 0.185 + fee 0.01) buys 3.08 of home0's 6 kWh.
    assert status["b0"] == "budget"
    if security:
        # The grid holds some of the others back (not money: they say so).
        summary = json.loads((out / "summary.json").read_text())
        assert summary["secure"] is True
        assert {status[f"b{k}"] for k in (1, 2, 3)} <= {"filled", "partially_filled", "unfilled"}
        return
    assert status["b1"] == status["b2"] == status["b3"] == "filled"
    filled = {
        r["order_id"]: float(r["filled_kwh"]) for r in csv.DictReader((out / "orders.csv").open())
    }
    assert filled["b0"] == pytest.approx(0.6 / 0.195, abs=1e-4)
    manifest = json.loads((out / "manifest.json").read_text())
    assert any(name.endswith("accounts.csv") for name in json.dumps(manifest).split('"'))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("participant_id,balance_eur\nhome0,abc\n", "row 2"),
        ("participant_id,balance_eur\nhome0,1\nhome0,2\n", "duplicate participant_id"),
        ("participant_id,balance_eur\nhome0,0.0000001\n", "micro-EUR"),
        ("participant\nhome0\n", "balance_eur"),
    ],
)
def test_a_bad_accounts_file_is_refused_naming_it(tmp_path: Path, text: str, needle: str) -> None:
    scenario = _scenario(tmp_path / "s", text)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["clear", str(scenario), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "accounts.csv" in result.output and needle in result.output
    assert not out.exists()


# --- rolling rounds ------------------------------------------------------------------


def _rolling(folder: Path, topups: str | None) -> Path:
    from conftest import ROUNDS_HEADER, case33bw_scenario

    # Slot 4 (240-300 min) is open until 240 min; rounds at 0, 60, 120, 180.
    rows = [f"s{k},pv,sell,5,4,2.0,0.10,true,{60 * k}" for k in range(4)]
    rows += [f"b{k},home,buy,7,4,2.0,0.30,true,{60 * k}" for k in range(4)]
    extra = "rounds:\n  interval_min: 60\naccounts: accounts.csv\n"
    if topups is not None:
        extra += "topups: topups.csv\n"
    scenario = case33bw_scenario(folder, rows, header=ROUNDS_HEADER, yaml_extra=extra)
    # Midpoint 0.20 EUR/kWh, no fee: 0.80 EUR buy two of the orders' 2 kWh.
    (scenario / "accounts.csv").write_text("participant_id,balance_eur\nhome,0.8\n")
    if topups is not None:
        (scenario / "topups.csv").write_text(topups)
    return scenario


def test_rounds_spend_the_balance_cut_off_and_top_up(tmp_path: Path) -> None:
    from gridmatch.pipeline import RunSettings
    from gridmatch.rounds.replay import rerun
    from gridmatch.rounds.runner import run_rounds

    scenario = _rolling(tmp_path / "s", "participant_id,at_min,amount_eur\nhome,150,0.4\n")
    out = tmp_path / "out"
    run_rounds(scenario, out, RunSettings(formulation="highspy"))
    rows = {r["order_id"]: r for r in csv.DictReader((out / "orders.csv").open())}
    # Rounds 1-2 spend the 0.80 EUR on b0 and b1; round 3 (120 min) finds nothing left
    # and cuts b2 off; the top-up at 150 min pays for b3 (or b2) in round 4 (180 min).
    bought = sum(float(rows[f"b{k}"]["filled_kwh"]) for k in range(4))
    assert bought == pytest.approx(6.0, abs=1e-3)
    assert [rows[f"b{k}"]["status"] for k in range(4)].count("cut_off") == 1
    paid = 0.0
    for folder in sorted(out.glob("round-*")):
        for t in csv.DictReader((folder / "trades.csv").open()):
            paid += float(t["quantity_kwh"]) * (
                float(t["price_eur_per_kwh"]) + float(t["fee_eur_per_kwh"])
            )
    assert paid <= 1.2 + 1e-9
    for n in range(1, 5):
        assert rerun(out / "ledger.sqlite", n).identical


def test_without_a_top_up_the_cut_off_orders_stay_cut_off(tmp_path: Path) -> None:
    from gridmatch.pipeline import RunSettings
    from gridmatch.rounds.runner import run_rounds

    out = tmp_path / "out"
    # highspy: a heuristic cut down to a budget shrinks in whole Wh, and the rows' micro-EUR
    # of slack would leave b1 one Wh short.
    run_rounds(_rolling(tmp_path / "s", None), out, RunSettings(formulation="highspy"))
    status = [
        r["status"] for r in csv.DictReader((out / "orders.csv").open()) if r["side"] == "buy"
    ]
    assert status == ["filled", "filled", "cut_off", "cut_off"]


def test_a_top_up_of_an_unknown_account_is_refused(tmp_path: Path) -> None:
    scenario = _rolling(tmp_path / "s", "participant_id,at_min,amount_eur\nnobody,10,1\n")
    result = CliRunner().invoke(app, ["rounds", "run", str(scenario), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "topups.csv, row 2" in result.output and "no account" in result.output


def test_a_ledger_of_schema_version_1_is_read_and_continued(tmp_path: Path) -> None:
    """Days begun before accounts existed replay, and gain the column when continued."""
    import sqlite3

    from conftest import ROUNDS_HEADER, case33bw_scenario

    from gridmatch.pipeline import RunSettings
    from gridmatch.rounds.replay import rerun
    from gridmatch.rounds.runner import run_rounds

    rows = [f"s{k},pv,sell,5,4,2.0,0.10,true,{60 * k}" for k in range(4)]
    rows += [f"b{k},home,buy,7,4,2.0,0.30,true,{60 * k}" for k in range(4)]
    scenario = case33bw_scenario(
        tmp_path / "s", rows, header=ROUNDS_HEADER, yaml_extra="rounds:\n  interval_min: 60\n"
    )
    out = tmp_path / "out"
    run_rounds(scenario, out, RunSettings(formulation="greedy"), until_min=60)
    db = sqlite3.connect(out / "ledger.sqlite")
    db.execute("ALTER TABLE rounds DROP COLUMN accounts_json")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    assert rerun(out / "ledger.sqlite", 2).identical
    run_rounds(scenario, out, RunSettings(formulation="greedy"), resume=True)
    db = sqlite3.connect(out / "ledger.sqlite")
    assert db.execute("PRAGMA user_version").fetchone() == (2,)
    db.close()
    for n in range(1, 5):
        assert rerun(out / "ledger.sqlite", n).identical
