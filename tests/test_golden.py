"""Hand-computed cases, stored as scenario folders with their expected trades."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from feasibility import check_result_folder, read_trades

from gridmatch.matching.backends.base import BackendKind
from gridmatch.matching.backends.registry import BACKENDS, executable_formulations
from gridmatch.pipeline import RunSettings, clear_scenario

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
EXACT = [f for f in executable_formulations() if BACKENDS[f].kind is BackendKind.EXACT]


def _expected(case: str) -> dict[str, object]:
    return dict(json.loads((GOLDEN / case / "expected.json").read_text()))


@pytest.mark.parametrize("formulation", EXACT)
@pytest.mark.parametrize("case", CASES)
def test_exact_formulations_find_the_hand_computed_optimum(
    case: str, formulation: str, tmp_path: Path, case33bw_distances: dict[tuple[int, int], float]
) -> None:
    out = tmp_path / "out"
    clear_scenario(GOLDEN / case, out, RunSettings(formulation=formulation, time_limit_s=20))
    summary = check_result_folder(GOLDEN / case, out, case33bw_distances)
    expected = _expected(case)
    assert summary["status"] == "optimal"
    assert math.isclose(summary["welfare_eur"], expected["welfare_eur"], abs_tol=1e-9)
    got = sorted(
        (t.buy_order_id, t.sell_order_id, round(t.quantity_kwh, 9), round(t.price_eur_per_kwh, 9))
        for t in read_trades(out / "trades.csv")
    )
    want = sorted(
        (t["buy"], t["sell"], float(t["quantity_kwh"]), float(t["price_eur_per_kwh"]))
        for t in expected["trades"]  # type: ignore[attr-defined]
    )
    assert got == want


@pytest.mark.parametrize("case", CASES)
def test_greedy_gives_the_hand_computed_merit_order_result(
    case: str, tmp_path: Path, case33bw_distances: dict[tuple[int, int], float]
) -> None:
    out = tmp_path / "out"
    clear_scenario(GOLDEN / case, out, RunSettings(formulation="greedy"))
    summary = check_result_folder(GOLDEN / case, out, case33bw_distances)
    assert summary["status"] == "heuristic"
    assert math.isclose(summary["welfare_eur"], _expected(case)["greedy_welfare_eur"], abs_tol=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_seller_dp_is_feasible_and_never_beats_the_optimum(
    case: str, tmp_path: Path, case33bw_distances: dict[tuple[int, int], float]
) -> None:
    out = tmp_path / "out"
    clear_scenario(GOLDEN / case, out, RunSettings(formulation="seller-dp"))
    summary = check_result_folder(GOLDEN / case, out, case33bw_distances)
    assert summary["status"] == "heuristic"
    assert summary["welfare_eur"] <= _expected(case)["welfare_eur"] + 1e-9  # type: ignore[operator]
