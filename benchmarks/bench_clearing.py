"""Clearing benchmark: every formulation on synthetic order books, in one process.

Run from the repository root (after ``bash scripts/demo.sh`` or ``scripts/test.sh``
made ``.venv``)::

    .venv/bin/python benchmarks/bench_clearing.py            # full sizes, ~10 minutes
    .venv/bin/python benchmarks/bench_clearing.py --smoke    # tiny, seconds

Instances (flat grid fee 0.01 EUR/kWh, no per-km fee, so the numbers are about the
solvers and not about the network):

* ``one-slot-1000``: the noon slot of a community of 1,000 participants (1,000 orders);
* ``community-day``: 500 participants x 24 slots (12,000 orders).

For each instance and formulation the table shows the median over ``--repeats`` of
the times, and the welfare, proven bound and LP bound of the last repeat. ``gap`` is
measured against the best proven bound (solver bound or LP relaxation), ``vs LP``
against the LP relaxation alone. ``x textbook`` is the textbook baseline's median
wall time divided by the row's, run in the same process on the same instance.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from gridmatch.matching.backends.registry import get_backend
from gridmatch.matching.clearing import ClearingResult, clear_orders
from gridmatch.matching.market_rules import MarketRules
from gridmatch.matching.orders import OrderBook
from gridmatch.matching.solution import SolveOptions
from gridmatch.scenario_io.synthetic import community_day

BASELINE = "pyomo-textbook"
RULES = MarketRules(grid_fee_eur_per_kwh=0.01)


@dataclass(frozen=True)
class Row:
    """One instance x formulation x threads measurement."""

    instance: str
    formulation: str
    threads: int
    orders: int
    pairs: int
    build_s: float
    solve_s: float
    bound_s: float
    wall_s: float
    welfare_eur: float
    bound_eur: float
    lp_bound_eur: float
    gap: float
    gap_vs_lp: float
    status: str
    repeats: int
    speedup_vs_textbook: float | None = None


def instances(smoke: bool) -> dict[str, OrderBook]:
    """The synthetic order books, by name."""
    buses = np.arange(1, 44)  # the CIGRE LV buses below the external grid
    if smoke:
        day = community_day(30, buses, n_slots=4, seed=1)
        noon = community_day(60, buses, n_slots=2, seed=2)
        return {"smoke-one-slot": _slot(noon, 1), "smoke-day": day}
    return {
        "one-slot-1000": _slot(community_day(1000, buses, n_slots=24, seed=7), 12),
        "community-day": community_day(500, buses, n_slots=24, seed=0),
    }


def _slot(book: OrderBook, slot: int) -> OrderBook:
    return OrderBook(tuple(o for o in book.orders if o.slot == slot))


def measure(
    name: str, book: OrderBook, formulation: str, options: SolveOptions, repeats: int
) -> Row:
    """Clear ``book`` ``repeats`` times and summarise."""
    walls, builds, solves, bounds = [], [], [], []
    result: ClearingResult | None = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = clear_orders(book, RULES, get_backend(formulation), options)
        walls.append(time.perf_counter() - start)
        builds.append(result.build_s)
        solves.append(result.solve_s)
        bounds.append(result.bound_s)
    assert result is not None
    lp = result.lp_bound_eur
    return Row(
        instance=name,
        formulation=formulation,
        threads=options.threads,
        orders=len(book),
        pairs=result.n_pairs,
        build_s=statistics.median(builds),
        solve_s=statistics.median(solves),
        bound_s=statistics.median(bounds),
        wall_s=statistics.median(walls),
        welfare_eur=result.welfare_eur,
        bound_eur=result.bound_eur,
        lp_bound_eur=lp,
        gap=result.gap,
        gap_vs_lp=(lp - result.welfare_eur) / lp if lp > 0 else 0.0,
        status=result.status.value,
        repeats=repeats,
    )


HEADER = (
    f"{'instance':<15} {'formulation':<15} {'thr':>3} {'orders':>6} {'pairs':>7} "
    f"{'build s':>7} {'solve s':>8} {'bound s':>7} {'wall s':>7} {'welfare':>10} "
    f"{'bound':>10} {'gap':>7} {'vs LP':>7} {'status':<9} {'x textbook':>10}"
)


def format_row(r: Row) -> str:
    """One table line."""
    speedup = "" if r.speedup_vs_textbook is None else f"{r.speedup_vs_textbook:.1f}"
    return (
        f"{r.instance:<15} {r.formulation:<15} {r.threads:>3} {r.orders:>6} {r.pairs:>7} "
        f"{r.build_s:>7.3f} {r.solve_s:>8.3f} {r.bound_s:>7.3f} {r.wall_s:>7.2f} "
        f"{r.welfare_eur:>10.4f} {r.bound_eur:>10.4f} {r.gap:>7.2%} {r.gap_vs_lp:>7.2%} "
        f"{r.status:<9} {speedup:>10}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny instances, one repeat, 1 s time limits"
    )
    parser.add_argument("--repeats", type=int, default=3, help="repeats per fast formulation")
    parser.add_argument("--time-limit", type=float, default=9.0, help="seconds per clearing")
    parser.add_argument(
        "--baseline-time-limit", type=float, default=120.0, help="seconds for the textbook model"
    )
    parser.add_argument(
        "--formulations",
        default="highspy,mulknap,cpsat,pyomo-highs,seller-dp,greedy",
        help="comma-separated formulations besides the textbook baseline",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the textbook model")
    parser.add_argument("--instance", action="append", help="run only these instances")
    parser.add_argument("--json", dest="json_path", help="also write the rows to this file")
    args = parser.parse_args(argv)
    repeats = 1 if args.smoke else args.repeats
    if args.smoke:
        args.time_limit, args.baseline_time_limit = 1.0, 3.0

    rows: list[Row] = []
    print(HEADER)
    print("-" * len(HEADER), flush=True)
    for name, book in instances(args.smoke).items():
        if args.instance and name not in args.instance:
            continue
        options = SolveOptions(time_limit_s=args.time_limit, threads=1, seed=0)
        runs: list[tuple[str, SolveOptions]] = [
            (f, options) for f in args.formulations.split(",") if f
        ]
        # The default formulation also on 2 cores: slots solved in parallel.
        runs.insert(1, ("highspy", SolveOptions(time_limit_s=args.time_limit, threads=2, seed=0)))
        # The baseline first, so every later row can be printed with its ratio at once.
        baseline = None
        if not args.no_baseline:
            baseline_options = SolveOptions(time_limit_s=args.baseline_time_limit, threads=1)
            baseline = measure(name, book, BASELINE, baseline_options, 1)
            rows.append(baseline)
            print(format_row(baseline), flush=True)
        for formulation, run_options in runs:
            row = measure(name, book, formulation, run_options, repeats)
            if baseline is not None:
                row = replace(row, speedup_vs_textbook=baseline.wall_s / row.wall_s)
            rows.append(row)
            print(format_row(row), flush=True)
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump([asdict(r) for r in rows], handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
