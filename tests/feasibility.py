"""An independent feasibility checker for clearing results.

Written apart from the engine on purpose: it reads the files a user sees (the input
orders.csv and the result folder) with the standard library, recomputes distances
with networkx on pandapower's own graph, and checks every market rule from scratch.
It imports nothing from gridmatch.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

TOL_KWH = 1e-6
TOL_EUR = 1e-9


@dataclass(frozen=True)
class OrderRow:
    order_id: str
    participant_id: str
    side: str
    bus: int
    slot: int
    quantity_kwh: float
    limit_eur_per_kwh: float
    divisible: bool


@dataclass(frozen=True)
class TradeRow:
    slot: int
    buy_order_id: str
    sell_order_id: str
    quantity_kwh: float
    price_eur_per_kwh: float
    fee_eur_per_kwh: float


def read_input_orders(path: Path) -> dict[str, OrderRow]:
    orders = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            side = row["side"]
            text = (row.get("divisible") or "").strip().lower()
            divisible = side == "sell" if not text else text in {"true", "1", "yes"}
            orders[row["order_id"]] = OrderRow(
                row["order_id"],
                row["participant_id"].strip(),
                side,
                int(row["bus"]),
                int(row["slot"]),
                float(row["quantity_kwh"]),
                float(row["limit_price_eur_per_kwh"]),
                divisible,
            )
    return orders


def read_trades(path: Path) -> list[TradeRow]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            TradeRow(
                int(r["slot"]),
                r["buy_order_id"],
                r["sell_order_id"],
                float(r["quantity_kwh"]),
                float(r["price_eur_per_kwh"]),
                float(r["fee_eur_per_kwh"]),
            )
            for r in csv.DictReader(handle)
        ]


def check_trades(
    orders: dict[str, OrderRow],
    trades: list[TradeRow],
    *,
    flat_fee_eur_per_kwh: float = 0.0,
    fee_eur_per_kwh_per_km: float = 0.0,
    distance_km: dict[tuple[int, int], float] | None = None,
    pricing: str | None = None,
    available_eur: dict[str, float] | None = None,
) -> float:
    """Assert every market rule; return the welfare recomputed from the trades.

    With ``available_eur`` (participant -> EUR), also that no buyer with an account
    pays more than it holds: quantity x (price + fee) over its trades.
    """
    bought: dict[str, float] = defaultdict(float)
    sold: dict[str, float] = defaultdict(float)
    partners: dict[str, int] = defaultdict(int)
    unclipped: dict[int, list[float]] = defaultdict(list)
    welfare = 0.0
    for t in trades:
        buy, sell = orders[t.buy_order_id], orders[t.sell_order_id]
        assert buy.side == "buy" and sell.side == "sell", t
        assert buy.slot == sell.slot == t.slot, f"slot mismatch: {t}"
        assert buy.participant_id != sell.participant_id, f"self-trade {t}"
        assert t.quantity_kwh > 0.0, t
        km = 0.0
        if fee_eur_per_kwh_per_km:
            assert distance_km is not None
            km = distance_km[(buy.bus, sell.bus)]
        fee = flat_fee_eur_per_kwh + fee_eur_per_kwh_per_km * km
        assert math.isclose(t.fee_eur_per_kwh, fee, rel_tol=1e-9, abs_tol=TOL_EUR), (t, fee)
        assert buy.limit_eur_per_kwh >= sell.limit_eur_per_kwh + fee - TOL_EUR, f"incompatible {t}"
        low, high = sell.limit_eur_per_kwh, buy.limit_eur_per_kwh - fee
        assert low - TOL_EUR <= t.price_eur_per_kwh <= high + TOL_EUR, f"price outside limits {t}"
        expected_price = {
            "midpoint": (low + high) / 2,
            "pay_as_bid": high,
            "pay_as_offer": low,
            "uniform": None,  # one price per slot, checked below
            None: None,
        }[pricing]
        if pricing == "uniform" and low + TOL_EUR < t.price_eur_per_kwh < high - TOL_EUR:
            # Not clipped by its pair's range: it is the slot's one price.
            unclipped[t.slot].append(t.price_eur_per_kwh)
        if expected_price is not None:
            assert math.isclose(t.price_eur_per_kwh, expected_price, abs_tol=TOL_EUR), t
        bought[buy.order_id] += t.quantity_kwh
        sold[sell.order_id] += t.quantity_kwh
        partners[buy.order_id] += 1
        welfare += t.quantity_kwh * (buy.limit_eur_per_kwh - sell.limit_eur_per_kwh - fee)
    for slot, prices in unclipped.items():
        assert max(prices) - min(prices) <= TOL_EUR, f"slot {slot}: uniform prices {prices}"
    if available_eur is not None:
        paid: dict[str, float] = defaultdict(float)
        for t in trades:
            buyer = orders[t.buy_order_id].participant_id
            paid[buyer] += t.quantity_kwh * (t.price_eur_per_kwh + t.fee_eur_per_kwh)
        for buyer, eur in paid.items():
            if buyer in available_eur:
                held = max(available_eur[buyer], 0.0)
                assert eur <= held + 1e-9, f"{buyer} pays {eur} EUR, holds {held}"
    for order_id, kwh in bought.items():
        order = orders[order_id]
        assert kwh <= order.quantity_kwh + TOL_KWH, f"{order_id} overfilled"
        if not order.divisible:
            assert partners[order_id] == 1, f"indivisible {order_id} split"
            assert abs(kwh - order.quantity_kwh) <= TOL_KWH, f"indivisible {order_id} partly filled"
    for order_id, kwh in sold.items():
        order = orders[order_id]
        assert kwh <= order.quantity_kwh + TOL_KWH, f"{order_id} oversold"
        if not order.divisible:
            assert abs(kwh - order.quantity_kwh) <= TOL_KWH, f"all-or-none {order_id} sold partly"
    return welfare


def check_result_folder(
    scenario_dir: Path, out_dir: Path, distance_km: dict[tuple[int, int], float] | None = None
) -> dict[str, object]:
    """Check a result folder against its scenario; return the summary."""
    import yaml

    spec = yaml.safe_load((scenario_dir / "scenario.yaml").read_text())
    market = spec.get("market", {})
    orders = read_input_orders(scenario_dir / spec.get("orders", "orders.csv"))
    trades = read_trades(out_dir / "trades.csv")
    summary = json.loads((out_dir / "summary.json").read_text())
    welfare = check_trades(
        orders,
        trades,
        flat_fee_eur_per_kwh=market.get("grid_fee_eur_per_kwh", 0.0),
        fee_eur_per_kwh_per_km=market.get("grid_fee_eur_per_kwh_per_km", 0.0),
        distance_km=distance_km,
        pricing=market.get("pricing", "midpoint"),
        available_eur=_accounts(scenario_dir, spec),
    )
    assert math.isclose(welfare, summary["welfare_eur"], rel_tol=1e-6, abs_tol=1e-9)
    assert summary["welfare_eur"] <= summary["bound_eur"] + 1e-9
    # orders.csv reports every order with the fill the trades add up to.
    filled: dict[str, float] = defaultdict(float)
    for t in trades:
        filled[t.buy_order_id] += t.quantity_kwh
        filled[t.sell_order_id] += t.quantity_kwh
    with (out_dir / "orders.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["order_id"] for r in rows] == list(orders)
    for r in rows:
        assert math.isclose(float(r["filled_kwh"]), filled[r["order_id"]], abs_tol=TOL_KWH)
    return dict(summary)


def _accounts(scenario_dir: Path, spec: dict[str, object]) -> dict[str, float] | None:
    """Balance plus emergency credit per participant, read with the csv module."""
    name = spec.get("accounts")
    if name is None:
        return None
    with (scenario_dir / str(name)).open(newline="") as handle:
        return {
            r["participant_id"]: float(r["balance_eur"])
            + float(r.get("emergency_credit_eur") or 0.0)
            for r in csv.DictReader(handle)
        }


def line_distances_km(net: object) -> dict[tuple[int, int], float]:
    """All-pairs shortest line length, from pandapower's graph and networkx alone."""
    import networkx as nx
    import pandapower.topology as top

    graph = top.create_nxgraph(net)
    return {
        (int(a), int(b)): float(km)
        for a, lengths in nx.all_pairs_dijkstra_path_length(graph, weight="weight")
        for b, km in lengths.items()
    }
