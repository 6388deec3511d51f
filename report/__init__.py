"""The HTML report of a clearing (``gridmatch report OUT_DIR``, issue #5).

Reads a result folder, never re-solves: see :func:`build_report`.
"""

from gridmatch.report.build import ReportInfo, build_report, parse_slots
from gridmatch.results_io.layout import REPORT_FILE

__all__ = ["REPORT_FILE", "ReportInfo", "build_report", "parse_slots"]
