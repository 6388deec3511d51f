"""Read a result folder of ``gridmatch clear`` for the report, validating what is used.

The report only reads files (it never re-solves or re-runs power flows): trades.csv,
orders.csv and summary.json are required; grid.csv (security enabled) and manifest.json
are optional, and their absence only removes the parts that need them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pydantic

from gridmatch.grid_models.security import GRID_COLUMNS
from gridmatch.results_io.writers import ORDER_COLUMNS, TRADE_COLUMNS
from gridmatch.rounds.ledger import LEDGER_FILE
from gridmatch.rounds.runner import round_folders
from gridmatch.scenario_io.errors import InputError

TRADES_FILE = "trades.csv"
ORDERS_FILE = "orders.csv"
SUMMARY_FILE = "summary.json"
MANIFEST_FILE = "manifest.json"
GRID_FILE = "grid.csv"

_TRADE_NUMBERS = (
    "quantity_kwh",
    "price_eur_per_kwh",
    "fee_eur_per_kwh",
    "buy_limit_eur_per_kwh",
    "sell_limit_eur_per_kwh",
    "welfare_eur",
)
_ORDER_NUMBERS = ("quantity_kwh", "limit_price_eur_per_kwh", "filled_kwh")
_GRID_NUMBERS = ("before", "after", "limit_low", "limit_high")
GRID_FILE_COLUMNS = (*GRID_COLUMNS, "binding")
_Model = TypeVar("_Model", bound=pydantic.BaseModel)


class SlotSummary(pydantic.BaseModel):
    """One entry of ``summary.json``'s ``slots`` list (the fields the report shows)."""

    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)

    slot: int
    n_buy_orders: int
    n_sell_orders: int
    welfare_eur: float
    # None for a slot matched with grid rows: its solver bound is for the linear model.
    bound_eur: float | None = None
    lp_bound_eur: float | None = None
    termination: str


class Summary(pydantic.BaseModel):
    """The fields of ``summary.json`` the report shows.

    Extra keys are ignored (not forbidden): the summary grows with the engine, and an
    older report must still read a newer folder.
    """

    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)

    scenario: str
    status: str
    welfare_eur: float
    bound_eur: float | None
    gap: float | None
    formulation: str
    solver: str
    solver_version: str
    runtime_s: float
    n_orders: int
    n_trades: int
    traded_kwh: float
    secure: bool | None
    security_iterations: int | None = None
    ac_power_flows: int = 0
    unconstrained_welfare_eur: float | None = None
    price_of_security_eur: float | None = None
    unconstrained_insecure_slots: tuple[int, ...] = ()
    fallback_slots: tuple[int, ...] = ()
    insecure_slots: tuple[int, ...] = ()
    max_line_loading_percent: float | None = None
    max_trafo_loading_percent: float | None = None
    vm_min_pu: float | None = None
    vm_max_pu: float | None = None
    slots: tuple[SlotSummary, ...]


class Manifest(pydantic.BaseModel):
    """The fields of ``manifest.json`` the report uses."""

    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)

    scenario_dir: str
    inputs: dict[str, dict[str, str]]
    created_utc: str | None = None
    versions: dict[str, str | None] = {}


@dataclass(frozen=True)
class ResultFolder:
    """A validated result folder.

    Attributes
    ----------
    trades, orders
        trades.csv and orders.csv, numbers as floats, ``slot``/``bus`` as ints.
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
    rounds = round_folders(directory)
    if (directory / LEDGER_FILE).is_file() and rounds:
        # A rolling-rounds day: each round folder is a clearing of its own.
        raise InputError(
            directory,
            f"a day of rolling rounds, not one clearing; report a round of it, e.g. {rounds[-1]}",
        )
    summary = _read_model(directory / SUMMARY_FILE, Summary)
    trades = _read_table(
        directory / TRADES_FILE,
        TRADE_COLUMNS,
        numbers=_TRADE_NUMBERS,
        integers=("slot", "buy_bus", "sell_bus"),
    )
    orders = _read_table(
        directory / ORDERS_FILE,
        ORDER_COLUMNS,
        numbers=_ORDER_NUMBERS,
        integers=("slot", "bus"),
    )
    _check_side(directory / ORDERS_FILE, orders)
    grid_path = directory / GRID_FILE
    grid = None
    if grid_path.exists():
        grid = _read_table(
            grid_path,
            GRID_FILE_COLUMNS,
            numbers=_GRID_NUMBERS,
            integers=("slot", "index"),
            booleans=("violated", "binding"),
        )
    manifest_path = directory / MANIFEST_FILE
    manifest = _read_model(manifest_path, Manifest) if manifest_path.exists() else None
    return ResultFolder(directory, summary, trades, orders, grid, manifest)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            path, "file not found; is this a result folder of `gridmatch clear`?"
        ) from None
    except OSError as exc:
        raise InputError(path, f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason})") from None


def _read_model(path: Path, model: type[_Model]) -> _Model:
    text = _read_text(path)
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON: {exc.msg}", row=exc.lineno) from None
    try:
        return model.model_validate(document)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = "required key is missing" if first["type"] == "missing" else first["msg"]
        raise InputError(path, message, field=field) from None


def _read_table(
    path: Path,
    columns: tuple[str, ...] | list[str],
    *,
    numbers: tuple[str, ...] = (),
    integers: tuple[str, ...] = (),
    booleans: tuple[str, ...] = (),
) -> pd.DataFrame:
    text = _read_text(path)
    header = text.split("\n", 1)[0].strip().split(",")
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(path, "column missing from the header", field=missing[0])
    # Everything as text first, so a bad cell is reported by row and column rather
    # than turning a whole column into objects.
    with path.open(encoding="utf-8") as handle:
        table = pd.read_csv(handle, dtype=str, keep_default_na=False)
    for column in (*numbers, *integers):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna().to_numpy()
        if column in integers:
            bad |= values.notna().to_numpy() & (values.fillna(0) % 1 != 0).to_numpy()
        if bad.any():
            row = int(bad.argmax())
            raise InputError(
                path, f"not a number: '{table[column].iloc[row]}'", row=row + 1, field=column
            )
        table[column] = values.astype("int64" if column in integers else "float64")
    for column in booleans:
        text_values = table[column]
        bad = ~text_values.isin(["true", "false"]).to_numpy()
        if bad.any():
            row = int(bad.argmax())
            raise InputError(
                path,
                f"expected true or false, got '{text_values.iloc[row]}'",
                row=row + 1,
                field=column,
            )
        table[column] = text_values == "true"
    return table


def _check_side(path: Path, orders: pd.DataFrame) -> None:
    bad = ~orders.side.isin(["buy", "sell"]).to_numpy()
    if bad.any():
        row = int(bad.argmax())
        raise InputError(
            path, f"expected buy or sell, got '{orders.side.iloc[row]}'", row=row + 1, field="side"
        )
