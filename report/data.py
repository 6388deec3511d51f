"""Read a result folder for the report, through the result folder's own readers.

The report only reads files (it never re-solves or re-runs power flows): trades.csv,
orders.csv and summary.json are required; grid.csv (security enabled) and manifest.json
are optional, and their absence only removes the parts that need them. The tables are
handed to the drawing code as pandas frames, one column per row field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gridmatch.errors import InputError
from gridmatch.results_io.folder import (
    read_grid,
    read_manifest,
    read_orders,
    read_summary,
    read_trades,
)
from gridmatch.results_io.layout import is_rolling_day, round_folders
from gridmatch.results_io.manifest import Manifest
from gridmatch.results_io.rows import GridRow, OrderRow, TradeRow
from gridmatch.results_io.summary import Summary
from gridmatch.results_io.tables import to_frame

__all__ = ["ResultFolder", "read_result_folder"]


@dataclass(frozen=True)
class ResultFolder:
    """A validated result folder.

    Attributes
    ----------
    trades, orders
        trades.csv and orders.csv as frames (``side`` and ``status`` as text).
    grid
        grid.csv (``None`` when the clearing had security disabled).
    manifest
        ``None`` when manifest.json is missing.
    """

    directory: Path
    summary: Summary
    trades: pd.DataFrame
    orders: pd.DataFrame
    grid: pd.DataFrame | None
    manifest: Manifest | None


def read_result_folder(directory: Path) -> ResultFolder:
    """Read and validate the files of a result folder.

    Raises
    ------
    InputError
        If the folder or a required file is missing, or a file is malformed; the error
        names the file (and row and field where there is one).
    """
    if not directory.is_dir():
        raise InputError(directory, "not a folder; expected a result folder of `gridmatch clear`")
    if is_rolling_day(directory):
        # A rolling-rounds day: each round folder is a clearing of its own.
        raise InputError(
            directory,
            "a day of rolling rounds, not one clearing; report a round of it, "
            f"e.g. {round_folders(directory)[-1]}",
        )
    summary = read_summary(directory)
    trades = to_frame(TradeRow, read_trades(directory))
    orders = to_frame(OrderRow, read_orders(directory))
    grid_rows = read_grid(directory)
    grid = None if grid_rows is None else to_frame(GridRow, grid_rows)
    return ResultFolder(directory, summary, trades, orders, grid, read_manifest(directory))
