"""The batch's long table: one row per (scenario, formulation), as Parquet and CSV.

Columns, and where they come from (``summary.json`` of the run folder unless noted):

============================  ======================================================
scenario, formulation         the key (scenario folder name, formulation name)
scenario_name                 ``scenario`` (the name inside scenario.yaml)
status                        ``status`` (optimal, feasible, heuristic, ...) or
                              ``error`` when the run failed
orders, slots, trades, pairs  ``n_orders``, ``len(slots)``, ``n_trades``, ``n_pairs``
traded_kwh                    ``traded_kwh``
welfare_eur, bound_eur,       as named; ``gap`` is relative to ``bound_eur``
lp_bound_eur, gap
solve_s                       ``runtime_s``: the clearing's wall time (matching,
                              bound and AC grid loop; not loading or writing)
build_s, solver_s, bound_s,   its parts; ``solver_s`` is summary's ``solve_s``
grid_s
secure                        ``secure`` (null when security is disabled)
ac_power_flows,               as named
security_iterations
fallback_slots,               counts of the summary's slot lists
insecure_slots
unconstrained_welfare_eur,    as named (null when security is disabled)
price_of_security_eur
solver, solver_version        as named
time_limit_s, mip_gap,        ``options``: the settings the run actually used
threads, seed, tie_break
skipped                       the batch found the run done and re-read it
run_dir                       the run folder, relative to the batch folder
scenario_dir                  the scenario folder, absolute
error_type, error             exception class and message of a failed run
exit_code                     the exit code ``gridmatch clear`` would have ended it with
============================  ======================================================
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from gridmatch.errors import InputError
from gridmatch.results_io.atomic import claim_file
from gridmatch.results_io.tables import neutralise, restore

if TYPE_CHECKING:  # the plan checks formulations against the registry: not for readers
    from gridmatch.batch.plan import RunCell

TABLE_PARQUET = "results.parquet"
TABLE_CSV = "results.csv"
STATUS_ERROR = "error"

# Column -> pandas dtype. Nullable dtypes throughout: an error row has no welfare,
# and an integer column must stay integer when it holds a null.
COLUMNS: dict[str, str] = {
    "scenario": "string",
    "formulation": "string",
    "scenario_name": "string",
    "status": "string",
    "orders": "Int64",
    "slots": "Int64",
    "trades": "Int64",
    "pairs": "Int64",
    "traded_kwh": "Float64",
    "welfare_eur": "Float64",
    "bound_eur": "Float64",
    "lp_bound_eur": "Float64",
    "gap": "Float64",
    "solve_s": "Float64",
    "build_s": "Float64",
    "solver_s": "Float64",
    "bound_s": "Float64",
    "grid_s": "Float64",
    "secure": "boolean",
    "ac_power_flows": "Int64",
    "security_iterations": "Int64",
    "fallback_slots": "Int64",
    "insecure_slots": "Int64",
    "unconstrained_welfare_eur": "Float64",
    "price_of_security_eur": "Float64",
    "solver": "string",
    "solver_version": "string",
    "time_limit_s": "Float64",
    "mip_gap": "Float64",
    "threads": "Int64",
    "seed": "Int64",
    "tie_break": "string",
    "skipped": "boolean",
    "run_dir": "string",
    "scenario_dir": "string",
    "error_type": "string",
    "error": "string",
    "exit_code": "Int64",
}
KEY = ["scenario", "formulation"]
# Columns added since the first table format; an older table reads with them empty.
LATER_COLUMNS = ("tie_break", "exit_code")
# Columns that differ between two runs of the same batch without the results differing.
TIMING_COLUMNS = ("solve_s", "build_s", "solver_s", "bound_s", "grid_s")

Row = dict[str, Any]


def summary_row(cell: RunCell, summary: Mapping[str, Any], *, skipped: bool) -> Row:
    """Build the table row of a finished run from its ``summary.json``."""
    options = summary.get("options", {})
    return _complete(
        cell,
        {
            "scenario_name": summary.get("scenario"),
            "status": summary.get("status"),
            "orders": summary.get("n_orders"),
            "slots": len(summary.get("slots", [])),
            "trades": summary.get("n_trades"),
            "pairs": summary.get("n_pairs"),
            "traded_kwh": summary.get("traded_kwh"),
            "welfare_eur": summary.get("welfare_eur"),
            "bound_eur": summary.get("bound_eur"),
            "lp_bound_eur": summary.get("lp_bound_eur"),
            "gap": summary.get("gap"),
            "solve_s": summary.get("runtime_s"),
            "build_s": summary.get("build_s"),
            "solver_s": summary.get("solve_s"),
            "bound_s": summary.get("bound_s"),
            "grid_s": summary.get("grid_s"),
            "secure": summary.get("secure"),
            "ac_power_flows": summary.get("ac_power_flows"),
            "security_iterations": summary.get("security_iterations"),
            "fallback_slots": _count(summary.get("fallback_slots")),
            "insecure_slots": _count(summary.get("insecure_slots")),
            "unconstrained_welfare_eur": summary.get("unconstrained_welfare_eur"),
            "price_of_security_eur": summary.get("price_of_security_eur"),
            "solver": summary.get("solver"),
            "solver_version": summary.get("solver_version"),
            "time_limit_s": options.get("time_limit_s"),
            "mip_gap": options.get("mip_gap"),
            "threads": options.get("threads"),
            "seed": options.get("seed"),
            "tie_break": options.get("tie_break"),
            "skipped": skipped,
        },
    )


def error_row(cell: RunCell, error_type: str, message: str, exit_code: int | None = None) -> Row:
    """Build the table row of a failed run: key, ``status='error'``, the error and its code."""
    return _complete(
        cell,
        {
            "status": STATUS_ERROR,
            "skipped": False,
            "error_type": error_type,
            "error": message,
            "exit_code": exit_code,
        },
    )


def rows_to_frame(rows: Iterable[Row]) -> pd.DataFrame:
    """Assemble the long table: fixed columns and dtypes, sorted by scenario and formulation.

    Sorting makes the table independent of the order in which runs finished, so two
    batches over the same runs write identical files whatever the executor.
    """
    frame = pd.DataFrame(list(rows), columns=list(COLUMNS))
    frame = frame.astype(COLUMNS)
    return frame.sort_values(KEY, kind="stable", ignore_index=True)


def earlier_rows(out_root: Path, keys: Collection[tuple[str, str]]) -> list[Row]:
    """Rows of the table an earlier batch left in ``out_root``, for the keys not in ``keys``.

    A batch folder collects: a later batch with other scenarios or formulations adds
    to the table instead of replacing it, and a key run again replaces its row. A row
    whose run folder is gone is dropped (error rows have none and are kept).

    Raises
    ------
    gridmatch.errors.InputError
        The earlier table cannot be read (it is left as it is).
    """
    path = out_root / TABLE_PARQUET
    if not path.exists():
        return []
    frame = read_table(path)
    wanted = set(keys)
    kept: list[Row] = []
    for row in frame.to_dict("records"):
        if (row["scenario"], row["formulation"]) in wanted:
            continue
        if row["status"] != STATUS_ERROR and not (out_root / str(row["run_dir"])).is_dir():
            continue
        kept.append({str(name): None if pd.isna(value) else value for name, value in row.items()})
    return kept


def write_table(frame: pd.DataFrame, out_root: Path) -> tuple[Path, Path]:
    """Write ``out_root/results.parquet`` and ``out_root/results.csv``, each atomically.

    Each file is written beside its final name and renamed into place, so a reader
    (or a crash) never sees half a table.

    Returns
    -------
    tuple of Path
        The Parquet and CSV paths.
    """
    parquet = out_root / TABLE_PARQUET
    csv = out_root / TABLE_CSV
    claim_file(parquet)
    claim_file(csv)
    _atomic_write(parquet, lambda path: frame.to_parquet(path, index=False))
    # CSV floats are written with repr (pandas' default), so they round-trip exactly;
    # text cells that a spreadsheet would run as formulas get a leading apostrophe.
    text = _text_columns(frame)
    shown = frame.assign(**{c: frame[c].map(neutralise, na_action="ignore") for c in text})
    _atomic_write(csv, lambda path: shown.to_csv(path, index=False, lineterminator="\n"))
    return parquet, csv


def read_table(path: Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table` (``.parquet`` or ``.csv``).

    Raises
    ------
    gridmatch.errors.InputError
        The file is missing, unreadable, or lacks the key or a needed column.
    """
    if not path.is_file():
        raise InputError(path, "file not found; expected results.parquet or results.csv")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            # Only an empty field is missing: pandas would also read the solver
            # version "n/a" of a heuristic as missing.
            # round_trip: pandas' default float parser may miss the last bit of a repr;
            # it ignores the option for its nullable Float64, so floats are read as
            # float64 (a missing value is NaN) and converted below.
            read_as = {c: "float64" if t == "Float64" else t for c, t in COLUMNS.items()}
            frame = pd.read_csv(
                path,
                dtype=read_as,
                keep_default_na=False,
                na_values=[""],
                float_precision="round_trip",
            )
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot be read as a results table: {exc}") from None
    for column in LATER_COLUMNS:
        if column not in frame.columns:
            frame[column] = None  # a table written before the column existed
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(path, "not a gridmatch batch table", field=missing[0])
    if path.suffix != ".parquet":
        for column in _text_columns(frame):
            frame[column] = frame[column].map(restore, na_action="ignore")
    return frame.astype(COLUMNS)


def _text_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c, kind in COLUMNS.items() if kind == "string" and c in frame.columns]


def _complete(cell: RunCell, values: Mapping[str, Any]) -> Row:
    row: Row = dict.fromkeys(COLUMNS)
    row.update(
        scenario=cell.scenario,
        formulation=cell.formulation,
        run_dir=cell.run_dir.relative_to(cell.out_root).as_posix(),
        scenario_dir=str(cell.scenario_dir),
    )
    row.update(values)
    return row


def _count(values: object) -> int | None:
    return len(values) if isinstance(values, list | tuple) else None


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    # A plain new file (not mkstemp's owner-only one), so the table gets the usual
    # permissions; the random part keeps two writers from sharing a staging file.
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
