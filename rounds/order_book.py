"""Read a scenario folder whose orders carry submission times, for rolling rounds.

The orders file is the one ``gridmatch clear`` reads, with its column
``submitted_at_min`` (minutes from the start of the day, a whole number >= 0) given,
and ``scenario.yaml`` needs a ``rounds:`` section. Everything is validated by
``scenario_io``'s loader, so both commands accept exactly the same orders; this module
only insists on what rounds need on top. Errors name the user's file, row and field,
as everywhere at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gridmatch.errors import InputError
from gridmatch.scenario_io.loader import SCENARIO_FILE, Scenario, load_scenario
from gridmatch.scenario_io.orders_csv import SUBMITTED_COLUMN
from gridmatch.scenario_io.schema import RoundsSpec

__all__ = ["SUBMITTED_COLUMN", "RollingScenario", "load_rolling_scenario"]


@dataclass(frozen=True)
class RollingScenario:
    """A validated scenario for rolling rounds.

    Attributes
    ----------
    scenario
        The scenario as ``gridmatch clear`` sees it (its book is the whole day).
    rounds
        The ``rounds:`` section.
    submitted_at_min
        Submission time of each order of ``scenario.book``.
    """

    scenario: Scenario
    rounds: RoundsSpec
    submitted_at_min: tuple[int, ...]


def load_rolling_scenario(directory: Path) -> RollingScenario:
    """Validate a scenario folder for rolling rounds completely before anything is solved.

    The checks of :func:`~gridmatch.scenario_io.loader.load_scenario`, plus the
    ``rounds:`` section and the ``submitted_at_min`` column.

    Raises
    ------
    InputError
        On the first problem, naming the file, row and field.
    """
    scenario = load_scenario(directory)
    if scenario.spec.rounds is None:
        raise InputError(
            directory / SCENARIO_FILE,
            "rolling rounds need a 'rounds:' section (interval_min, gate_closure_min)",
            field="rounds",
        )
    if scenario.submitted_at_min is None:
        orders_path = (directory / scenario.spec.orders).resolve()
        raise InputError(
            orders_path,
            f"missing column(s): {SUBMITTED_COLUMN} (rolling rounds need each order's "
            "submission time, minutes from the start of the day)",
            row=1,
            field=SUBMITTED_COLUMN,
        )
    return RollingScenario(scenario, scenario.spec.rounds, scenario.submitted_at_min)
