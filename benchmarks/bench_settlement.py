"""Settlement benchmark: gas per trade and wall time of settling rounds on a local anvil.

Run from the repository root after ``bash scripts/test.sh`` (it installs ``.venv`` and
``contracts/node_modules``)::

    .venv/bin/python benchmarks/bench_settlement.py            # 10, 100, 1,000, 5,000 trades
    .venv/bin/python benchmarks/bench_settlement.py --smoke    # 10 trades

Each round is a synthetic result folder: ``n`` trades between ``n/2`` buyers and ``n/4``
sellers over 24 hourly slots, each trade a pair of signed orders, every trade metered
as delivered. Per round, in this order (anvil enforces EIP-7825's 2^24 gas per
transaction; every transaction is signed locally and sent raw):

* ``settle``: start anvil, create the keystore, deploy, register four validators, sign
  every order (EIP-712) and meter binding, fund and escrow every buyer (demo set-up:
  mint, approve, ``depositFor`` in batches), open the round, add the trades in chunks
  filled to ~80 % of 2^24 gas, seal it;
* ``meters sign``: every meter signs its reading of every slot;
* ``attest``: four validator processes, each with its own key and copy of the
  readings, check every signature and share, and vote in batches; the third vote of a
  trade reaches the quorum (> 2/3 of 4) and settles it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gridmatch.matching.orders import Order, Side
from gridmatch.results_io.folder import ResultFiles, write_result
from gridmatch.results_io.rows import OrderRow, OrderStatus, TradeRow
from gridmatch.results_io.summary import SlotSummary, Summary
from gridmatch.settlement.artifacts import build
from gridmatch.settlement.attestation import attest, sign_meter_file
from gridmatch.settlement.deploy import settle


@dataclass(frozen=True)
class Row:
    """One round size."""

    trades: int
    buyers: int
    commit_transactions: int
    commit_gas_per_trade: float
    attest_transactions: int
    attest_gas_per_trade: float
    settle_s: float
    sign_s: float
    attest_s: float


def write_round(folder: Path, n: int, buyers: int, seed: int = 0) -> Path:
    """A result folder with ``n`` trades and a meter file saying all were delivered."""
    rng = np.random.default_rng(seed)
    sellers = max(n // 4, 1)
    trades, orders = [], []
    exported: dict[tuple[str, int], float] = {}
    imported: dict[tuple[str, int], float] = {}
    for k in range(n):
        slot = k % 24
        kwh = round(float(rng.uniform(0.2, 3.0)), 3)
        price = round(float(rng.uniform(0.12, 0.28)), 4)
        buyer, seller = f"buyer-{k % buyers}", f"seller-{k % sellers}"
        buy = Order(f"b{k}", buyer, Side.BUY, 1, slot, kwh, 0.40, False)
        sell = Order(f"s{k}", seller, Side.SELL, 2, slot, kwh, 0.05, True)
        orders += [OrderRow(buy, kwh, OrderStatus.FILLED), OrderRow(sell, kwh, OrderStatus.FILLED)]
        ids = (f"b{k}", f"s{k}", buyer, seller)
        trades.append(TradeRow(slot, *ids, 1, 2, kwh, price, 0.01, 0.4, 0.05, kwh * 0.34))
        exported[seller, slot] = exported.get((seller, slot), 0.0) + kwh
        imported[buyer, slot] = imported.get((buyer, slot), 0.0) + kwh
    slots = tuple(
        SlotSummary(
            slot=s, n_buy_orders=1, n_sell_orders=1, welfare_eur=0.0, termination="converged"
        )
        for s in range(24)
    )
    summary = Summary(
        scenario="bench",
        status="heuristic",
        welfare_eur=0.0,
        bound_eur=0.0,
        gap=0.0,
        formulation="none",
        solver="none",
        solver_version="n/a",
        runtime_s=0.0,
        secure=None,
        n_orders=len(orders),
        n_trades=n,
        traded_kwh=0.0,
        day_start_utc="2026-12-01T00:00:00+00:00",
        slot_minutes=60.0,
        # Every trade's fee is 0.01 EUR/kWh: buyers sign that as their cap.
        max_fee_eur_per_kwh=0.01,
        slots=slots,
    )
    write_result(folder, ResultFiles(trades, orders, summary, {"bench": True}))
    meters = ["meter_id,slot,exported_kwh,imported_kwh"]
    for (participant, slot), kwh in sorted(exported.items()):
        meters.append(f"{participant},{slot},{kwh:.3f},0")
    for (participant, slot), kwh in sorted(imported.items()):
        meters.append(f"{participant},{slot},0,{kwh:.3f}")
    (folder.parent / f"{folder.name}-meters.csv").write_text("\n".join(meters) + "\n")
    return folder


def measure(n: int, buyers: int, root: Path) -> Row:
    """Settle one round of ``n`` trades and measure it."""
    folder = write_round(root / f"round-{n}", n, buyers)
    meters = folder.parent / f"{folder.name}-meters.csv"
    signed = folder.parent / f"{folder.name}-signed.json"
    began = time.perf_counter()
    record = settle(folder)
    settled = time.perf_counter()
    sign_meter_file(folder, meters, signed)
    signed_at = time.perf_counter()
    outcome = attest(folder, signed)
    attested = time.perf_counter()
    assert not outcome.refused() and not outcome.short(), (outcome.refused() + outcome.short())[:3]
    return Row(
        trades=n,
        buyers=len({t.buyer for t in record.trades}),
        commit_transactions=record.commit_transactions,
        commit_gas_per_trade=record.commit_gas / n,
        attest_transactions=outcome.transactions,
        attest_gas_per_trade=outcome.gas_used / n,
        settle_s=settled - began,
        sign_s=signed_at - settled,
        attest_s=attested - signed_at,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="one round of 10 trades (CI)")
    parser.add_argument("--json", dest="json_path", help="also write the rows to this file")
    args = parser.parse_args(argv)
    sizes = [(10, 5)] if args.smoke else [(10, 5), (100, 50), (1000, 500), (5000, 2500)]
    build()
    print(
        "| trades | buyers | commit tx | commit gas/trade | attest tx | attest gas/trade | "
        "settle s | meters sign s | attest s | total s |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, buyers in sizes:
            r = measure(n, buyers, Path(tmp))
            rows.append(r)
            total = r.settle_s + r.sign_s + r.attest_s
            print(
                f"| {r.trades} | {r.buyers} | {r.commit_transactions} "
                f"| {r.commit_gas_per_trade:.0f} | {r.attest_transactions} "
                f"| {r.attest_gas_per_trade:.0f} | {r.settle_s:.2f} | {r.sign_s:.2f} "
                f"| {r.attest_s:.2f} | {total:.2f} |",
                flush=True,
            )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
