"""Every documented exit code, from the command line, with one clear line and no traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import case33bw_scenario
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.errors import ExitCode, Terminated
from gridmatch.matching.backends.greedy import GreedyBackend
from gridmatch.matching.backends.highspy_direct import HighspyBackend
from gridmatch.matching.solution import TerminationCondition

ROWS = ["s1,ps,sell,5,0,2.0,0.10,true", "b1,pb,buy,12,0,1.0,0.30,false"]


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    return case33bw_scenario(tmp_path / "scenario", ROWS)


def _clear(scenario: Path, out: Path, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["clear", str(scenario), "--out", str(out), *options])
    return result.exit_code, result.stderr


def _one_clear_line(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_0_success(scenario: Path, tmp_path: Path) -> None:
    code, stderr = _clear(scenario, tmp_path / "out")
    assert code == ExitCode.OK == 0, stderr
    assert (tmp_path / "out" / "trades.csv").is_file()


def test_2_invalid_input_names_the_file_and_writes_nothing(scenario: Path, tmp_path: Path) -> None:
    (scenario / "orders.csv").write_text((scenario / "orders.csv").read_text() + "b2,x,buy\n")
    code, stderr = _clear(scenario, tmp_path / "out")
    assert code == ExitCode.INPUT == 2
    assert "orders.csv, row 4" in stderr
    _one_clear_line(stderr)
    assert not (tmp_path / "out").exists()


def test_2_invalid_usage(scenario: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["clear", str(scenario), "--out", str(tmp_path / "o"), "--formulation", "nonesuch"]
    )
    assert result.exit_code == ExitCode.INPUT
    assert "unknown formulation 'nonesuch'; available:" in result.stderr
    _one_clear_line(result.stderr)


def test_3_solver_failure(scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = HighspyBackend.solve_slot

    def failing(self, problem, options, time_limit_s):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        return replace(
            real(self, problem, options, time_limit_s), termination=TerminationCondition.ERROR
        )

    monkeypatch.setattr(HighspyBackend, "solve_slot", failing)
    code, stderr = _clear(scenario, tmp_path / "out")
    assert code == ExitCode.SOLVER == 3
    assert stderr.startswith("solver failure: slot 0: highspy reported an error")
    _one_clear_line(stderr)
    assert not (tmp_path / "out").exists()


def test_4_chain_unreachable_node(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _clear(scenario, out)[0] == 0
    result = CliRunner().invoke(app, ["settle", str(out), "--rpc-url", "http://127.0.0.1:9"])
    assert result.exit_code == ExitCode.CHAIN == 4, result.stderr
    assert "chain: no EVM node answers at http://127.0.0.1:9" in result.stderr
    _one_clear_line(result.stderr)


def test_5_unreachable_cluster(
    scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "1s")
    import dask

    dask.config.refresh()
    arguments = ["batch", str(scenario), "-o", str(tmp_path / "batch"), "--formulation", "greedy"]
    arguments += ["--executor", "dask", "--scheduler-address", "tcp://127.0.0.1:9"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == ExitCode.CLUSTER == 5, result.stderr
    # After the progress bar's last frame, one line says why.
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cluster: Dask: cannot start or reach tcp://127.0.0.1:9")


@pytest.mark.parametrize(
    ("raised", "code", "start"),
    [
        (TypeError("an argument of the wrong type"), ExitCode.INTERNAL, "internal error: "),
        (SystemExit(0), ExitCode.INTERNAL, "internal error: SystemExit"),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED, "interrupted: "),
        (Terminated(), ExitCode.TERMINATED, "terminated: "),
    ],
)
def test_6_and_130_unexpected_exceptions(
    scenario: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    raised: BaseException,
    code: int,
    start: str,
) -> None:
    def broken(*args: object) -> None:
        raise raised

    monkeypatch.setattr(GreedyBackend, "allocate", broken)
    exit_code, stderr = _clear(scenario, tmp_path / "out", "--formulation", "greedy")
    assert exit_code == code
    assert stderr.startswith(start), stderr
    _one_clear_line(stderr)
    # A library's SystemExit(0) must never pass for success.
    assert exit_code != 0
    assert not (tmp_path / "out").exists()


def test_debug_adds_the_traceback(
    scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise TypeError("an argument of the wrong type")

    monkeypatch.setattr(GreedyBackend, "allocate", broken)
    result = CliRunner().invoke(
        app,
        [
            "--debug",
            "clear",
            str(scenario),
            "--out",
            str(tmp_path / "o"),
            "--formulation",
            "greedy",
        ],
    )
    assert result.exit_code == ExitCode.INTERNAL
    assert "Traceback" in result.stderr and "TypeError" in result.stderr


def test_control_characters_of_user_text_never_reach_the_terminal(tmp_path: Path) -> None:
    folder = tmp_path / "evil\x1b[31mred"
    result = CliRunner().invoke(app, ["clear", str(folder), "--out", str(tmp_path / "o")])
    assert result.exit_code == ExitCode.INPUT
    assert "\x1b" not in result.stderr
    assert "\\x1b[31mred" in result.stderr
