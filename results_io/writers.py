"""Result tables and summary. Floats are written with ``repr``: full precision, exact round trip."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from gridmatch.grid_models.secure_clearing import SecureClearing
from gridmatch.grid_models.security import GRID_COLUMNS, GridReport
from gridmatch.matching.clearing import ClearingResult
from gridmatch.matching.orders import Order, OrderBook
from gridmatch.matching.solution import SolveOptions
from gridmatch.scenario_io.orders_csv import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

TRADE_COLUMNS = (
    "slot",
    "buy_order_id",
    "sell_order_id",
    "buyer_id",
    "seller_id",
    "buy_bus",
    "sell_bus",
    "quantity_kwh",
    "price_eur_per_kwh",
    "fee_eur_per_kwh",
    "buy_limit_eur_per_kwh",
    "sell_limit_eur_per_kwh",
    "welfare_eur",
)
# The input columns, then what the clearing did with each order.
ORDER_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "filled_kwh", "status")
_FILL_TOLERANCE_KWH = 1e-6


def write_trades(path: Path, book: OrderBook, result: ClearingResult) -> None:
    """Write ``trades.csv``: one row per (buy, sell) pair that trades."""
    path.write_bytes(trades_csv(book, result).encode("utf-8"))


def trades_csv(book: OrderBook, result: ClearingResult) -> str:
    """Return the text of ``trades.csv`` (the bytes rounds hash and compare on rerun)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(TRADE_COLUMNS)
    for trade in result.trades:
        buy = book.orders[trade.buy_order]
        sell = book.orders[trade.sell_order]
        writer.writerow(
            [
                trade.slot,
                buy.order_id,
                sell.order_id,
                buy.participant_id,
                sell.participant_id,
                buy.bus,
                sell.bus,
                repr(trade.quantity_kwh),
                repr(trade.price_eur_per_kwh),
                repr(trade.fee_eur_per_kwh),
                repr(buy.limit_price_eur_per_kwh),
                repr(sell.limit_price_eur_per_kwh),
                repr(trade.quantity_kwh * trade.welfare_eur_per_kwh),
            ]
        )
    return text.getvalue()


def write_orders(path: Path, book: OrderBook, result: ClearingResult) -> None:
    """Write ``orders.csv``: every input order with its fill and status."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(ORDER_COLUMNS)
        for order, filled in zip(book.orders, result.filled_kwh.tolist(), strict=True):
            if filled <= _FILL_TOLERANCE_KWH:
                status = "unfilled"
            elif filled >= order.quantity_kwh - _FILL_TOLERANCE_KWH:
                status = "filled"
            else:
                status = "partially_filled"
            writer.writerow([*order_fields(order), repr(filled), status])


def order_fields(order: Order) -> list[object]:
    """Return an order's input columns as orders.csv writes them (floats as ``repr``)."""
    return [
        order.order_id,
        order.participant_id,
        order.side.value,
        order.bus,
        order.slot,
        repr(order.quantity_kwh),
        repr(order.limit_price_eur_per_kwh),
        "true" if order.divisible else "false",
    ]


def summary_dict(
    scenario_name: str,
    book: OrderBook,
    result: ClearingResult,
    options: SolveOptions,
    security: SecureClearing | None = None,
) -> dict[str, Any]:
    """Build the content of ``summary.json``.

    Parameters
    ----------
    security
        How the security-constrained clearing went, or ``None`` when the grid check
        is disabled (``secure`` is then null, never a guess).
    """
    grid_s = 0.0 if security is None else security.grid_s
    return {
        "scenario": scenario_name,
        "status": result.status.value,
        "welfare_eur": result.welfare_eur,
        "bound_eur": result.bound_eur,
        "lp_bound_eur": result.lp_bound_eur,
        "gap": result.gap,
        "formulation": result.formulation,
        "solver": result.solver,
        "solver_version": result.solver_version,
        "runtime_s": result.runtime_s + grid_s,
        "build_s": result.build_s,
        "solve_s": result.solve_s,
        "bound_s": result.bound_s,
        "grid_s": grid_s,
        **_security_summary(result, security),
        "n_orders": len(book),
        "n_trades": len(result.trades),
        "n_pairs": result.n_pairs,
        "traded_kwh": sum(t.quantity_kwh for t in result.trades),
        "options": options.to_dict(),
        "slots": [
            {
                "slot": r.slot,
                "n_buy_orders": r.n_buy_orders,
                "n_sell_orders": r.n_sell_orders,
                "n_pairs": r.n_pairs,
                "welfare_eur": r.welfare_eur,
                "bound_eur": r.bound_eur,
                "lp_bound_eur": r.lp_bound_eur,
                "termination": r.termination.value,
                "runtime_s": r.runtime_s,
            }
            for r in result.slots
        ],
    }


def _security_summary(result: ClearingResult, security: SecureClearing | None) -> dict[str, Any]:
    if security is None:
        return {
            "secure": None,
            "security_iterations": None,
            "ac_power_flows": 0,
            "unconstrained_welfare_eur": None,
            "price_of_security_eur": None,
        }
    grid = security.report
    unconstrained = security.unconstrained.welfare_eur
    return {
        "secure": grid.secure,
        "security_iterations": security.iterations,
        "fallback_slots": list(security.fallback_slots),
        "ac_power_flows": security.ac_power_flows,
        "unconstrained_welfare_eur": unconstrained,
        "price_of_security_eur": unconstrained - result.welfare_eur,
        "unconstrained_insecure_slots": list(security.unconstrained_insecure_slots),
        "insecure_slots": [s.slot for s in grid.slots if not s.secure],
        "max_line_loading_percent": grid.worst("line", "loading_percent"),
        "max_trafo_loading_percent": grid.worst("trafo", "loading_percent"),
        "vm_min_pu": grid.worst("bus", "vm_pu", lowest=True),
        "vm_max_pu": grid.worst("bus", "vm_pu"),
    }


def write_grid(
    path: Path, grid: GridReport, binding: frozenset[tuple[int, str, int]] = frozenset()
) -> None:
    """Write ``grid.csv``: per slot and element, the state before and after the trades.

    Parameters
    ----------
    binding
        ``(slot, element, index)`` whose security row limited the trades.
    """
    table = grid.table()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*GRID_COLUMNS, "binding"])
        records: list[tuple[Any, ...]] = list(table.itertuples(index=False, name=None))
        for slot, element, index, quantity, before, after, low, high, violated in records:
            writer.writerow(
                [
                    int(slot),
                    element,
                    int(index),
                    quantity,
                    *(repr(float(v)) for v in (before, after, low, high)),
                    "true" if violated else "false",
                    "true" if (int(slot), element, int(index)) in binding else "false",
                ]
            )


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write a JSON document with stable key order and a final newline."""
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
