"""Whole runs of `gridmatch clear`: result files, reproducibility, atomic output."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO
from feasibility import check_result_folder, line_distances_km
from independent_grid import insecure_slots
from typer.testing import CliRunner

import gridmatch.pipeline
import gridmatch.results_io.folder
from gridmatch.cli import app

BUNDLED = REPO / "scenarios"


def _clear(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["clear", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("scenario", ["cigre-lv-day", "case33bw-evening"])
def test_bundled_scenarios_clear_to_checked_optimal_results(scenario: str, tmp_path: Path) -> None:
    import pandapower.networks as pn

    net = {"cigre-lv-day": pn.create_cigre_network_lv, "case33bw-evening": pn.case33bw}[scenario]()
    out = tmp_path / "out"
    code, _, stderr = _clear(str(BUNDLED / scenario), "--out", str(out))
    assert code == 0, stderr
    summary = check_result_folder(BUNDLED / scenario, out, line_distances_km(net))
    assert summary["n_trades"] > 0
    # Secure, by our own power flows.
    assert summary["secure"] is True
    assert not insecure_slots(net, BUNDLED / scenario, out)
    # Slots the grid did not constrain are proven optimal; the constrained ones claim
    # feasibility only (their solver bound is for the linearised model).
    constrained = set(summary["unconstrained_insecure_slots"])  # type: ignore[arg-type]
    assert constrained
    assert summary["status"] == "feasible"
    for slot in summary["slots"]:  # type: ignore[attr-defined]
        if slot["slot"] not in constrained:
            assert slot["termination"] == "converged"
            assert slot["welfare_eur"] >= (1 - 1e-4) * slot["bound_eur"] - 1e-9
    manifest = json.loads((out / "manifest.json").read_text())
    for name in ("scenario.yaml", "orders.csv"):
        digest = hashlib.sha256((BUNDLED / scenario / name).read_bytes()).hexdigest()
        assert manifest["inputs"][name]["sha256"] == digest
    assert manifest["options"] == {
        "formulation": summary["formulation"],
        **summary["options"],  # type: ignore[dict-item]
    }
    assert manifest["versions"]["highspy"]


def test_json_flag_prints_only_the_summary_on_stdout(tmp_path: Path) -> None:
    code, stdout, _ = _clear(
        str(BUNDLED / "case33bw-evening"), "--out", str(tmp_path / "o"), "--json"
    )
    assert code == 0
    assert json.loads(stdout) == json.loads((tmp_path / "o" / "summary.json").read_text())


def test_reruns_write_byte_identical_trades(tmp_path: Path) -> None:
    runs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        assert _clear(str(BUNDLED / "cigre-lv-day"), "--out", str(out))[0] == 0
        runs.append(((out / "trades.csv").read_bytes(), (out / "orders.csv").read_bytes()))
    assert runs[0] == runs[1]


def test_slots_solved_in_parallel_give_the_same_trades_as_serial(tmp_path: Path) -> None:
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert _clear(str(BUNDLED / "cigre-lv-day"), "--out", str(serial), "--threads", "1")[0] == 0
    assert _clear(str(BUNDLED / "cigre-lv-day"), "--out", str(parallel), "--threads", "2")[0] == 0
    assert (serial / "trades.csv").read_bytes() == (parallel / "trades.csv").read_bytes()


def test_command_line_overrides_scenario_solver_settings(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--formulation", "greedy", "--time-limit", "7", "--mip-gap", "0.01", "--seed", "3"]
    args += ["--tie-break", "price-time"]
    assert _clear(str(BUNDLED / "cigre-lv-day"), "--out", str(out), *args)[0] == 0
    options = json.loads((out / "manifest.json").read_text())["options"]
    assert options == {
        "formulation": "greedy",
        "time_limit_s": 7.0,
        "mip_gap": 0.01,
        "threads": 1,
        "seed": 3,
        "tie_break": "price-time",
    }


def test_failure_while_writing_leaves_the_previous_result_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert _clear(str(BUNDLED / "case33bw-evening"), "--out", str(out))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_writer(*args: object) -> None:
        raise OSError("disk full")

    # Fails after trades.csv and orders.csv are in the staging folder.
    monkeypatch.setattr(gridmatch.results_io.folder, "json_text", broken_writer)
    with pytest.raises(OSError, match="disk full"):
        gridmatch.pipeline.clear_scenario(
            BUNDLED / "cigre-lv-day", out, gridmatch.pipeline.RunSettings()
        )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_scenario_copied_elsewhere_hashes_the_same(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(BUNDLED / "case33bw-evening", copy)
    assert _clear(str(copy), "--out", str(tmp_path / "a"))[0] == 0
    assert _clear(str(BUNDLED / "case33bw-evening"), "--out", str(tmp_path / "b"))[0] == 0
    inputs = [json.loads((tmp_path / d / "manifest.json").read_text())["inputs"] for d in "ab"]
    assert inputs[0] == inputs[1]
    assert (tmp_path / "a" / "trades.csv").read_bytes() == (
        tmp_path / "b" / "trades.csv"
    ).read_bytes()


def test_formulations_command_lists_every_backend() -> None:
    result = CliRunner().invoke(app, ["formulations"])
    assert result.exit_code == 0
    for name in ("highspy", "pyomo-highs", "cpsat", "greedy", "lp-relaxation", "pyomo-textbook"):
        assert name in result.stdout


def test_schema_command_exports_json_schema_of_scenario_yaml() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert set(schema["required"]) == {"name", "network"}
    assert schema["additionalProperties"] is False


def test_two_threads_on_a_single_slot_still_solve_it(tmp_path: Path) -> None:
    # One slot leaves nothing to parallelise; the solve must not fail or fall back.
    from gridmatch.matching.backends.registry import get_backend
    from gridmatch.matching.clearing import clear_orders
    from gridmatch.matching.market_rules import MarketRules
    from gridmatch.matching.orders import OrderBook
    from gridmatch.matching.solution import SolveOptions
    from gridmatch.scenario_io.synthetic import community_day

    day = community_day(12, [1, 2, 3], n_slots=2, seed=5)
    noon = OrderBook(tuple(o for o in day.orders if o.slot == 1))
    rules = MarketRules(grid_fee_eur_per_kwh=0.01)
    results = [
        clear_orders(noon, rules, get_backend("highspy"), SolveOptions(threads=n)) for n in (1, 2)
    ]
    assert results[0].status.value == "optimal"
    assert results[1].status.value == "optimal"
    assert results[0].trades == results[1].trades


@pytest.mark.parametrize("intruder", ["manifest.json", "thesis.tex"])
def test_a_folder_with_files_gridmatch_did_not_write_is_never_replaced(
    tmp_path: Path, intruder: str
) -> None:
    # A user's folder that merely happens to hold a manifest.json is not a result.
    out = tmp_path / "project"
    out.mkdir()
    (out / intruder).write_text("mine")
    code, _, stderr = _clear(str(BUNDLED / "case33bw-evening"), "--out", str(out))
    assert code == 2
    assert "refusing to overwrite" in stderr
    assert [p.name for p in out.iterdir()] == [intruder]


def test_a_file_added_to_a_result_folder_protects_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _clear(str(BUNDLED / "case33bw-evening"), "--out", str(out))[0] == 0
    (out / "notes.txt").write_text("my analysis")
    code, _, stderr = _clear(str(BUNDLED / "case33bw-evening"), "--out", str(out))
    assert code == 2
    assert "notes.txt" in stderr
    assert (out / "notes.txt").read_text() == "my analysis"
