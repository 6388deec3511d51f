"""Price-time tie-break: every exact formulation gives the same trades, at no loss of welfare.

Results are read from the result folders a user gets and checked with the tests' own
feasibility checker; the expected winners of ties follow from the rule, not from a
solver run.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, ROUNDS_HEADER, case33bw_scenario
from feasibility import check_result_folder, read_trades

from gridmatch.matching.solution import TieBreak
from gridmatch.pipeline import RunSettings, clear_scenario
from gridmatch.rounds.runner import run_rounds

EXACT = ("highspy", "cpsat", "pyomo-highs", "pyomo-textbook")


def _scenario(folder: Path, rows: list[str], *, extra: str = "") -> Path:
    return case33bw_scenario(folder, rows, yaml_extra=extra)


def _tie_heavy_rows(seed: int, n: int = 30) -> list[str]:
    """Few prices, two buses per side, mixed divisibility: many equal-welfare optima."""
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        rows.append(
            f"s{k},ps{k},sell,{rng.choice([3, 5])},{rng.choice([0, 1])},"
            f"{rng.choice([1.0, 1.5, 2.0, 3.0])},{rng.choice([0.05, 0.08])},"
            f"{str(rng.random() < 0.7).lower()}"
        )
        rows.append(
            f"b{k},pb{k},buy,{rng.choice([7, 9])},{rng.choice([0, 1])},"
            f"{rng.choice([0.5, 1.0, 2.0])},{rng.choice([0.2, 0.3])},"
            f"{str(rng.random() < 0.5).lower()}"
        )
    return rows


def _price_time() -> dict[str, Any]:
    return {"mip_gap": 0.0, "tie_break": TieBreak.PRICE_TIME}


def _trade_keys(out: Path) -> list[tuple[str, str, float]]:
    trades = read_trades(out / "trades.csv")
    return [(t.buy_order_id, t.sell_order_id, t.quantity_kwh) for t in trades]


@pytest.mark.parametrize("seed", [1, 3])
def test_every_exact_formulation_gives_the_same_trades_with_price_time(
    tmp_path: Path, seed: int
) -> None:
    scenario = _scenario(tmp_path / "s", _tie_heavy_rows(seed))
    plain: dict[str, bytes] = {}
    tied: dict[str, bytes] = {}
    for name in EXACT:
        out = tmp_path / f"plain-{name}"
        clear_scenario(scenario, out, RunSettings(formulation=name, mip_gap=0.0))
        plain[name] = (out / "trades.csv").read_bytes()
        plain_welfare = check_result_folder(scenario, out)["welfare_eur"]

        out = tmp_path / f"tied-{name}"
        clear_scenario(scenario, out, RunSettings(formulation=name, **_price_time()))
        tied[name] = (out / "trades.csv").read_bytes()
        summary = check_result_folder(scenario, out)
        # The second stage decides among optima only: same welfare, proven optimal.
        assert summary["welfare_eur"] == pytest.approx(plain_welfare, abs=1e-9)
        assert summary["status"] == "optimal"
        assert summary["options"]["tie_break"] == "price-time"
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["options"]["tie_break"] == "price-time"
    # Without the rule the formulations disagree on this book; with it, byte for byte not.
    assert len(set(plain.values())) > 1
    assert len(set(tied.values())) == 1


def test_of_equal_sellers_the_earlier_one_sells_first_in_every_formulation(
    tmp_path: Path,
) -> None:
    # Two sellers at one price and bus, 3 kWh of demand: the first in the file (the
    # time priority of a plain book) sells all it has, the second the rest.
    scenario = _scenario(
        tmp_path / "s",
        [
            "s-first,pa,sell,5,2,2.0,0.05,true",
            "b1,pc,buy,7,2,2.0,0.30,true",
            "s-second,pb,sell,5,2,2.0,0.05,true",
            "b2,pz,buy,7,2,1.0,0.30,true",
        ],
    )
    for name in EXACT:
        out = tmp_path / name
        clear_scenario(scenario, out, RunSettings(formulation=name, **_price_time()))
        check_result_folder(scenario, out)
        sold: dict[str, float] = {}
        for _, sell, kwh in _trade_keys(out):
            sold[sell] = sold.get(sell, 0.0) + kwh
        assert sold == {"s-first": 2.0, "s-second": 1.0}, name


def test_among_equal_welfare_the_larger_volume_is_traded(tmp_path: Path) -> None:
    # A pair at zero surplus (0.10 against 0.10) changes no welfare; the rule trades it.
    scenario = _scenario(
        tmp_path / "s",
        ["s,ps,sell,5,2,2.0,0.10,true", "b,pb,buy,7,2,1.5,0.10,true"],
    )
    for name in EXACT:
        out = tmp_path / name
        clear_scenario(scenario, out, RunSettings(formulation=name, **_price_time()))
        assert _trade_keys(out) == [("b", "s", 1.5)], name


def test_heuristics_keep_their_own_order_under_the_option(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path / "s", _tie_heavy_rows(2))
    plain, tied = tmp_path / "plain", tmp_path / "tied"
    clear_scenario(scenario, plain, RunSettings(formulation="greedy"))
    clear_scenario(scenario, tied, RunSettings(formulation="greedy", **_price_time()))
    assert (plain / "trades.csv").read_bytes() == (tied / "trades.csv").read_bytes()


def test_secure_clearing_with_price_time_agrees_to_the_solvers_tolerance(
    tmp_path: Path, case33bw_distances: dict[tuple[int, int], float]
) -> None:
    # Slots re-solved with grid rows have fractional optima, computed to each solver's
    # tolerance: formulations agree in welfare, not byte for byte (README, Determinism).
    scenario = REPO / "scenarios" / "case33bw-evening"
    summaries = {}
    for name in ("highspy", "pyomo-highs"):
        out = tmp_path / name
        clear_scenario(scenario, out, RunSettings(formulation=name, **_price_time()))
        summaries[name] = check_result_folder(scenario, out, case33bw_distances)
        assert summaries[name]["secure"] is True
    first, second = summaries["highspy"], summaries["pyomo-highs"]
    assert first["unconstrained_welfare_eur"] == second["unconstrained_welfare_eur"]
    assert first["welfare_eur"] == pytest.approx(second["welfare_eur"], rel=1e-5)


def test_rounds_break_ties_by_submission_time(tmp_path: Path) -> None:
    # The seller submitted first wins, though it comes second in the file.
    scenario = case33bw_scenario(
        tmp_path / "s",
        [
            "s-later,pa,sell,5,4,1.0,0.05,false,20",
            "s-earlier,pb,sell,5,4,1.0,0.05,false,10",
            "b,pc,buy,7,4,1.0,0.30,false,25",
        ],
        header=ROUNDS_HEADER,
        yaml_extra="rounds:\n  interval_min: 30\n  first_round_min: 30\n"
        "solver:\n  tie_break: price-time\n  mip_gap: 0.0\n",
    )
    for name in ("highspy", "cpsat"):
        out = tmp_path / name
        run_rounds(scenario, out, RunSettings(formulation=name))
        with (out / "trades.csv").open(newline="") as handle:
            trades = [(r["round_no"], r["sell_order_id"]) for r in csv.DictReader(handle)]
        assert trades == [("1", "s-earlier")], name


def test_the_option_is_refused_with_the_file_and_field_when_unknown(tmp_path: Path) -> None:
    from gridmatch.errors import InputError

    scenario = _scenario(
        tmp_path / "s", ["s,ps,sell,5,2,2.0,0.10,true"], extra="solver:\n  tie_break: coin\n"
    )
    with pytest.raises(InputError, match=r"scenario\.yaml, field 'solver\.tie_break'"):
        clear_scenario(scenario, tmp_path / "out", RunSettings())
    assert not (tmp_path / "out").exists()
