"""Price-time tie-break benchmark: its cost, and whether formulations then agree.

Run from the repository root (after ``bash scripts/demo.sh`` or ``scripts/test.sh``)::

    .venv/bin/python benchmarks/bench_tie_break.py            # ~1 minute
    .venv/bin/python benchmarks/bench_tie_break.py --smoke    # seconds

Instances (flat fee 0.01 EUR/kWh, no grid), built by the synthetic generator:

* ``day-exact-prices``: 15 participants x 24 slots (360 orders), prices to 0.1 mEUR: few ties;
* ``day-cent-prices``: the same book with prices rounded to whole cents, the way
  people bid (0.12, 0.15): many equal-welfare optima.

Every clearing uses ``mip_gap 0`` (the tie-break needs proven optima; ``status`` says
whether every slot was proven, else a time limit decided and rows are not comparable),
so the books are kept small: at 25 participants some midday slots of this generator
already take HiGHS over 8 s to prove at gap 0. For each
instance and formulation: the median wall time over ``--repeats`` without and with
``price-time``, their ratio, and the welfare. The last lines count the distinct trade
sets the formulations produced, without and with the rule (1 = all agree).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace

import numpy as np

from gridmatch.matching.backends.registry import get_backend
from gridmatch.matching.clearing import ClearingResult, clear_orders
from gridmatch.matching.market_rules import MarketRules
from gridmatch.matching.orders import OrderBook
from gridmatch.matching.solution import SolveOptions, TieBreak
from gridmatch.scenario_io.synthetic import community_day

RULES = MarketRules(grid_fee_eur_per_kwh=0.01)
FORMULATIONS = ("highspy", "cpsat", "pyomo-highs")


def instances(smoke: bool) -> dict[str, OrderBook]:
    """The order books, by name."""
    buses = np.arange(1, 44)
    book = community_day(10 if smoke else 15, buses, n_slots=4 if smoke else 24, seed=3)
    cents = OrderBook(
        tuple(
            replace(o, limit_price_eur_per_kwh=round(o.limit_price_eur_per_kwh, 2))
            for o in book.orders
        )
    )
    return {"day-exact-prices": book, "day-cent-prices": cents}


def clear(
    book: OrderBook, formulation: str, options: SolveOptions, repeats: int
) -> tuple[float, ClearingResult]:
    """Median wall time over ``repeats`` clearings, and the last result."""
    walls = []
    result = None
    for _ in range(repeats):
        began = time.perf_counter()
        result = clear_orders(book, RULES, get_backend(formulation), options)
        walls.append(time.perf_counter() - began)
    assert result is not None
    return statistics.median(walls), result


def trade_set(result: ClearingResult) -> tuple[tuple[int, int, int, float], ...]:
    """The trades as comparable tuples."""
    return tuple((t.slot, t.buy_order, t.sell_order, t.quantity_kwh) for t in result.trades)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny instances, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per clearing")
    args = parser.parse_args(argv)
    repeats = 1 if args.smoke else args.repeats
    plain = SolveOptions(time_limit_s=args.time_limit, mip_gap=0.0)
    tied = replace(plain, tie_break=TieBreak.PRICE_TIME)

    header = (
        f"{'instance':<17} {'formulation':<12} {'orders':>6} {'plain s':>8} "
        f"{'price-time s':>12} {'ratio':>6} {'welfare plain':>13} {'welfare p-t':>12} "
        f"{'status':<8}"
    )
    print(header)
    print("-" * len(header), flush=True)
    agreement = []
    for name, book in instances(args.smoke).items():
        sets_plain, sets_tied = set(), set()
        for formulation in FORMULATIONS:
            plain_s, plain_result = clear(book, formulation, plain, repeats)
            tied_s, tied_result = clear(book, formulation, tied, repeats)
            sets_plain.add(trade_set(plain_result))
            sets_tied.add(trade_set(tied_result))
            print(
                f"{name:<17} {formulation:<12} {len(book):>6} {plain_s:>8.2f} {tied_s:>12.2f} "
                f"{tied_s / plain_s:>6.2f} {plain_result.welfare_eur:>13.6f} "
                f"{tied_result.welfare_eur:>12.6f} {tied_result.status.value:<8}",
                flush=True,
            )
        agreement.append((name, len(sets_plain), len(sets_tied)))
    print()
    for name, n_plain, n_tied in agreement:
        print(
            f"{name}: {n_plain} distinct trade sets over {len(FORMULATIONS)} formulations "
            f"without a tie-break, {n_tied} with price-time"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
