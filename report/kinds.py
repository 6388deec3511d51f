"""Which report an output folder gets: one row per kind of folder that is not a clearing.

``gridmatch report OUT`` asks each row's detector in turn; the first that recognises
the folder builds its report. No two detectors accept the same folder (each asks for
files only its command writes together), so the order does not matter. Builders import
their module when called, so the CLI loads only the report it writes (the mobility
report draws a map with matplotlib, the DER one reads meter windows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gridmatch.results_io.battery_rewards import is_battery_rewards_result
from gridmatch.results_io.der_validation import is_der_result
from gridmatch.results_io.mobility import is_mobility_result
from gridmatch.results_io.prepaid import is_prepaid_result


class WrittenReport(Protocol):
    """What every report builder returns."""

    @property
    def path(self) -> Path:
        """The report.html written."""
        ...

    @property
    def headline(self) -> str:
        """One line for the terminal: what the report covers and its size."""
        ...


@dataclass(frozen=True)
class ReportKind:
    """A kind of output folder with a report of its own.

    Attributes
    ----------
    name : str
        The command whose output folder this is.
    matches : Callable[[Path], bool]
        Whether a folder is an output folder of this kind.
    build : Callable[[Path], WrittenReport]
        Write the folder's report and say what was written.
    """

    name: str
    matches: Callable[[Path], bool]
    build: Callable[[Path], WrittenReport]


def _der_report(out_dir: Path) -> WrittenReport:
    from gridmatch.report.der_validation import build_der_report

    return build_der_report(out_dir)


def _mobility_report(out_dir: Path) -> WrittenReport:
    from gridmatch.report.mobility import build_mobility_report

    return build_mobility_report(out_dir)


def _battery_rewards_report(out_dir: Path) -> WrittenReport:
    from gridmatch.report.battery_rewards import build_battery_rewards_report

    return build_battery_rewards_report(out_dir)


def _prepaid_report(out_dir: Path) -> WrittenReport:
    from gridmatch.report.prepaid import build_prepaid_report

    return build_prepaid_report(out_dir)


REPORT_KINDS: tuple[ReportKind, ...] = (
    ReportKind("battery-rewards", is_battery_rewards_result, _battery_rewards_report),
    ReportKind("validate-commitments", is_der_result, _der_report),
    ReportKind("mobility", is_mobility_result, _mobility_report),
    ReportKind("prepaid", is_prepaid_result, _prepaid_report),
)


def report_kind_of(out_dir: Path) -> ReportKind | None:
    """Find the kind of ``out_dir`` in :data:`REPORT_KINDS`; None for a clearing's folder."""
    for kind in REPORT_KINDS:
        if kind.matches(out_dir):
            return kind
    return None
