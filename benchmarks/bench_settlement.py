"""Settlement benchmark: gas per trade and wall time of settling rounds on a local anvil.

Run from the repository root after ``bash scripts/test.sh`` (it installs ``.venv`` and
``contracts/node_modules``)::

    .venv/bin/python benchmarks/bench_settlement.py            # 10, 100, 1,000 trades
    .venv/bin/python benchmarks/bench_settlement.py --smoke    # 10 trades

Each round is a synthetic result folder: ``n`` trades between ``n/2`` buyers (a last
round: 1,000 trades with 900 buyers, near the most one commit holds) and ``n/4`` sellers over
24 slots, every trade metered as fully delivered. Per round, in this order:

* ``settle`` (:func:`gridmatch.settlement.chain_client.settle`): start anvil, deploy,
  fund and escrow every buyer (demo set-up: one mint and approve, then ``depositFor`` in
  batches of 500 buyers) and commit the round (one transaction);
* ``attest``: two of three validators attest every trade in batches of 100; the second
  attestation reaches the quorum and settles (seller paid, refund, energy tokens);
* the list baseline: the same trades stored on chain one by one
  (``contracts/test/baseline/TradeListCommit.sol``), on an anvil with a 2e9 gas limit
  so it can be measured where a 30M block could not hold it.
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
from web3 import Web3

from gridmatch.results_io.folder import trades_csv
from gridmatch.results_io.rows import TradeRow
from gridmatch.settlement.anvil import local_chain
from gridmatch.settlement.artifacts import build, load
from gridmatch.settlement.chain_client import attest, settle
from gridmatch.settlement.round_data import read_round

BLOCK_GAS_LIMIT = 30_000_000


@dataclass(frozen=True)
class Row:
    """One round size."""

    trades: int
    buyers: int
    commit_gas: int
    commit_gas_per_trade: float
    list_commit_gas_per_trade: float
    list_commit_fits_block: bool
    attest_transactions: int
    attest_gas_per_trade: float
    settle_s: float
    attest_s: float


def write_round(folder: Path, n: int, buyers: int, seed: int = 0) -> Path:
    """A result folder with ``n`` trades and a meter file saying all were delivered."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    trades = []
    meters = ["slot,buy_order_id,sell_order_id,sent_kwh,received_kwh"]
    for k in range(n):
        slot = k % 24
        kwh = round(float(rng.uniform(0.2, 3.0)), 3)
        price = round(float(rng.uniform(0.12, 0.28)), 4)
        buyer, seller = f"buyer-{k % buyers}", f"seller-{k % max(n // 4, 1)}"
        welfare = kwh * 0.1
        trades.append(
            TradeRow(
                slot, f"b{k}", f"s{k}", buyer, seller, 1, 2, kwh, price, 0.01, 0.4, 0.05, welfare
            )
        )
        meters.append(f"{slot},b{k},s{k},{kwh},{kwh}")
    (folder / "trades.csv").write_bytes(trades_csv(trades))
    (folder / "meters.csv").write_text("\n".join(meters) + "\n")
    return folder


def list_commit_gas(folder: Path) -> int:
    """Gas of storing the folder's trades one by one instead of committing a root."""
    trades = [t.as_tuple() for t in read_round(folder, 1).trades]
    artifact = load("TradeListCommit")
    with local_chain(folder / "list-state.json", ("--gas-limit", "2000000000")) as url:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 300}))
        admin = w3.eth.accounts[0]
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = w3.eth.wait_for_transaction_receipt(
            factory.constructor().transact({"from": admin})
        )
        contract = w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)
        tx = contract.functions.commitTrades(1, trades).transact(
            {"from": admin, "gas": 1_900_000_000}
        )
        return int(w3.eth.wait_for_transaction_receipt(tx)["gasUsed"])


def measure(n: int, buyers: int, root: Path) -> Row:
    """Settle one round of ``n`` trades and measure it."""
    folder = write_round(root / f"round-{n}-{buyers}", n, buyers)
    began = time.perf_counter()
    record = settle(folder)
    settled = time.perf_counter()
    outcome = attest(folder, folder / "meters.csv")
    attested = time.perf_counter()
    list_gas = list_commit_gas(folder)
    buyers = len({t["buyer"] for t in record["trades"]})
    return Row(
        trades=n,
        buyers=buyers,
        commit_gas=record["commit_gas"],
        commit_gas_per_trade=record["commit_gas"] / n,
        list_commit_gas_per_trade=list_gas / n,
        list_commit_fits_block=list_gas <= BLOCK_GAS_LIMIT,
        attest_transactions=outcome.transactions,
        attest_gas_per_trade=outcome.gas_used / n,
        settle_s=settled - began,
        attest_s=attested - settled,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="one round of 10 trades (CI)")
    parser.add_argument("--json", dest="json_path", help="also write the rows to this file")
    args = parser.parse_args(argv)
    sizes = [(10, 5)] if args.smoke else [(10, 5), (100, 50), (1000, 500), (1000, 900)]
    build()
    print(
        "| trades | buyers | commit gas | commit gas/trade | list commit gas/trade | "
        "list fits 30M | attest tx | attest gas/trade | settle s | attest s | total s |\n"
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, buyers in sizes:
            r = measure(n, buyers, Path(tmp))
            rows.append(r)
            fits = "yes" if r.list_commit_fits_block else "no"
            print(
                f"| {r.trades} | {r.buyers} | {r.commit_gas} | {r.commit_gas_per_trade:.0f} "
                f"| {r.list_commit_gas_per_trade:.0f} | {fits} "
                f"| {r.attest_transactions} | {r.attest_gas_per_trade:.0f} | {r.settle_s:.2f} "
                f"| {r.attest_s:.2f} | {r.settle_s + r.attest_s:.2f} |",
                flush=True,
            )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
