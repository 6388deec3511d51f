"""Knapsack benchmark: ``mulknap`` on Pisinger's classes, against HiGHS in the same process.

Run from the repository root after ``bash scripts/test.sh``::

    .venv/bin/python benchmarks/bench_knapsack.py           # 4 classes x 3 sizes x 3 seeds
    .venv/bin/python benchmarks/bench_knapsack.py --smoke   # one tiny instance per class

Instances come from :mod:`pisinger` (seeded; the classes of Pisinger, EJOR 1999). Per
class and size, over the seeds: the median solve time of ``mulknap`` on the slot (its
``solve_slot``, after the kernels are compiled), how many were proven optimal (gap 0 to
the surrogate bound, within its 1e-9 tolerance), which bound certified them, and the worst gap. The
baseline is the default formulation ``highspy`` on the first seed with the same time
limit (``--limit``, 10 s), and HiGHS at a 1e-9 gap (0 up to float noise) cross-checks
the optimum where it finishes. A second table times every exact formulation on a book
of 3,000 indivisible buys and 30 all-or-none sellers at different prices that none
finishes at gap 0 (the user's limit must hold: the wall time of the whole clearing is
measured).
Writes ``benchmarks/results-knapsack-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pisinger import CLASSES, pisinger_book

from gridmatch.matching.backends.registry import get_backend
from gridmatch.matching.clearing import clear_orders
from gridmatch.matching.knapsack_exact import warm_up
from gridmatch.matching.market_rules import MarketRules
from gridmatch.matching.orders import Order, OrderBook, Side
from gridmatch.matching.problem import build_slot_problems
from gridmatch.matching.solution import SolutionStatus, SolveOptions

RULES = MarketRules()
SIZES = ((1000, 10), (300, 30), (10_000, 30))
SEEDS = (1, 2, 3)
# The time-limit table: every exact formulation on a book none finishes at gap 0.
LIMIT_FORMULATIONS = ("highspy", "mulknap", "cpsat", "pyomo-highs", "pyomo-textbook")
LIMITS_S = (2.0, 10.0)
LIMIT_REPEATS = 3


@dataclass(frozen=True)
class Row:
    """One class and size."""

    kind: str
    items: int
    knapsacks: int
    seeds: int
    proven: int
    certified_by: str
    worst_gap: float
    mulknap_median_ms: float
    mulknap_max_ms: float
    highs_s: float | None
    highs_gap: float | None
    highs_status: str | None
    optimum_checked: str


def measure(kind: str, items: int, knapsacks: int, seeds: tuple[int, ...], limit_s: float) -> Row:
    """Solve every seed's instance with mulknap; the first also with HiGHS."""
    backend = get_backend("mulknap")
    options = SolveOptions(time_limit_s=limit_s)
    times_ms, gaps, proven, sources = [], [], 0, set()
    first_welfare = 0.0
    for k, seed in enumerate(seeds):
        [problem] = build_slot_problems(pisinger_book(kind, items, knapsacks, seed), RULES)
        began = time.perf_counter()
        solution = backend.solve_slot(problem, options, limit_s)
        times_ms.append(1000 * (time.perf_counter() - began))
        welfare = problem.welfare_eur(solution.pair_quantity_kwh)
        bound = solution.bound_eur if solution.bound_eur is not None else float("inf")
        gaps.append((bound - welfare) / bound if bound > 0 else 0.0)
        proven += solution.status is SolutionStatus.OPTIMAL and gaps[-1] <= 2e-9
        sources.add(solution.bound_source.value)
        if k == 0:
            first_welfare = welfare
    book = pisinger_book(kind, items, knapsacks, seeds[0])
    highs_s = highs_gap = None
    highs_status = None
    checked = "-"
    if items * knapsacks <= 30_000:  # 10,000 x 30 takes HiGHS the whole limit, every time
        began = time.perf_counter()
        highs = clear_orders(book, RULES, get_backend("highspy"), options)
        highs_s, highs_gap, highs_status = (
            time.perf_counter() - began,
            highs.gap,
            highs.status.value,
        )
        exact = clear_orders(
            book, RULES, get_backend("highspy"), SolveOptions(time_limit_s=limit_s, mip_gap=1e-9)
        )
        if exact.status.value == "optimal":
            same = abs(exact.welfare_eur - first_welfare) <= 1e-6 * max(1.0, first_welfare)
            checked = "equal" if same else f"DIFFERS ({exact.welfare_eur:.6f})"
        else:
            below = exact.welfare_eur <= first_welfare + 1e-6
            checked = "HiGHS not done, below ours" if below else "HiGHS BETTER"
    return Row(
        kind=kind,
        items=items,
        knapsacks=knapsacks,
        seeds=len(seeds),
        proven=proven,
        certified_by="/".join(sorted(sources)),
        worst_gap=max(gaps),
        mulknap_median_ms=statistics.median(times_ms),
        mulknap_max_ms=max(times_ms),
        highs_s=highs_s,
        highs_gap=highs_gap,
        highs_status=highs_status,
        optimum_checked=checked,
    )


@dataclass(frozen=True)
class LimitRow:
    """One formulation's wall time on a book it cannot solve within the limit."""

    formulation: str
    limit_s: float
    wall_s: float
    over_percent: float
    max_over_percent: float
    status: str
    gap: float


def hard_book(n_buys: int, n_sells: int, seed: int) -> OrderBook:
    """Indivisible buys, all-or-none sellers at different prices (no quick proof)."""
    rng = np.random.default_rng(seed)
    buys = [
        Order(
            f"b{j}",
            f"buyer{j}",
            Side.BUY,
            0,
            0,
            int(rng.integers(10, 1001)) / 1000,
            round(float(rng.uniform(0.2, 0.4)), 4),
            False,
        )
        for j in range(n_buys)
    ]
    sells = [
        Order(
            f"s{i}",
            f"seller{i}",
            Side.SELL,
            0,
            0,
            int(rng.integers(2000, 20001)) / 1000,
            round(float(rng.uniform(0.05, 0.2)), 4),
            True,
        )
        for i in range(n_sells)
    ]
    return OrderBook(tuple(buys + sells))


def measure_limit(formulation: str, book: OrderBook, limit_s: float, repeats: int) -> LimitRow:
    """Clear ``book`` at gap 0 within ``limit_s``, ``repeats`` times; time each clearing."""
    walls = []
    for _ in range(repeats):
        backend = get_backend(formulation)
        began = time.perf_counter()
        result = clear_orders(book, RULES, backend, SolveOptions(time_limit_s=limit_s, mip_gap=0.0))
        walls.append(time.perf_counter() - began)
    return LimitRow(
        formulation=formulation,
        limit_s=limit_s,
        wall_s=statistics.median(walls),
        over_percent=100 * (statistics.median(walls) - limit_s) / limit_s,
        max_over_percent=100 * (max(walls) - limit_s) / limit_s,
        status=result.status.value,
        gap=result.gap,
    )


def format_row(r: Row) -> str:
    """One Markdown table row."""
    highs = (
        "-"
        if r.highs_s is None
        else f"{r.highs_s:.2f} s, gap {100 * (r.highs_gap or 0):.4f} %, {r.highs_status}"
    )
    return (
        f"| {r.kind} | {r.items} x {r.knapsacks} | {r.proven}/{r.seeds} | {r.certified_by} "
        f"| {r.worst_gap:.1e} | {r.mulknap_median_ms:.1f} | {r.mulknap_max_ms:.1f} "
        f"| {highs} | {r.optimum_checked} |"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one tiny instance per class")
    parser.add_argument("--limit", type=float, default=10.0, help="time limit per solve, s")
    parser.add_argument("--only-limits", action="store_true", help="only the time-limit table")
    args = parser.parse_args(argv)
    warm_up()
    sizes, seeds = (((30, 3),), (1,)) if args.smoke else (SIZES, SEEDS)
    print(
        "| class | items x knapsacks | proven | certified by | worst gap | mulknap median ms "
        "| max ms | highspy (default, first seed) | HiGHS gap 1e-9 vs ours |"
    )
    print("|---|---|---:|---|---:|---:|---:|---|---|")
    rows = []
    for kind in () if args.only_limits else CLASSES:
        for items, knapsacks in sizes:
            row = measure(kind, items, knapsacks, seeds, args.limit)
            rows.append(row)
            print(format_row(row), flush=True)
    print()
    print("| formulation | limit s | median wall s | median over | worst over | status | gap |")
    print("|---|---:|---:|---:|---:|---|---:|")
    book = hard_book(300, 10, 5) if args.smoke else hard_book(3000, 30, 5)
    limits = (1.0,) if args.smoke else LIMITS_S
    limit_rows = []
    for formulation in LIMIT_FORMULATIONS:
        for limit_s in limits:
            r = measure_limit(formulation, book, limit_s, 1 if args.smoke else LIMIT_REPEATS)
            limit_rows.append(r)
            print(
                f"| {r.formulation} | {r.limit_s:.0f} | {r.wall_s:.2f} | {r.over_percent:+.1f} % "
                f"| {r.max_over_percent:+.1f} % | {r.status} | {100 * r.gap:.4f} % |",
                flush=True,
            )
    if not args.smoke:
        out = Path(__file__).parent / f"results-knapsack-{datetime.date.today()}.json"
        payload = {"classes": [asdict(r) for r in rows], "limits": [asdict(r) for r in limit_rows]}
        if args.only_limits and out.exists():  # keep the class table of an earlier run
            payload["classes"] = json.loads(out.read_text())["classes"]
        out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
