"""SIGTERM unwinds a command like Ctrl-C: the embedded anvil stops, the command can rerun.

Python's default SIGTERM ends the process on the spot; before the handler, `gridmatch
settle` killed so left its anvil running (an orphan holding a port) and exit -15.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.errors import ExitCode

REPO = Path(__file__).resolve().parents[1]
GRIDMATCH = Path(sys.executable).parent / "gridmatch"


def _anvil_children(process: psutil.Process) -> list[psutil.Process]:
    return [c for c in process.children(recursive=True) if c.name() == "anvil"]


def test_sigterm_during_settle_stops_anvil_and_the_round_settles_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cleared = CliRunner().invoke(
        app, ["clear", str(REPO / "scenarios/cigre-lv-day"), "-o", str(out)]
    )
    assert cleared.exit_code == 0, cleared.stderr
    before = sorted(p.name for p in out.iterdir())
    settle = subprocess.Popen(
        [str(GRIDMATCH), "settle", str(out)], stderr=subprocess.PIPE, text=True
    )
    process = psutil.Process(settle.pid)
    began = time.monotonic()
    anvils: list[psutil.Process] = []
    while not anvils and time.monotonic() - began < 60 and settle.poll() is None:
        anvils = _anvil_children(process)
        time.sleep(0.01)
    assert anvils, "settle started no anvil"
    settle.send_signal(signal.SIGTERM)  # anvil is up; deploying and committing take seconds
    _, stderr = settle.communicate(timeout=60)
    assert settle.returncode == ExitCode.TERMINATED, stderr
    assert stderr.strip().splitlines()[-1].startswith("terminated: stopped by SIGTERM"), stderr
    psutil.wait_procs(anvils, timeout=10)
    assert not any(a.is_running() and a.status() != psutil.STATUS_ZOMBIE for a in anvils)
    # The clearing's files are as they were; the round was not committed, so it settles.
    assert [p for p in before if p not in {q.name for q in out.iterdir()}] == []
    again = CliRunner().invoke(app, ["settle", str(out)])
    assert again.exit_code == 0, again.stderr
    assert "round 1 committed" in again.stderr
