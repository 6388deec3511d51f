"""`gridmatch batch` as plain functions: run matrix, table, idempotent reruns, executors."""

from __future__ import annotations

import csv
import itertools
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO

from gridmatch.batch.executors import ExecutorKind
from gridmatch.batch.orchestrate import BatchResult, run_batch
from gridmatch.batch.plan import PlanError, plan_runs
from gridmatch.batch.runner import finished_summary
from gridmatch.batch.table import TABLE_CSV, TIMING_COLUMNS, read_table
from gridmatch.matching.backends.registry import UnknownFormulationError
from gridmatch.pipeline import RunSettings

# A secure AC case (power flows, security rounds) and a tiny market-only one.
SCENARIOS = (REPO / "scenarios" / "case33bw-evening", REPO / "tests/golden/knapsack-beats-greedy")
FORMULATIONS = ("highspy", "greedy")
BAD = "bad-orders"


@pytest.fixture(scope="module")
def scenario_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    # A folder that looks like a scenario but has a negative quantity on spreadsheet row 3.
    bad = tmp_path_factory.mktemp("inputs") / BAD
    shutil.copytree(SCENARIOS[1], bad)
    orders = bad / "orders.csv"
    orders.write_text(orders.read_text().replace("B1,bob,buy,2,0,6,", "B1,bob,buy,2,0,-6,"))
    return [*SCENARIOS, bad]


@pytest.fixture(scope="module")
def serial(scenario_dirs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> BatchResult:
    out = tmp_path_factory.mktemp("serial") / "out"
    return run_batch(scenario_dirs, FORMULATIONS, out)


def _values(table: pd.DataFrame) -> pd.DataFrame:
    """What must not depend on how or when the runs executed."""
    return table.drop(columns=[*TIMING_COLUMNS, "skipped"])


def _ok(result: BatchResult) -> pd.DataFrame:
    return result.table[result.table["status"] != "error"]


def test_table_has_one_row_per_scenario_and_formulation(serial: BatchResult) -> None:
    table = serial.table
    names = [d.name for d in SCENARIOS] + [BAD]
    assert list(zip(table["scenario"], table["formulation"], strict=True)) == sorted(
        itertools.product(names, FORMULATIONS)
    )
    assert set(table.loc[table["scenario"] != BAD, "status"]) <= {
        "optimal",
        "feasible",
        "heuristic",
    }
    assert not table["skipped"].any()
    assert (table["run_dir"] == table["scenario"] + "/" + table["formulation"]).all()
    # Both files hold the same table, the CSV at full precision.
    pd.testing.assert_frame_equal(read_table(serial.parquet_path), table, check_exact=True)
    pd.testing.assert_frame_equal(read_table(serial.csv_path), table, check_exact=True)
    secure = table[table["scenario"] == "case33bw-evening"]
    assert secure["secure"].all()
    assert (secure["ac_power_flows"] > 0).all()
    assert (table.loc[table["scenario"] == "knapsack-beats-greedy", "orders"] == 4).all()


def test_welfare_in_the_table_is_the_sum_over_the_run_folders_trades(serial: BatchResult) -> None:
    root = serial.parquet_path.parent
    for row in _ok(serial).itertuples():
        with (root / str(row.run_dir) / "trades.csv").open(newline="") as handle:
            trades = list(csv.DictReader(handle))
        assert len(trades) == row.trades
        total_eur = math.fsum(float(t["welfare_eur"]) for t in trades)
        assert math.isclose(total_eur, float(row.welfare_eur), rel_tol=1e-12, abs_tol=1e-12)


def test_a_bad_scenario_gives_error_rows_and_the_others_succeed(serial: BatchResult) -> None:
    table = serial.table
    bad = table[table["scenario"] == BAD]
    assert list(bad["status"]) == ["error", "error"]
    assert set(bad["error_type"]) == {"InputError"}
    for message in bad["error"]:
        assert "orders.csv, row 3, field 'quantity_kwh'" in message
    assert serial.n_errors == 2 and serial.only_input_errors
    assert (_ok(serial)["scenario"] != BAD).all() and len(_ok(serial)) == 4


def test_a_second_batch_skips_every_run_and_writes_the_same_table(
    serial: BatchResult, scenario_dirs: list[Path]
) -> None:
    root = serial.parquet_path.parent
    trades = root / "case33bw-evening" / "highspy" / "trades.csv"
    written_ns = trades.stat().st_mtime_ns
    again = run_batch(scenario_dirs, FORMULATIONS, root)
    ok = again.table["status"] != "error"
    assert again.table.loc[ok, "skipped"].all()
    assert not again.table.loc[~ok, "skipped"].any()  # failed runs are always tried again
    pd.testing.assert_frame_equal(
        again.table.drop(columns="skipped"), serial.table.drop(columns="skipped"), check_exact=True
    )
    assert trades.stat().st_mtime_ns == written_ns


def test_a_run_folder_without_manifest_is_redone_alone(
    serial: BatchResult, scenario_dirs: list[Path], tmp_path: Path
) -> None:
    root = tmp_path / "out"
    shutil.copytree(serial.parquet_path.parent, root)
    manifest = root / "knapsack-beats-greedy" / "highspy" / "manifest.json"
    manifest.unlink()  # as if the run had crashed before its folder was complete
    again = run_batch(scenario_dirs, FORMULATIONS, root)
    redone = again.table[~again.table["skipped"] & (again.table["status"] != "error")]
    assert list(zip(redone["scenario"], redone["formulation"], strict=True)) == [
        ("knapsack-beats-greedy", "highspy")
    ]
    assert manifest.is_file()
    pd.testing.assert_frame_equal(_values(again.table), _values(serial.table), check_exact=True)


def test_a_run_is_redone_when_an_option_or_an_input_changes(
    serial: BatchResult, tmp_path: Path
) -> None:
    root = serial.parquet_path.parent
    (cell,) = [c for c in plan_runs([SCENARIOS[1]], ["highspy"], root)]
    same = RunSettings(formulation="highspy")
    assert finished_summary(cell, same) is not None
    assert finished_summary(cell, RunSettings(formulation="highspy", time_limit_s=5.0)) is None
    assert finished_summary(cell, RunSettings(formulation="highspy", seed=1)) is None
    # The same run folder, but its scenario's orders changed by one character.
    moved = tmp_path / SCENARIOS[1].name
    shutil.copytree(SCENARIOS[1], moved)
    (moved_cell,) = plan_runs([moved], ["highspy"], root)
    assert moved_cell.run_dir == cell.run_dir
    assert finished_summary(moved_cell, same) is not None  # moving a scenario is no change
    orders = moved / "orders.csv"
    orders.write_text(orders.read_text().replace("0.30", "0.31"))
    assert finished_summary(moved_cell, same) is None


def test_two_jobs_give_the_same_trades_and_table_as_serial(
    serial: BatchResult, scenario_dirs: list[Path], tmp_path: Path
) -> None:
    parallel = run_batch(scenario_dirs, FORMULATIONS, tmp_path / "out", jobs=2)
    assert parallel.threads == 1
    assert (_ok(parallel)["threads"] == 1).all()
    pd.testing.assert_frame_equal(_values(parallel.table), _values(serial.table), check_exact=True)
    for run_dir in _ok(serial)["run_dir"]:
        for name in ("trades.csv", "orders.csv"):
            expected = (serial.parquet_path.parent / run_dir / name).read_bytes()
            assert (parallel.parquet_path.parent / run_dir / name).read_bytes() == expected


def test_a_dask_local_cluster_gives_the_same_table_as_serial(
    serial: BatchResult, scenario_dirs: list[Path], tmp_path: Path
) -> None:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        on_dask = run_batch(
            scenario_dirs,
            FORMULATIONS,
            tmp_path / "out",
            executor=ExecutorKind.DASK,
            scheduler_address=cluster.scheduler_address,
        )
    assert (_ok(on_dask)["threads"] == 1).all()
    pd.testing.assert_frame_equal(_values(on_dask.table), _values(serial.table), check_exact=True)
    csv_text = (tmp_path / "out" / TABLE_CSV).read_text()
    assert csv_text.count("\n") == 1 + len(serial.table)


def test_an_unknown_formulation_fails_before_any_run(tmp_path: Path) -> None:
    with pytest.raises(UnknownFormulationError, match=r"'simplex-magic'.*available: cpsat"):
        run_batch([SCENARIOS[1]], ["highspy", "simplex-magic"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_two_scenario_folders_of_the_same_name_are_refused(tmp_path: Path) -> None:
    twin = tmp_path / SCENARIOS[1].name
    shutil.copytree(SCENARIOS[1], twin)
    with pytest.raises(PlanError, match="share the name"):
        plan_runs([SCENARIOS[1], twin], ["highspy"], tmp_path / "out")
    with pytest.raises(PlanError, match="given twice"):
        plan_runs([SCENARIOS[1]], ["greedy", "greedy"], tmp_path / "out")


def test_a_later_batch_in_the_same_folder_adds_to_the_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    scenario = SCENARIOS[1]
    first = run_batch([scenario], ["highspy", "greedy"], out)
    # Another formulation later: the table grows, the earlier rows are kept as they were.
    later = run_batch([scenario], ["seller-dp"], out)
    assert later.n_kept == 2 and len(later.table) == 1
    table = read_table(out / "results.parquet")
    assert list(table["formulation"]) == ["greedy", "highspy", "seller-dp"]
    earlier = table[table["formulation"] != "seller-dp"].reset_index(drop=True)
    pd.testing.assert_frame_equal(earlier, first.table, check_exact=True)
    assert read_table(out / TABLE_CSV).equals(table)
    # A key run again replaces its row; a row whose run folder is gone is dropped.
    shutil.rmtree(out / scenario.name / "greedy")
    again = run_batch([scenario], ["highspy"], out)
    assert again.n_kept == 1 and bool(again.table["skipped"].iloc[0])
    table = read_table(out / "results.parquet")
    assert list(table["formulation"]) == ["highspy", "seller-dp"]
    assert bool(table["skipped"].iloc[0])


def test_a_table_from_before_the_tie_break_column_still_collects(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch([SCENARIOS[1]], ["greedy"], out)
    older = pd.read_parquet(out / "results.parquet").drop(columns="tie_break")
    older.to_parquet(out / "results.parquet", index=False)
    run_batch([SCENARIOS[1]], ["highspy"], out)
    table = read_table(out / "results.parquet")
    assert list(table["formulation"]) == ["greedy", "highspy"]
    assert table["tie_break"].isna().tolist() == [True, False]


def test_one_batch_at_a_time_writes_a_folder_and_a_bad_table_stops_it_early(
    tmp_path: Path,
) -> None:
    from contextlib import closing

    from gridmatch.batch.orchestrate import BATCH_LOCK
    from gridmatch.errors import InputError
    from gridmatch.results_io.atomic import OutputFolderError
    from gridmatch.results_io.locks import acquire_writer_lock

    out = tmp_path / "out"
    with (
        closing(acquire_writer_lock(out / BATCH_LOCK, "this batch folder")),
        pytest.raises(OutputFolderError, match="another gridmatch process"),
    ):
        run_batch([SCENARIOS[1]], ["greedy"], out)
    assert not (out / SCENARIOS[1].name).exists()

    (out / "results.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match=r"results\.parquet: cannot be read"):
        run_batch([SCENARIOS[1]], ["greedy"], out)
    assert not (out / SCENARIOS[1].name).exists()
    assert (out / "results.parquet").read_bytes() == b"not parquet"


def test_batch_and_compare_commands(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gridmatch.cli import app

    out = tmp_path / "out"
    golden = str(SCENARIOS[1])
    args = ["batch", golden, "-o", str(out), "--formulation", "highspy", "--formulation", "greedy"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.stderr
    assert "2 runs: 2 cleared" in first.stderr
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0
    assert "2 already done" in again.stderr
    bad = CliRunner().invoke(app, ["batch", str(tmp_path / "nowhere"), "-o", str(tmp_path / "b")])
    assert bad.exit_code == 2
    compared = CliRunner().invoke(app, ["compare", str(out / "results.parquet")])
    assert compared.exit_code == 0, compared.stderr
    assert "greedy" in compared.stderr
    assert (out / "time_by_size.png").stat().st_size > 0
