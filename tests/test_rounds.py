"""Rolling rounds: carry-over, conservation, the ledger, rerun, diff and determinism.

The rules are checked from the files a user sees (the scenario's orders.csv, each
round folder's trades.csv and orders.csv) with the standard library and the tests'
own checkers, not by re-reading the engine's accounting.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import shutil
import sqlite3
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, ROUNDS_HEADER, case33bw_scenario
from feasibility import (
    TradeRow,
    check_trades,
    line_distances_km,
    read_input_orders,
    read_trades,
)
from independent_grid import insecure_slots

from gridmatch.errors import InputError
from gridmatch.pipeline import RunSettings
from gridmatch.results_io.atomic import OutputFolderError
from gridmatch.rounds import runner
from gridmatch.rounds.ledger import Ledger
from gridmatch.rounds.ledger_schema import SCHEMA_VERSION
from gridmatch.rounds.replay import diff, replay_rounds, rerun
from gridmatch.rounds.resume import LedgerMismatchError
from gridmatch.rounds.runner import RoundsRun, run_rounds

ROLLING_DAY = REPO / "scenarios" / "rolling-day"
HEADER = ROUNDS_HEADER


def _scenario(folder: Path, rows: list[str], rounds: str, *, header: str = HEADER) -> Path:
    return case33bw_scenario(folder, rows, header=header, yaml_extra=f"rounds:\n{rounds}")


def _day_rows(scenario: Path) -> dict[str, dict[str, str]]:
    with (scenario / "orders.csv").open(newline="") as handle:
        return {row["order_id"]: row for row in csv.DictReader(handle)}


def _table_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _round_folders(out: Path) -> list[Path]:
    return sorted(out.glob("round-*"))


def _round_trades(out: Path) -> list[tuple[int, list[dict[str, str]]]]:
    """(cleared_at_min, trades) per round folder, from the files alone."""
    found = []
    for folder in _round_folders(out):
        manifest = json.loads((folder / "manifest.json").read_text())
        with (folder / "trades.csv").open(newline="") as handle:
            found.append((manifest["round"]["cleared_at_min"], list(csv.DictReader(handle))))
    return found


def _round_book(folder: Path) -> dict[str, float]:
    with (folder / "orders.csv").open(newline="") as handle:
        return {r["order_id"]: float(r["quantity_kwh"]) for r in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def rolling_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RoundsRun]:
    out = tmp_path_factory.mktemp("rolling") / "out"
    return out, run_rounds(ROLLING_DAY, out, RunSettings())


# --- carry-over -------------------------------------------------------------------


def test_a_partly_filled_divisible_order_trades_its_rest_in_a_later_round(
    tmp_path: Path,
) -> None:
    # Slot 3 opens for trading until 180 min; rounds at 0, 30, 60, ...
    scenario = _scenario(
        tmp_path / "s",
        [
            "s,ps,sell,5,3,5.0,0.05,true,0",
            "b1,p1,buy,7,3,2.0,0.30,false,0",
            "b2,p2,buy,9,3,3.0,0.30,false,20",
        ],
        "  interval_min: 30\n",
    )
    out = tmp_path / "out"
    run_rounds(scenario, out, RunSettings(formulation="highspy"))
    first, second, *later = _round_folders(out)
    assert _round_book(first) == {"s": 5.0, "b1": 2.0}
    # What round 1 left of the seller, and the buyer who came later.
    assert _round_book(second) == {"s": 3.0, "b2": 3.0}
    trades = _round_trades(out)
    assert [
        (t["buy_order_id"], t["sell_order_id"], float(t["quantity_kwh"])) for t in trades[0][1]
    ] == [("b1", "s", 2.0)]
    assert [(t["buy_order_id"], float(t["quantity_kwh"])) for t in trades[1][1]] == [("b2", 3.0)]
    # Everything is gone afterwards: indivisible buys once matched, the seller sold out.
    for folder in later:
        assert _round_book(folder) == {}


def test_an_indivisible_order_matched_once_never_appears_again(tmp_path: Path) -> None:
    scenario = _scenario(
        tmp_path / "s",
        [
            "s1,ps,sell,5,4,1.0,0.05,false,0",  # all-or-none
            "s2,pt,sell,5,4,4.0,0.05,true,0",
            "b1,p1,buy,7,4,1.0,0.30,false,0",
            "b2,p2,buy,9,4,2.0,0.30,false,40",
        ],
        "  interval_min: 30\n",
    )
    out = tmp_path / "out"
    run_rounds(scenario, out, RunSettings(formulation="highspy"))
    rounds = _round_trades(out)
    matched_in: dict[str, list[int]] = defaultdict(list)
    for k, (_, trades) in enumerate(rounds):
        for t in trades:
            matched_in[t["buy_order_id"]].append(k)
            matched_in[t["sell_order_id"]].append(k)
    for order_id in ("s1", "b1", "b2"):
        assert len(matched_in[order_id]) == 1, order_id
        (k,) = matched_in[order_id]
        for folder in _round_folders(out)[k + 1 :]:
            assert order_id not in _round_book(folder)


def test_an_order_whose_slot_closed_is_never_traded(tmp_path: Path) -> None:
    # Slot 2 starts at 120 min and closes at 120 - 45 = 75: rounds at 0, 30, 60 only.
    scenario = _scenario(
        tmp_path / "s",
        [
            "s,ps,sell,5,2,5.0,0.05,true,0",
            "b-in-time,p1,buy,7,2,1.0,0.30,false,60",
            "b-late,p2,buy,7,2,1.0,0.30,false,80",
            "b-next,p3,buy,7,3,1.0,0.30,false,80",
            "s-next,p4,sell,5,3,1.0,0.05,true,90",
        ],
        "  interval_min: 30\n  gate_closure_min: 45\n",
    )
    out = tmp_path / "out"
    run_rounds(scenario, out, RunSettings(formulation="greedy"))
    for cleared_at_min, trades in _round_trades(out):
        for t in trades:
            assert cleared_at_min < int(t["slot"]) * 60 - 45
            assert t["buy_order_id"] != "b-late"
    day = _day_rows(out)
    assert day["b-late"]["status"] == "late"
    assert day["b-in-time"]["status"] == "filled"
    assert day["b-next"]["status"] == "filled"


# --- conservation and security across rounds, on the bundled day ------------------


def test_over_all_rounds_no_order_trades_more_than_its_quantity(
    rolling_day: tuple[Path, RoundsRun],
) -> None:
    out, run = rolling_day
    orders = read_input_orders(ROLLING_DAY / "orders.csv")
    submitted = {k: int(r["submitted_at_min"]) for k, r in _day_rows(ROLLING_DAY).items()}
    distances = line_distances_km(_cigre_lv())
    total: dict[str, float] = defaultdict(float)
    partners: dict[str, int] = defaultdict(int)
    rounds_of: dict[str, set[int]] = defaultdict(set)
    rounds = _round_trades(out)
    assert len(rounds) == run.summary["n_rounds"] > 10
    for k, (cleared_at_min, trades) in enumerate(rounds):
        # Each round obeys the market rules on its own book (what was left of each order).
        folder = _round_folders(out)[k]
        check_trades(
            read_input_orders(folder / "orders.csv"),
            read_trades(folder / "trades.csv"),
            flat_fee_eur_per_kwh=0.01,
            fee_eur_per_kwh_per_km=0.05,
            distance_km=distances,
            pricing="midpoint",
        )
        for t in trades:
            assert cleared_at_min < int(t["slot"]) * 60 - 15, "traded after its gate closed"
            for order_id in (t["buy_order_id"], t["sell_order_id"]):
                assert submitted[order_id] <= cleared_at_min, "traded before it was submitted"
                total[order_id] += float(t["quantity_kwh"])
                rounds_of[order_id].add(k)
            partners[t["buy_order_id"]] += 1
    assert any(len(r) > 1 for r in rounds_of.values()), "no order carried to a later round"
    for order_id, kwh in total.items():
        order = orders[order_id]
        assert kwh <= order.quantity_kwh + 1e-6, order_id
        if not order.divisible:
            assert len(rounds_of[order_id]) == 1, f"indivisible {order_id} in several rounds"
            assert math.isclose(kwh, order.quantity_kwh, abs_tol=1e-6), order_id
            if order.side == "buy":
                assert partners[order_id] == 1, order_id
    # The day's files add up to the rounds'.
    day_trades = read_trades(out / "trades.csv")
    assert len(day_trades) == sum(len(t) for _, t in rounds)
    for order_id, row in _day_rows(out).items():
        assert math.isclose(float(row["filled_kwh"]), total[order_id], abs_tol=1e-9)


def test_all_rounds_together_are_secure_by_an_independent_power_flow(
    rolling_day: tuple[Path, RoundsRun], tmp_path: Path
) -> None:
    out, run = rolling_day
    # The grid had to hold trades back in some round, on top of earlier rounds' trades.
    assert any(
        json.loads((f / "summary.json").read_text())["unconstrained_insecure_slots"]
        for f in _round_folders(out)
    )
    assert run.summary["secure"] is True
    # Every slot's trades of all rounds together, judged against the grid without trades.
    together = tmp_path / "together"
    together.mkdir()
    shutil.copy(out / "trades.csv", together / "trades.csv")
    assert insecure_slots(_cigre_lv(), ROLLING_DAY, together) == set()


# --- ledger ------------------------------------------------------------------------


def test_the_ledger_stores_every_round_with_inputs_options_versions_and_trades(
    rolling_day: tuple[Path, RoundsRun],
) -> None:
    out, run = rolling_day
    db = sqlite3.connect(out / "ledger.sqlite")
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    rows = db.execute(
        "SELECT round_no, cleared_at_min, input_sha256, orders_json, options_json, "
        "versions_json, formulation, trades_csv, trades_sha256, summary_json FROM rounds "
        "ORDER BY round_no"
    ).fetchall()
    folders = _round_folders(out)
    assert len(rows) == len(folders) == run.summary["n_rounds"]
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert [r[1] for r in rows] == list(range(360, 360 + 30 * len(rows), 30))
    for row, folder in zip(rows, folders, strict=True):
        _, _, input_sha, orders, options, versions, formulation, blob, sha, _ = row
        assert len(input_sha) == 64
        assert json.loads(options) == {
            "time_limit_s": 30.0,
            "mip_gap": 1e-4,
            "threads": 1,
            "seed": 0,
            "tie_break": "none",
        }
        assert json.loads(versions)["highspy"] and json.loads(versions)["pandapower"]
        assert formulation == "highspy"
        assert blob == (folder / "trades.csv").read_bytes()
        assert sha == hashlib.sha256(blob).hexdigest()
        stored = {o["order_id"]: o["quantity_kwh"] for o in json.loads(orders)}
        assert stored == _round_book(folder)
    name, network = db.execute("SELECT name, length(network_json) FROM scenario").fetchone()
    assert name == "rolling-day" and network > 10_000


def test_a_failed_round_leaves_no_row_and_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = _scenario(
        tmp_path / "s",
        [f"s{k},ps,sell,5,4,1.0,0.05,true,{30 * k}" for k in range(6)]
        + [f"b{k},pb,buy,7,4,1.0,0.30,false,{30 * k}" for k in range(6)],
        "  interval_min: 30\n",
    )
    write_folder = runner._write_round_folder

    def crash_in_round_three(folder: Path, *args: object) -> None:
        if folder.name == "round-003":
            raise OSError("disk full")  # after the row was inserted, before the commit
        write_folder(folder, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "_write_round_folder", crash_in_round_three)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        run_rounds(scenario, out, RunSettings(formulation="greedy"))
    with Ledger.open(out / "ledger.sqlite") as ledger:
        assert ledger.round_numbers() == [1, 2]
    assert [f.name for f in _round_folders(out)] == ["round-001", "round-002"]
    # The rounds that were recorded still replay.
    assert rerun(out / "ledger.sqlite", 2).identical

    # A process killed halfway through writing a round (its pages already in the file)
    # leaves a hot journal; the next reader rolls the half round back.
    killed = (
        "import os, sqlite3\n"
        f"db = sqlite3.connect({str(out / 'ledger.sqlite')!r}, isolation_level=None)\n"
        "db.execute('PRAGMA cache_size = 1')\n"
        "db.execute('BEGIN IMMEDIATE')\n"
        "for n in range(3, 300):\n"
        "    db.execute('INSERT INTO rounds SELECT ?, cleared_at_min, input_sha256, orders_json, "
        "background_json, options_json, versions_json, formulation, trades_csv, trades_sha256, "
        "summary_json, created_utc, accounts_json FROM rounds WHERE round_no = 2', (n,))\n"
        "os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", killed], check=False).returncode == 9
    assert (out / "ledger.sqlite-journal").exists()
    with Ledger.open(out / "ledger.sqlite") as ledger:
        assert ledger.round_numbers() == [1, 2]


def test_a_ledger_is_never_overwritten(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path / "s", ["s,ps,sell,5,2,1.0,0.05,true,0"], "  interval_min: 60\n")
    out = tmp_path / "out"
    run_rounds(scenario, out, RunSettings(formulation="greedy"))
    before = (out / "ledger.sqlite").read_bytes()
    with pytest.raises(OutputFolderError, match="never overwritten"):
        run_rounds(scenario, out, RunSettings(formulation="greedy"))
    assert (out / "ledger.sqlite").read_bytes() == before


# --- rerun, diff, determinism --------------------------------------------------------


def test_every_round_reruns_identically_from_the_ledger(
    rolling_day: tuple[Path, RoundsRun],
) -> None:
    out, run = rolling_day
    replays = replay_rounds(out / "ledger.sqlite")
    assert [r.round_no for r in replays] == list(range(1, run.summary["n_rounds"] + 1))
    for replay in replays:
        assert replay.identical, "\n".join(replay.lines())
        assert replay.diff.empty and not replay.stored_time_limited
        assert replay.formulation == replay.stored_formulation == "highspy"


def test_the_same_day_run_twice_gives_byte_identical_rounds(
    rolling_day: tuple[Path, RoundsRun], tmp_path: Path
) -> None:
    out, _ = rolling_day
    again = tmp_path / "again"
    run_rounds(ROLLING_DAY, again, RunSettings())
    first = _round_folders(out)
    second = _round_folders(again)
    assert [f.name for f in first] == [f.name for f in second]
    for a, b in zip(first, second, strict=True):
        for name in ("trades.csv", "orders.csv", "grid.csv"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), (a.name, name)
    assert (out / "trades.csv").read_bytes() == (again / "trades.csv").read_bytes()
    hashes = "SELECT input_sha256, trades_sha256 FROM rounds ORDER BY round_no"
    assert (
        sqlite3.connect(out / "ledger.sqlite").execute(hashes).fetchall()
        == sqlite3.connect(again / "ledger.sqlite").execute(hashes).fetchall()
    )


def test_rerun_needs_only_the_ledger_and_notices_an_altered_one(tmp_path: Path) -> None:
    scenario = _scenario(
        tmp_path / "s",
        ["s,ps,sell,5,3,5.0,0.05,true,0", "b,pb,buy,7,3,2.0,0.30,false,0"],
        "  interval_min: 60\n",
    )
    out = tmp_path / "out"
    run_rounds(scenario, out, RunSettings(formulation="highspy"))
    shutil.rmtree(scenario)  # the original files are gone (or changed): no matter
    assert rerun(out / "ledger.sqlite", 1).identical
    db = sqlite3.connect(out / "ledger.sqlite")
    db.execute("UPDATE rounds SET orders_json = replace(orders_json, '5.0', '6.0')")
    db.commit()
    db.close()
    with pytest.raises(InputError, match="altered"):
        rerun(out / "ledger.sqlite", 1)
    with pytest.raises(InputError, match="round 9 is not in the ledger"):
        rerun(out / "ledger.sqlite", 9)


# greedy breaks ties by book position explicitly; the MILP backends are the ones to watch.
@pytest.mark.parametrize("formulation", ["highspy", "cpsat"])
def test_of_two_identical_sellers_the_same_one_wins_every_time(
    tmp_path: Path, formulation: str
) -> None:
    scenario = _scenario(
        tmp_path / "s",
        [
            "s-late,pa,sell,5,3,1.0,0.10,false,20",
            "s-early,pb,sell,5,3,1.0,0.10,false,10",
            "b,pc,buy,7,3,1.0,0.30,false,0",
        ],
        "  interval_min: 30\n",
    )
    winners = set()
    outputs = set()
    for k in range(2):
        out = tmp_path / f"out{k}"
        run_rounds(scenario, out, RunSettings(formulation=formulation))
        (trade,) = read_trades(out / "trades.csv")
        winners.add(trade.sell_order_id)
        outputs.add((out / "trades.csv").read_bytes())
    assert len(winners) == 1 and len(outputs) == 1
    assert rerun(tmp_path / "out0" / "ledger.sqlite", 2).identical


def test_diff_lists_the_trades_another_formulation_changes_and_its_welfare(
    rolling_day: tuple[Path, RoundsRun],
) -> None:
    out, _ = rolling_day
    distances = line_distances_km(_cigre_lv())
    changed_rounds = 0
    # One round through the public diff, the busy middle of the day through the batch
    # form of the same (the whole day would double the time, not the evidence).
    assert diff(out / "ledger.sqlite", 10, "greedy").formulation == "greedy"
    for result in replay_rounds(out / "ledger.sqlite", range(4, 14), formulation="greedy"):
        folder = _round_folders(out)[result.round_no - 1]
        assert result.formulation == "greedy" and result.stored_formulation == "highspy"
        if result.identical:
            assert result.diff.empty
            continue
        changed_rounds += 1
        # Rebuild greedy's trade set from the stored one and the diff ...
        stored = {
            (t.slot, t.buy_order_id, t.sell_order_id): t for t in read_trades(folder / "trades.csv")
        }
        other = dict(stored)
        for line in result.diff.removed:
            del other[line.key]
        for line in (*result.diff.added, *(c.after for c in result.diff.changed)):
            fee = _fee(line.buy_order_id, line.sell_order_id, distances)
            other[line.key] = TradeRow(
                line.slot,
                line.buy_order_id,
                line.sell_order_id,
                line.quantity_kwh,
                line.price_eur_per_kwh,
                fee,
            )
        # ... and check both with the independent checker: legal, and the welfare the
        # diff states.
        book = read_input_orders(folder / "orders.csv")
        rules = {
            "flat_fee_eur_per_kwh": 0.01,
            "fee_eur_per_kwh_per_km": 0.05,
            "distance_km": distances,
            "pricing": "midpoint",
        }
        before = check_trades(book, list(stored.values()), **rules)  # type: ignore[arg-type]
        after = check_trades(book, list(other.values()), **rules)  # type: ignore[arg-type]
        assert math.isclose(result.diff.welfare_before_eur, before, abs_tol=1e-9)
        assert math.isclose(result.diff.welfare_after_eur, after, abs_tol=1e-9)
        assert math.isclose(result.diff.welfare_delta_eur, after - before, abs_tol=1e-9)
        text = "\n".join(result.lines())
        assert "trades differ" in text and "welfare" in text
    assert changed_rounds > 0, "greedy should differ from highspy somewhere in the day"


def _fee(buy_id: str, sell_id: str, distances: dict[tuple[int, int], float]) -> float:
    rows = _day_rows(ROLLING_DAY)
    km = distances[(int(rows[buy_id]["bus"]), int(rows[sell_id]["bus"]))]
    return 0.01 + 0.05 * km


def _cigre_lv() -> object:
    import pandapower.networks as pn

    return pn.create_cigre_network_lv()


# --- continuing a day ------------------------------------------------------------------


def _files(out: Path) -> dict[str, bytes]:
    """Every result file of a day folder except the timings in summary.json."""
    names = ["trades.csv", "orders.csv"]
    for folder in _round_folders(out):
        names += [f"{folder.name}/{f.name}" for f in folder.iterdir() if f.suffix == ".csv"]
    return {name: (out / name).read_bytes() for name in sorted(names)}


def _ledger_hashes(out: Path) -> list[tuple[str, str]]:
    query = "SELECT input_sha256, trades_sha256 FROM rounds ORDER BY round_no"
    return sqlite3.connect(out / "ledger.sqlite").execute(query).fetchall()


def test_a_day_stopped_with_until_and_resumed_is_the_uninterrupted_day(
    rolling_day: tuple[Path, RoundsRun], tmp_path: Path
) -> None:
    whole, run = rolling_day
    out = tmp_path / "part"
    stopped = run_rounds(ROLLING_DAY, out, RunSettings(), until_min=600)
    # rounds every 30 min from 06:00; the 10:00 round is the last one cleared
    assert stopped.summary["n_rounds"] == 9 and stopped.summary["complete"] is False
    assert stopped.summary["n_rounds_planned"] == run.summary["n_rounds"]
    with (out / "orders.csv").open(newline="") as handle:
        status = {row["order_id"]: row["status"] for row in csv.DictReader(handle)}
    day = _day_rows(ROLLING_DAY)
    pending = {k for k, v in status.items() if v == "pending"}
    assert pending and all(int(day[k]["submitted_at_min"]) > 600 for k in pending)

    resumed = run_rounds(ROLLING_DAY, out, RunSettings(), resume=True)
    assert resumed.summary["complete"] is True
    assert resumed.summary["n_trades"] == run.summary["n_trades"]
    assert _files(out) == _files(whole)
    assert _ledger_hashes(out) == _ledger_hashes(whole)
    # A finished day resumed again clears nothing and changes nothing.
    again = run_rounds(ROLLING_DAY, out, RunSettings(), resume=True)
    assert again.summary["n_rounds"] == run.summary["n_rounds"]
    assert _files(out) == _files(whole)


def test_a_finished_day_resumed_writes_a_deleted_round_folder_again(
    rolling_day: tuple[Path, RoundsRun], tmp_path: Path
) -> None:
    whole, run = rolling_day
    out = tmp_path / "copy"
    shutil.copytree(whole, out)
    manifest = json.loads((whole / "round-003" / "manifest.json").read_text())
    shutil.rmtree(out / "round-003")
    shutil.rmtree(out / "round-011")
    again = run_rounds(ROLLING_DAY, out, RunSettings(), resume=True)
    assert again.restored_rounds == (3, 11) and again.unrestored_rounds == ()
    assert again.summary["n_rounds"] == run.summary["n_rounds"]
    assert _files(out) == _files(whole)  # the rounds' CSVs byte for byte
    restored = json.loads((out / "round-003" / "manifest.json").read_text())
    assert restored["round"] == manifest["round"]  # the ledger's hashes
    assert _ledger_hashes(out) == _ledger_hashes(whole)
    # Nothing else gone: nothing cleared again.
    assert run_rounds(ROLLING_DAY, out, RunSettings(), resume=True).restored_rounds == ()


def test_a_deleted_round_whose_clearing_differs_now_stays_gone_and_the_day_resumes(
    rolling_day: tuple[Path, RoundsRun], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, _ = rolling_day
    out = tmp_path / "copy"
    shutil.copytree(whole, out)
    traded = next(f for f in _round_folders(whole) if len(_table_rows(f / "trades.csv")) > 1)
    shutil.rmtree(out / traded.name)
    clear_round = runner.clear_round

    def one_trade_less(market: object, round_input: object) -> object:
        cleared = clear_round(market, round_input)  # type: ignore[arg-type]
        return dataclasses.replace(cleared, trades=cleared.trades[:-1])

    monkeypatch.setattr(runner, "clear_round", one_trade_less)
    again = run_rounds(ROLLING_DAY, out, RunSettings(), resume=True)
    number = int(traded.name.removeprefix("round-"))
    assert again.restored_rounds == () and again.unrestored_rounds == (number,)
    assert not (out / traded.name).exists()
    assert (out / "trades.csv").read_bytes() == (whole / "trades.csv").read_bytes()


def _six_pairs(folder: Path) -> Path:
    return _scenario(
        folder,
        [f"s{k},ps,sell,5,4,1.0,0.05,true,{30 * k}" for k in range(6)]
        + [f"b{k},pb,buy,7,4,0.5,0.30,false,{30 * k}" for k in range(6)]
        + [f"c{k},pc,buy,8,4,0.7,0.25,true,{30 * k + 15}" for k in range(3)],
        "  interval_min: 30\n",
    )


def test_a_day_killed_after_writing_a_round_resumes_where_the_ledger_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = _six_pairs(tmp_path / "s")
    whole = tmp_path / "whole"
    run_rounds(scenario, whole, RunSettings(formulation="highspy"))
    write_folder = runner._write_round_folder

    def killed_before_round_three_commits(folder: Path, *args: object) -> None:
        write_folder(folder, *args)  # type: ignore[arg-type]
        if folder.name == "round-003":
            raise KeyboardInterrupt  # the folder is there, the ledger row is not

    monkeypatch.setattr(runner, "_write_round_folder", killed_before_round_three_commits)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_rounds(scenario, out, RunSettings(formulation="highspy"))
    monkeypatch.undo()
    assert (out / "round-003").is_dir()
    with Ledger.open(out / "ledger.sqlite") as ledger:
        assert ledger.round_numbers() == [1, 2]

    run_rounds(scenario, out, RunSettings(formulation="highspy"), resume=True)
    assert _files(out) == _files(whole)
    assert _ledger_hashes(out) == _ledger_hashes(whole)


def _one_pair_day_stopped_at_60(tmp_path: Path) -> tuple[Path, Path]:
    """A seller of 3 kWh and a buyer of 1 kWh in slot 4, cleared up to minute 60.

    Slot 4 trades until 240 min; rounds at 0, 30, ..., 210.
    """
    scenario = _scenario(
        tmp_path / "s",
        ["s,ps,sell,5,4,3.0,0.05,true,0", "b1,p1,buy,7,4,1.0,0.30,false,0"],
        "  interval_min: 30\n",
    )
    out = tmp_path / "out"
    run_rounds(scenario, out, RunSettings(formulation="highspy"), until_min=60)
    return scenario, out


def test_orders_added_after_the_last_cleared_round_trade_when_the_day_resumes(
    tmp_path: Path,
) -> None:
    scenario, out = _one_pair_day_stopped_at_60(tmp_path)
    with (scenario / "orders.csv").open("a") as handle:
        handle.write("b2,p2,buy,9,4,2.0,0.30,false,75\n")
    resumed = run_rounds(scenario, out, RunSettings(formulation="highspy"), resume=True)
    assert resumed.summary["complete"] is True
    with (out / "trades.csv").open(newline="") as handle:
        trades = [
            (r["round_no"], r["buy_order_id"], r["sell_order_id"], float(r["quantity_kwh"]))
            for r in csv.DictReader(handle)
        ]
    assert trades == [("1", "b1", "s", 1.0), ("4", "b2", "s", 2.0)]
    check_trades(read_input_orders(scenario / "orders.csv"), read_trades(out / "trades.csv"))
    with (out / "orders.csv").open(newline="") as handle:
        status = {row["order_id"]: row["status"] for row in csv.DictReader(handle)}
    assert status == {"s": "filled", "b1": "filled", "b2": "filled"}


def _insert_early_order(scenario: Path) -> None:
    with (scenario / "orders.csv").open("a") as handle:
        handle.write("b9,p9,buy,9,4,1.0,0.30,false,30\n")


def _change_a_seen_quantity(scenario: Path) -> None:
    path = scenario / "orders.csv"
    path.write_text(path.read_text().replace("b1,p1,buy,7,4,1.0,", "b1,p1,buy,7,4,2.0,"))


def _swap_the_first_two_rows(scenario: Path) -> None:
    path = scenario / "orders.csv"
    header, first, second, *rest = path.read_text().splitlines()
    path.write_text("\n".join([header, second, first, *rest]) + "\n")


def _change_the_market(scenario: Path) -> None:
    path = scenario / "scenario.yaml"
    path.write_text(path.read_text() + "market:\n  grid_fee_eur_per_kwh: 0.01\n")


@pytest.mark.parametrize(
    ("change", "settings", "error", "where"),
    [
        (_insert_early_order, {}, InputError, "orders.csv, row 4, field 'submitted_at_min'"),
        (_change_a_seen_quantity, {}, InputError, "orders.csv, row 3, field 'quantity_kwh'"),
        (_swap_the_first_two_rows, {}, InputError, "orders.csv, row 3: order s sits elsewhere"),
        (_change_the_market, {}, InputError, "scenario.yaml, field 'market'"),
        (None, {"formulation": "greedy"}, LedgerMismatchError, "cleared with formulation"),
        (None, {"mip_gap": 0.01}, LedgerMismatchError, '"mip_gap":0.01'),
    ],
)
def test_a_day_does_not_resume_on_inputs_that_would_change_a_cleared_round(
    tmp_path: Path,
    change: Callable[[Path], None] | None,
    settings: dict[str, Any],
    error: type[Exception],
    where: str,
) -> None:
    scenario, out = _one_pair_day_stopped_at_60(tmp_path)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    if change is not None:
        change(scenario)
    with pytest.raises(error) as caught:
        run_rounds(
            scenario, out, RunSettings(**{"formulation": "highspy", **settings}), resume=True
        )
    assert where in str(caught.value)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_a_writer_arriving_mid_run_is_refused_and_never_sees_half_a_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = _six_pairs(tmp_path / "s")
    out = tmp_path / "out"
    greedy = RunSettings(formulation="greedy")
    attempts: list[str] = []

    def second_writer(moment: str) -> None:
        attempts.append(moment)
        with pytest.raises(OutputFolderError, match="another gridmatch process"):
            run_rounds(scenario, out, greedy, resume=True)

    create = Ledger.create
    write_day_files = runner._write_day_files

    def create_then_race(path: Path, stored: Any) -> Ledger:
        ledger = create(path, stored)
        second_writer("ledger just created")
        return ledger

    def day_files_then_race(*args: Any) -> None:
        second_writer("writing the day files")
        write_day_files(*args)

    monkeypatch.setattr(Ledger, "create", staticmethod(create_then_race))
    monkeypatch.setattr(runner, "_write_day_files", day_files_then_race)
    run_rounds(scenario, out, greedy, until_min=60)
    monkeypatch.undo()
    assert attempts == ["ledger just created", "writing the day files"]
    # The day files cover exactly what the ledger holds.
    summary = json.loads((out / "summary.json").read_text())
    with Ledger.open(out / "ledger.sqlite") as ledger:
        assert ledger.round_numbers() == [1, 2, 3] and summary["n_rounds"] == 3


def test_one_process_at_a_time_writes_a_ledger(tmp_path: Path) -> None:
    scenario = _six_pairs(tmp_path / "s")
    out = tmp_path / "out"
    run_rounds(scenario, out, RunSettings(formulation="greedy"), until_min=30)
    with (
        Ledger.open_for_append(out / "ledger.sqlite"),
        pytest.raises(OutputFolderError, match="another gridmatch process"),
    ):
        run_rounds(scenario, out, RunSettings(formulation="greedy"), resume=True)
    # Readers are never locked out.
    assert rerun(out / "ledger.sqlite", 1).identical
    run_rounds(scenario, out, RunSettings(formulation="greedy"), resume=True)


def test_until_before_the_first_round_clears_nothing_and_claims_nothing(tmp_path: Path) -> None:
    scenario = _six_pairs(tmp_path / "s")
    run = run_rounds(scenario, tmp_path / "out", RunSettings(formulation="greedy"), until_min=-1)
    assert run.summary["n_rounds"] == 0 and run.summary["secure"] is None
    assert (tmp_path / "out" / "trades.csv").read_text().count("\n") == 1


def test_a_round_folder_the_ledger_never_recorded_is_removed_on_resume(tmp_path: Path) -> None:
    scenario = _six_pairs(tmp_path / "s")
    out = tmp_path / "out"
    greedy = RunSettings(formulation="greedy")
    run_rounds(scenario, out, greedy, until_min=90)
    # As a crash leaves it: round 4's folder written, its ledger row never committed.
    with Ledger.open(out / "ledger.sqlite") as ledger:
        stored = ledger.round_numbers()
    db = sqlite3.connect(out / "ledger.sqlite")
    db.execute("DELETE FROM rounds WHERE round_no = 4")
    db.commit()
    db.close()
    assert stored == [1, 2, 3, 4] and (out / "round-004").is_dir()
    run_rounds(scenario, out, greedy, resume=True, until_min=60)
    assert [f.name for f in _round_folders(out)] == ["round-001", "round-002", "round-003"]


def test_a_ledger_written_before_the_tie_break_option_resumes(tmp_path: Path) -> None:
    from gridmatch.rounds.hashing import canonical_json, input_sha256, sha256_text

    scenario = _six_pairs(tmp_path / "s")
    settings = RunSettings(formulation="highspy")
    whole = tmp_path / "whole"
    run_rounds(scenario, whole, settings)
    out = tmp_path / "out"
    run_rounds(scenario, out, settings, until_min=60)
    # Rewrite the ledger as the previous release stored it: no tie_break anywhere.
    db = sqlite3.connect(out / "ledger.sqlite")
    (spec_text, network_sha) = db.execute(
        "SELECT spec_json, network_sha256 FROM scenario"
    ).fetchone()
    spec = json.loads(spec_text)
    del spec["solver"]["tie_break"]
    old_spec = canonical_json(spec)
    scenario_sha = sha256_text(canonical_json({"spec": old_spec, "network": network_sha}))
    db.execute("UPDATE scenario SET spec_json = ?", (old_spec,))
    rows = db.execute(
        "SELECT round_no, cleared_at_min, orders_json, background_json, options_json, "
        "formulation FROM rounds"
    ).fetchall()
    for round_no, at_min, orders, background, options, formulation in rows:
        old_options = json.loads(options)
        del old_options["tie_break"]
        data = {
            "orders": orders,
            "background": background,
            "options": canonical_json(old_options),
            "formulation": formulation,
        }
        db.execute(
            "UPDATE rounds SET options_json = ?, input_sha256 = ? WHERE round_no = ?",
            (data["options"], input_sha256(scenario_sha, at_min, data), round_no),
        )
    db.commit()
    db.close()
    assert rerun(out / "ledger.sqlite", 2).identical  # a consistent old ledger

    run_rounds(scenario, out, settings, resume=True)
    assert _files(out) == _files(whole)
    assert all(r.identical for r in replay_rounds(out / "ledger.sqlite"))


def test_rounds_run_until_and_resume_from_the_command_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gridmatch.cli import app

    scenario = _six_pairs(tmp_path / "s")
    out = str(tmp_path / "out")
    base = ["rounds", "run", str(scenario), "-o", out, "--formulation", "greedy"]
    first = CliRunner().invoke(app, [*base, "--until", "60"])
    assert first.exit_code == 0, first.stderr
    assert "3 of 8 rounds" in first.stderr
    refused = CliRunner().invoke(app, base)
    assert refused.exit_code == 2
    assert "--resume" in refused.stderr and "Traceback" not in refused.stderr
    resumed = CliRunner().invoke(app, [*base, "--resume", "--json"])
    assert resumed.exit_code == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["complete"] is True and summary["n_rounds"] == 8

    ledger = str(tmp_path / "out" / "ledger.sqlite")
    every = CliRunner().invoke(app, ["rounds", "rerun", "--ledger", ledger])
    assert every.exit_code == 0, every.stderr
    assert "8 of 8 rounds identical" in every.stderr
    # A round whose stored trades (with a matching hash) are not what its inputs give.
    db = sqlite3.connect(ledger)
    (blob,) = db.execute("SELECT trades_csv FROM rounds WHERE round_no = 2").fetchone()
    forged = bytes(blob).replace(b"\n", b"\n0,b9,s9,pb,ps,7,5,1.0,0.1,0.0,0.3,0.05,0.2\n", 1)
    db.execute(
        "UPDATE rounds SET trades_csv = ?, trades_sha256 = ? WHERE round_no = 2",
        (forged, hashlib.sha256(forged).hexdigest()),
    )
    db.commit()
    db.close()
    forged_run = CliRunner().invoke(app, ["rounds", "rerun", "--ledger", ledger, "--json"])
    assert forged_run.exit_code == 1
    assert "7 of 8 rounds identical" in forged_run.stderr
    assert [r["identical"] for r in json.loads(forged_run.stdout)][:3] == [True, False, True]


# --- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "row", "where", "message"),
    [
        (HEADER.rsplit(",", 1)[0], "s,ps,sell,5,2,1.0,0.05,true", "row 1", "missing column"),
        (HEADER, "s,ps,sell,5,2,1.0,0.05,true,-5", "row 3", "-5 is negative"),
        (HEADER, "s,ps,sell,5,2,1.0,0.05,true,", "row 3", "is empty"),
        (HEADER, "s,ps,sell,5,2,1.0,0.05,true,12.5", "row 3", "not a whole number"),
    ],
)
def test_a_bad_submission_time_names_file_row_and_field_and_nothing_is_written(
    tmp_path: Path, header: str, row: str, where: str, message: str
) -> None:
    rows = ["b,pb,buy,7,2,1.0,0.30,false" + ("" if header != HEADER else ",0"), row]
    scenario = _scenario(tmp_path / "s", rows, "  interval_min: 30\n", header=header)
    out = tmp_path / "out"
    with pytest.raises(InputError) as caught:
        run_rounds(scenario, out, RunSettings())
    text = str(caught.value)
    assert str(scenario / "orders.csv") in text
    assert where in text and "field 'submitted_at_min'" in text and message in text
    assert not out.exists()


def test_other_errors_name_the_users_file_and_row(tmp_path: Path) -> None:
    scenario = _scenario(
        tmp_path / "s",
        ["b,pb,buy,7,2,1.0,0.30,false,0", "s,ps,sell,5,2,0.0001,0.05,true,0"],
        "  interval_min: 30\n",
    )
    with pytest.raises(InputError) as caught:
        run_rounds(scenario, tmp_path / "out", RunSettings())
    assert str(caught.value).startswith(f"{scenario / 'orders.csv'}, row 3, field 'quantity_kwh'")


def test_rounds_need_a_rounds_section_which_clear_accepts(tmp_path: Path) -> None:
    from gridmatch.scenario_io.loader import load_scenario

    folder = case33bw_scenario(tmp_path / "s", ["b,pb,buy,7,2,1.0,0.30,false,0"], header=HEADER)
    with pytest.raises(InputError, match="field 'rounds'"):
        run_rounds(folder, tmp_path / "out", RunSettings())
    # The section is additive: a plain scenario with it still loads for `gridmatch clear`.
    with (folder / "scenario.yaml").open("a") as handle:
        handle.write("rounds:\n  interval_min: 15\n")
    (folder / "orders.csv").write_text(HEADER.rsplit(",", 1)[0] + "\nb,pb,buy,7,2,1.0,0.3,false\n")
    assert load_scenario(folder).spec.rounds is not None
    (folder / "scenario.yaml").write_text(
        (folder / "scenario.yaml").read_text().replace("interval_min: 15", "interval_min: 0")
    )
    with pytest.raises(InputError, match=r"rounds\.interval_min"):
        load_scenario(folder)


def test_rounds_commands_rerun_and_diff_from_the_ledger(
    rolling_day: tuple[Path, RoundsRun],
) -> None:
    from typer.testing import CliRunner

    from gridmatch.cli import app

    out, _ = rolling_day
    ledger = str(out / "ledger.sqlite")
    same = CliRunner().invoke(app, ["rounds", "rerun", "3", "--ledger", ledger])
    assert same.exit_code == 0, same.stderr
    assert "identical" in same.stderr
    other = CliRunner().invoke(
        app, ["rounds", "diff", "12", "--formulation", "greedy", "--ledger", ledger, "--json"]
    )
    assert other.exit_code == 0, other.stderr
    assert "welfare" in other.stdout
    missing = CliRunner().invoke(app, ["rounds", "rerun", "99", "--ledger", ledger])
    assert missing.exit_code == 2


def test_clear_accepts_and_checks_the_submission_time_column(tmp_path: Path) -> None:
    from gridmatch.scenario_io.loader import load_scenario

    folder = case33bw_scenario(tmp_path / "s", ["b,pb,buy,7,2,1.0,0.30,false,5"], header=HEADER)
    assert len(load_scenario(folder).book.orders) == 1
    (folder / "orders.csv").write_text(HEADER + "\nb,pb,buy,7,2,1.0,0.30,false,-5\n")
    with pytest.raises(InputError, match="field 'submitted_at_min'"):
        load_scenario(folder)
