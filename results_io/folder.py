"""The result folder as one contract: write a clearing's files, read any of them back.

Every workflow goes through here: ``clear`` and each batch run and rolling round write
with :func:`write_result`; rounds, batch, report and settlement read with the
``read_*`` functions. Readers validate what they read (file, row and field named in
an :class:`~gridmatch.errors.InputError`), since a result folder may have been edited
or damaged since it was written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from gridmatch import user_files
from gridmatch.errors import InputError
from gridmatch.results_io.atomic import atomic_output_dir
from gridmatch.results_io.layout import (
    BUDGETS_FILE,
    GRID_FILE,
    MANIFEST_FILE,
    ORDERS_FILE,
    SUMMARY_FILE,
    TRADES_FILE,
)
from gridmatch.results_io.manifest import Manifest
from gridmatch.results_io.rows import BudgetRow, GridRow, OrderRow, TradeRow
from gridmatch.results_io.summary import Summary
from gridmatch.results_io.tables import from_csv, numbered_from_csv, to_csv

_Model = TypeVar("_Model", bound=pydantic.BaseModel)
_Row = TypeVar("_Row")


@dataclass(frozen=True)
class ResultFiles:
    """The files of one clearing's result folder.

    Attributes
    ----------
    manifest
        The run's manifest (:func:`~gridmatch.results_io.manifest.build_manifest`).
    grid
        grid.csv rows; ``None`` when security is disabled (no grid.csv is written).
    budgets
        budgets.csv rows; ``None`` without prepaid accounts (no budgets.csv is written).
    """

    trades: Sequence[TradeRow]
    orders: Sequence[OrderRow]
    summary: Summary
    manifest: dict[str, Any]
    grid: Sequence[GridRow] | None = None
    budgets: Sequence[BudgetRow] | None = None


def trades_csv(trades: Sequence[TradeRow]) -> bytes:
    """Return the bytes of trades.csv for ``trades`` (what rounds hash and compare on rerun)."""
    return to_csv(TradeRow, trades).encode("utf-8")


def json_text(document: dict[str, Any]) -> str:
    """Return a JSON document as gridmatch writes it: indented, no NaN, a final newline."""
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def write_result(out_dir: Path, files: ResultFiles) -> None:
    """Write a clearing's result folder atomically (all files or, on failure, none).

    Raises
    ------
    gridmatch.errors.OutputFolderError
        ``out_dir`` holds files gridmatch did not write.
    """
    with atomic_output_dir(out_dir) as staging:
        (staging / TRADES_FILE).write_bytes(trades_csv(files.trades))
        (staging / ORDERS_FILE).write_text(to_csv(OrderRow, files.orders), encoding="utf-8")
        (staging / SUMMARY_FILE).write_text(json_text(files.summary.document()), encoding="utf-8")
        (staging / MANIFEST_FILE).write_text(json_text(files.manifest), encoding="utf-8")
        if files.grid is not None:
            (staging / GRID_FILE).write_text(to_csv(GridRow, files.grid), encoding="utf-8")
        if files.budgets is not None:
            (staging / BUDGETS_FILE).write_text(to_csv(BudgetRow, files.budgets), encoding="utf-8")


def read_text(path: Path, what: str = "a result folder of `gridmatch clear`") -> str:
    """Read a UTF-8 file of a result folder.

    Raises
    ------
    InputError
        Missing, unreadable or not UTF-8.
    """
    if not path.exists():
        raise InputError(path, f"file not found; is this {what}?")
    return user_files.read_text(path, user_files.TABLE_LIMIT_BYTES)


def parse_trades(data: bytes | str, source: Path) -> list[TradeRow]:
    """Read trades.csv content (rows as file lines, header = 1), validated.

    Parameters
    ----------
    source
        Where the content came from, named in errors (a file, or a ledger).
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return from_csv(TradeRow, text, source)


def read_trades(folder: Path) -> list[TradeRow]:
    """Read ``folder/trades.csv``."""
    path = folder / TRADES_FILE
    return parse_trades(read_text(path), path)


def read_numbered_trades(folder: Path) -> list[tuple[int, TradeRow]]:
    """Read ``folder/trades.csv``, each trade with its file line (for checks made later)."""
    path = folder / TRADES_FILE
    return numbered_from_csv(TradeRow, read_text(path), path)


def read_orders(folder: Path) -> list[OrderRow]:
    """Read ``folder/orders.csv``."""
    return _read_rows(folder / ORDERS_FILE, OrderRow)


def read_grid(folder: Path) -> list[GridRow] | None:
    """Read ``folder/grid.csv``; ``None`` if there is none (security disabled)."""
    path = folder / GRID_FILE
    return _read_rows(path, GridRow) if path.exists() else None


def read_budgets(folder: Path) -> list[BudgetRow] | None:
    """Read ``folder/budgets.csv``; ``None`` if there is none (no prepaid accounts)."""
    path = folder / BUDGETS_FILE
    return _read_rows(path, BudgetRow) if path.exists() else None


def read_summary(folder: Path) -> Summary:
    """Read ``folder/summary.json``."""
    return read_model(folder / SUMMARY_FILE, Summary)


def read_manifest(folder: Path) -> Manifest | None:
    """Read ``folder/manifest.json``; ``None`` if there is none."""
    path = folder / MANIFEST_FILE
    return read_model(path, Manifest) if path.exists() else None


def _read_rows(path: Path, cls: type[_Row]) -> list[_Row]:
    return from_csv(cls, read_text(path), path)


def read_model(path: Path, model: type[_Model]) -> _Model:
    """Read a JSON file into a pydantic model.

    Raises
    ------
    InputError
        Not valid JSON (with its line), or a missing or malformed field.
    """
    document: Any = user_files.parse_json(read_text(path), path)
    return user_files.validated(model, document, path)
