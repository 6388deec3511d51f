"""Energy on wheels benchmark: dispatch time and certified gap by size, nearest-supply latency.

Run from the repository root (after ``bash scripts/demo.sh`` or ``scripts/test.sh``)::

    .venv/bin/python benchmarks/bench_mobility.py               # ~5 minutes
    .venv/bin/python benchmarks/bench_mobility.py --smoke       # seconds
    .venv/bin/python benchmarks/bench_mobility.py --only emergency --only 1000x5000
    .venv/bin/python benchmarks/bench_mobility.py --json benchmarks/results-mobility.json

Instances come from :func:`gridmatch.mobility.example.synthetic_inputs` (seeded): a
generated street grid (side ``0.8 * sqrt(requests)``, 8 to 50 crossings), 75 % EVs,
15 % mobile storage, 10 % fuel trucks; requests 85 % households (5-25 kWh), 15 % sites
(50-300 kWh), 10 % fuel; ``-elec`` rows have no fuel at all (fuel's kWh are large and
make relative gaps look smaller). Each dispatch has a 30 s limit on one solver thread
(``mip_gap`` 1e-4); ``gap`` is the certified one: (bound - found) / found, where the
bound is HiGHS's own (``full``, ``priced exact``) or the Lagrangian bound over all pairs
(``priced``, see mobility/pricing.py). In emergency mode the row's gap is the larger of
the two stages' (``DispatchResult.gap``: stage 1 bounds the critical energy, stage 2
the total among dispatches keeping the floor); both are in the JSON. ``total s``
includes the shortest-path trees and the pair arrays.

The query: "where is my nearest supply" on a fleet of 10,000 vehicles, after loading
(road graph and fleet arrays built once), for random places; median, 95th percentile
and worst latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from gridmatch.mobility.dispatch import Mode, run_dispatch
from gridmatch.mobility.example import synthetic_inputs
from gridmatch.mobility.nearest import SupplyIndex
from gridmatch.mobility.roads import RoadNetwork
from gridmatch.mobility.solve import SolveSettings
from gridmatch.scenario_io.mobility_schema import BackendName

FULL = [
    (10, 10, "normal", 0.1, "highs"),
    (10, 10, "normal", 0.1, "cp-sat"),
    (50, 100, "normal", 0.1, "highs"),
    (50, 100, "normal", 0.1, "cp-sat"),
    (100, 500, "normal", 0.1, "highs"),
    (300, 1000, "normal", 0.1, "highs"),
    (1000, 1000, "normal", 0.1, "highs"),
    (1000, 5000, "normal", 0.1, "highs"),
    (1000, 5000, "normal", 0.0, "highs"),
    (100, 500, "emergency", 0.1, "highs"),
    (1000, 5000, "emergency", 0.1, "highs"),
    (1000, 5000, "emergency", 0.0, "highs"),
]
SMOKE = [(10, 10, "normal", 0.1, "cp-sat"), (20, 40, "emergency", 0.1, "highs")]


def dispatch_row(
    n_vehicles: int, n_requests: int, mode: str, fuel_share: float, backend: str, limit_s: float
) -> dict[str, object]:
    """Solve one instance; its sizes, time and certified gap."""
    inputs = synthetic_inputs(n_vehicles, n_requests, seed=1, fuel_share=fuel_share)
    roads = RoadNetwork(inputs.roads, inputs.positions)
    settings = SolveSettings(backend=BackendName(backend), time_limit_s=limit_s, mip_gap=1e-4)
    began = time.perf_counter()
    result = run_dispatch(inputs, roads, Mode(mode), settings)
    total = time.perf_counter() - began
    last = result.stages[-1]
    stage_gaps = [100 * stage.gap for stage in result.stages]
    return {
        "vehicles": n_vehicles,
        "requests": n_requests,
        "mode": mode,
        "fuel": fuel_share > 0,
        "backend": backend,
        "pairs": result.pairs.size,
        "method": last.method,
        "source": last.source,
        "status": last.solver_status,
        "objective_kwh": round(last.objective_kwh, 3),
        "bound_kwh": round(last.bound_kwh, 3),
        "gap_percent": 100 * result.gap,
        "stage_gap_percent": stage_gaps,
        "stages_s": [round(s.runtime_s, 2) for s in result.stages],
        "total_s": round(total, 2),
    }


def nearest_row(n_vehicles: int, n_queries: int) -> dict[str, object]:
    """Latency of single nearest-supply queries on a fleet of ``n_vehicles``."""
    inputs = synthetic_inputs(n_vehicles, 10, seed=2, grid=50)
    began = time.perf_counter()
    index = SupplyIndex(inputs)
    load_s = time.perf_counter() - began
    rng = np.random.default_rng(0)
    nodes = list(inputs.positions)
    latencies = []
    for _ in range(n_queries):
        node = nodes[int(rng.integers(len(nodes)))]
        need = float(rng.choice([0.0, 10.0, 50.0]))
        began = time.perf_counter()
        index.query(node, need, k=5)
        latencies.append(1000 * (time.perf_counter() - began))
    latencies.sort()
    return {
        "fleet": n_vehicles,
        "nodes": len(nodes),
        "load_s": round(load_s, 3),
        "queries": n_queries,
        "median_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
        "max_ms": round(latencies[-1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny instances, a few queries")
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds per dispatch")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="WORD",
        help="run only the rows matching every WORD given: a mode (normal, emergency), a "
        "size (1000x5000), a backend (highs, cp-sat), elec or fuel; skips the query",
    )
    args = parser.parse_args()
    rows = []
    header = (
        f"{'vehicles':>8} {'requests':>8} {'mode':>9} {'fuel':>5} {'backend':>7} {'pairs':>9} "
        f"{'method':>12} {'gap %':>8} {'total s':>8}"
    )
    print(header)
    chosen = [row for row in (SMOKE if args.smoke else FULL) if _matches(row, args.only)]
    for n_vehicles, n_requests, mode, fuel, backend in chosen:
        row = dispatch_row(n_vehicles, n_requests, mode, fuel, backend, args.time_limit)
        rows.append(row)
        print(
            f"{n_vehicles:>8} {n_requests:>8} {mode:>9} {'yes' if fuel else 'no':>5} "
            f"{backend:>7} {row['pairs']:>9} {row['method']:>12} "
            f"{row['gap_percent']:>8.4f} {row['total_s']:>8} "
            f"stages {' / '.join(f'{g:.4f}' for g in row['stage_gap_percent'])} %",
            flush=True,
        )
    if args.only:
        query: dict[str, object] = {}
    else:
        query = nearest_row(1_000, 20) if args.smoke else nearest_row(10_000, 200)
        _print_query(query)
    if args.json is not None:
        document = {"dispatch": rows, "nearest": query, "python": sys.version.split()[0]}
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _matches(row: tuple[int, int, str, float, str], words: list[str]) -> bool:
    """Whether a benchmark row has every one of ``words`` (see ``--only``)."""
    n_vehicles, n_requests, mode, fuel, backend = row
    labels = {f"{n_vehicles}x{n_requests}", mode, backend, "fuel" if fuel > 0 else "elec"}
    return all(word in labels for word in words)


def _print_query(query: dict[str, object]) -> None:
    print(
        f"nearest supply: fleet {query['fleet']}, {query['nodes']} nodes, loaded in "
        f"{query['load_s']} s; {query['queries']} queries: median {query['median_ms']} ms, "
        f"p95 {query['p95_ms']} ms, max {query['max_ms']} ms"
    )


if __name__ == "__main__":
    main()
