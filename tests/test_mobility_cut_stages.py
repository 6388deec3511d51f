"""After the grid loop cuts sessions in emergency mode, every stage reports the cut dispatch.

A reviewer found stage 1 keeping the critical energy of the uncut dispatch, so the
summary claimed a critical value and floor the written dispatch did not reach, and the
one reported ``gap`` no longer bounded the critical energy.
"""

from __future__ import annotations

from pathlib import Path

from gridmatch.mobility.dispatch import Mode
from gridmatch.mobility.run import run_mobility

REPO = Path(__file__).resolve().parents[1]
STORM = REPO / "scenarios" / "storm-town"


def _cut_run(tmp_path: Path):
    run = run_mobility(STORM, tmp_path / "out", Mode.EMERGENCY, time_limit_s=0.05)
    assert run.summary.grid.cut_points, "precondition: the loop cut sessions"
    return run.summary


def test_stage_one_reports_what_the_cut_dispatch_serves(tmp_path: Path) -> None:
    summary = _cut_run(tmp_path)
    critical_kwh = summary.critical_served_wh / 1000.0
    # Stage 1's objective is the critical energy (up to a 1e-6 travel tie-break).
    assert summary.stages[0].objective_kwh <= critical_kwh + 0.01, (
        summary.stages[0].objective_kwh,
        critical_kwh,
    )


def test_the_reported_gap_bounds_the_critical_energy_after_a_cut(tmp_path: Path) -> None:
    summary = _cut_run(tmp_path)
    critical_kwh = summary.critical_served_wh / 1000.0
    critical_bound = summary.stages[0].bound_kwh
    assert summary.gap is not None
    # "no dispatch serves critical requests more than (1 + gap) times what this one does"
    assert critical_bound <= (1.0 + summary.gap) * critical_kwh + 1e-6, (
        critical_bound,
        critical_kwh,
        summary.gap,
    )


def test_the_floor_is_not_above_what_the_dispatch_serves(tmp_path: Path) -> None:
    summary = _cut_run(tmp_path)
    assert summary.critical_floor_kwh is not None
    assert summary.critical_floor_kwh <= summary.critical_served_wh / 1000.0 + 1e-3
