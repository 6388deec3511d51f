"""`gridmatch compare` as plain functions: summary by formulation and size, terminal table, PNGs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from PIL import Image
from rich.console import Console

from gridmatch.batch.compare import GAP_PLOT, TIME_PLOT, Comparison, compare_results
from gridmatch.batch.orchestrate import run_batch
from gridmatch.batch.plan import RunCell
from gridmatch.batch.table import error_row, rows_to_frame, summary_row, write_table
from gridmatch.errors import InputError


def _summary(orders: int, welfare_eur: float, bound_eur: float, solve_s: float) -> dict[str, Any]:
    return {
        "scenario": "x",
        "status": "optimal",
        "n_orders": orders,
        "n_trades": 1,
        "welfare_eur": welfare_eur,
        "bound_eur": bound_eur,
        "gap": (bound_eur - welfare_eur) / bound_eur,
        "runtime_s": solve_s,
        "secure": True,
        "slots": [{}],
        "options": {"threads": 1},
    }


def _write_table(root: Path) -> Path:
    """Two formulations on three scenarios of sizes 10, 10 and 100, and one failed run."""
    cells = {
        (s, f): RunCell(s, root / s, f, root / s / f, root)
        for s in ("s1", "s2", "s3")
        for f in ("exact", "quick")
    }
    sizes = {"s1": 10, "s2": 10, "s3": 100}
    rows = []
    for scenario, orders in sizes.items():
        rows.append(
            summary_row(cells[scenario, "exact"], _summary(orders, 10.0, 10.0, 1.0), skipped=False)
        )
    rows.append(summary_row(cells["s1", "quick"], _summary(10, 9.0, 10.0, 0.01), skipped=False))
    rows.append(summary_row(cells["s2", "quick"], _summary(10, 7.0, 10.0, 0.03), skipped=True))
    rows.append(error_row(cells["s3", "quick"], "InputError", "s3/orders.csv: broken"))
    parquet, _ = write_table(rows_to_frame(rows), root)
    return parquet


def _render(comparison: Comparison) -> str:
    console = Console(record=True, width=200)
    console.print(comparison.table)
    return console.export_text()


def _assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 100 and image.height > 100


def test_summary_by_formulation_and_size(tmp_path: Path) -> None:
    comparison = compare_results(_write_table(tmp_path / "out"))
    rows = {(r["formulation"], r["orders"]): r for r in comparison.summary.to_dict("records")}
    exact_10 = rows["exact", 10]
    assert (exact_10["runs"], exact_10["failed"]) == (2, 0)
    assert exact_10["median_solve_s"] == 1.0 and exact_10["median_gap"] == 0.0
    quick_10 = rows["quick", 10]
    assert quick_10["runs"] == 2
    assert math.isclose(quick_10["median_solve_s"], 0.02)
    # Gaps 10% and 30% to the bound; shortfalls against exact's 10 EUR the same.
    assert math.isclose(quick_10["median_gap"], 0.2)
    assert math.isclose(quick_10["median_shortfall"], 0.2)
    assert (quick_10["secure_runs"], quick_10["checked_runs"]) == (2, 2)
    failed = [r for (f, size), r in rows.items() if f == "quick" and r["failed"]]
    assert len(failed) == 1 and failed[0]["runs"] == 0


def test_terminal_table_lists_every_formulation_and_the_plots_are_pngs(tmp_path: Path) -> None:
    parquet = _write_table(tmp_path / "out")
    comparison = compare_results(parquet.with_suffix(".csv"), plots_dir=tmp_path / "plots")
    text = _render(comparison)
    for formulation in ("exact", "quick"):
        assert formulation in text
    assert "20.0000%" in text  # quick's median gap at size 10
    assert comparison.plots == (tmp_path / "plots" / TIME_PLOT, tmp_path / "plots" / GAP_PLOT)
    for path in comparison.plots:
        _assert_png(path)


def test_compare_of_a_real_batch(tmp_path: Path) -> None:
    golden = REPO / "tests" / "golden"
    scenarios = [golden / "knapsack-beats-greedy", golden / "all-or-none-seller"]
    run_batch(scenarios, ["highspy", "greedy"], tmp_path / "out")
    comparison = compare_results(tmp_path / "out")  # the batch folder is enough
    assert set(comparison.summary["formulation"]) == {"highspy", "greedy"}
    by_formulation = comparison.summary.groupby("formulation")["median_shortfall"].max()
    assert by_formulation["highspy"] == 0.0
    # Greedy packs 1.20 EUR where the knapsack finds 1.75, and sells nothing of the
    # all-or-none seller: shortfalls 31% and 100%, both on 4 orders.
    assert math.isclose(by_formulation["greedy"], (1 - 1.2 / 1.75 + 1.0) / 2)
    text = _render(comparison)
    assert "highspy" in text and "greedy" in text
    for name in (TIME_PLOT, GAP_PLOT):
        _assert_png(tmp_path / "out" / name)


def test_a_missing_table_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        compare_results(tmp_path / "nothing.parquet")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a gridmatch batch table"):
        compare_results(tmp_path / "other.csv")
