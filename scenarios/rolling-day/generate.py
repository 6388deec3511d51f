"""Write this folder's orders.csv: a deterministic rolling day on the CIGRE LV grid.

36 prosumers on the 15 load buses post orders for the eight delivery hours 10:00-18:00
(slots 10-17) between 06:00 and shortly before each hour's gate closes; a few arrive
too late. PV owners sell around noon (mostly divisible, some all-or-none), battery
owners in the late afternoon; buys are indivisible households or divisible flexible
loads. Run from anywhere: ``python scenarios/rolling-day/generate.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from gridmatch.scenario_io.orders_csv import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, SUBMITTED_COLUMN

BUSES = [2, 12, 17, 18, 19, 22, 24, 35, 36, 37, 40, 41, 42, 43]
SLOTS = range(10, 18)
FIRST_SUBMISSION_MIN = 360
GATE_CLOSURE_MIN = 15
SEED = 2026


def main() -> None:
    """Write orders.csv next to this script (deterministic: seed 2026)."""
    rng = np.random.default_rng(SEED)
    n_participants = 36
    bus = rng.choice(BUSES, size=n_participants)
    has_pv = rng.random(n_participants) < 0.4
    has_battery = rng.random(n_participants) < 0.15
    pv_peak_kwh = rng.uniform(2.0, 8.0, n_participants)
    rows = []
    for slot in SLOTS:
        close_min = slot * 60 - GATE_CLOSURE_MIN
        sun = max(np.sin((slot + 0.5 - 6.0) / 12.0 * np.pi), 0.0)
        for p in range(n_participants):
            if rng.random() < 0.3:
                continue  # not every prosumer trades every hour
            pv_kwh = pv_peak_kwh[p] * sun * rng.uniform(0.6, 1.0)
            if has_pv[p] and pv_kwh > 0.5:
                side, quantity = "sell", pv_kwh
                price = rng.uniform(0.04, 0.16)
                divisible = "false" if rng.random() < 0.2 else "true"
            elif has_battery[p] and slot >= 15:
                side, quantity = "sell", rng.uniform(1.0, 4.0)
                price = rng.uniform(0.12, 0.22)
                divisible = "true"
            else:
                side, quantity = "buy", rng.uniform(0.2, 2.5)
                price = rng.uniform(0.14, 0.34)
                divisible = "true" if rng.random() < 0.3 else "false"
            if rng.random() < 0.02:
                submitted = int(rng.integers(close_min, close_min + 60))  # too late
            else:
                submitted = int(rng.integers(FIRST_SUBMISSION_MIN, close_min))
            rows.append(
                [
                    f"h{slot}-p{p:02d}",
                    f"p{p:02d}",
                    side,
                    int(bus[p]),
                    slot,
                    f"{quantity:.3f}",
                    f"{price:.4f}",
                    divisible,
                    submitted,
                ]
            )
    header = [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, SUBMITTED_COLUMN]
    path = Path(__file__).with_name("orders.csv")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


if __name__ == "__main__":
    main()
