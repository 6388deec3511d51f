"""Names in a result folder: its files, and the round folders of a rolling day.

A clearing's folder (``gridmatch clear``, a batch run, one round of a rolling day)::

    trades.csv  orders.csv  summary.json  manifest.json  [grid.csv]  [report.html]

A rolling day's folder holds ``ledger.sqlite``, ``round-001/`` ... (each a clearing's
folder) and the day's own ``trades.csv``, ``orders.csv`` and ``summary.json``.
"""

from __future__ import annotations

import re
from pathlib import Path

TRADES_FILE = "trades.csv"
ORDERS_FILE = "orders.csv"
SUMMARY_FILE = "summary.json"
MANIFEST_FILE = "manifest.json"
GRID_FILE = "grid.csv"
BUDGETS_FILE = "budgets.csv"
REPORT_FILE = "report.html"
LEDGER_FILE = "ledger.sqlite"
# What `gridmatch settle` adds to a result folder: keys, chain state, validators.
SETTLEMENT_DIR = "settlement"
# The latest `gridmatch certificates list` of a settled folder (what `report` shows).
CERTIFICATES_SNAPSHOT_FILE = f"{SETTLEMENT_DIR}/certificates.json"

ROUND_PREFIX = "round-"
_ROUND_NAME = re.compile(rf"^{ROUND_PREFIX}(\d{{3,}})$")


def round_folder(day_dir: Path, round_no: int) -> Path:
    """Return the result folder of round ``round_no`` (1-based) of a rolling day."""
    return day_dir / f"{ROUND_PREFIX}{round_no:03d}"


def round_number(folder: Path) -> int | None:
    """Return the round number a folder name stands for, or ``None`` if it is not a round folder."""
    match = _ROUND_NAME.match(folder.name)
    return int(match.group(1)) if match else None


def round_folders(day_dir: Path) -> list[Path]:
    """Return the round folders in a rolling day's folder, in round order."""
    found = [p for p in day_dir.glob(f"{ROUND_PREFIX}*") if round_number(p) is not None]
    return sorted(found, key=lambda p: round_number(p) or 0)


def is_rolling_day(folder: Path) -> bool:
    """Whether ``folder`` is a rolling day (a ledger and round folders), not one clearing."""
    return (folder / LEDGER_FILE).is_file() and bool(round_folders(folder))
