"""``gridmatch compare``: the batch table by formulation and size, in the terminal and as PNGs.

Size is the number of orders of a scenario. Per formulation and size: runs, failed
runs, median clearing time, median gap to the proven bound, and median shortfall
against the best welfare any executable formulation reached on the same scenario (a
heuristic's gap to the LP bound says little; its shortfall says what it cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from gridmatch.batch.table import STATUS_ERROR, TABLE_PARQUET, read_table
from gridmatch.results_io.atomic import claim_file

TIME_PLOT = "time_by_size.png"
GAP_PLOT = "gap_by_size.png"
# Statuses of runs whose welfare comes from an executable trade set.
EXECUTABLE_STATUSES = ("optimal", "feasible", "heuristic")


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_results` found.

    Attributes
    ----------
    summary
        One row per formulation and size: ``formulation, orders, runs, failed,
        median_solve_s, median_gap, median_shortfall, secure_runs, checked_runs``.
    table
        ``summary`` as a Rich table, for the terminal.
    plots
        The PNGs written: time by size, gap by size.
    """

    summary: pd.DataFrame
    table: Table
    plots: tuple[Path, Path]


def compare_results(results: Path, plots_dir: Path | None = None) -> Comparison:
    """Summarise a batch table by formulation and size and plot time and gap against size.

    Parameters
    ----------
    results
        ``results.parquet`` or ``results.csv`` of ``gridmatch batch``, or the batch
        folder holding them.
    plots_dir
        Where to write ``time_by_size.png`` and ``gap_by_size.png``; default the
        table's folder.

    Raises
    ------
    gridmatch.errors.InputError
        The table is missing or is not a batch table.
    """
    path = results / TABLE_PARQUET if results.is_dir() else results
    runs = with_shortfall(read_table(path))
    summary = summarise(runs)
    out = plots_dir if plots_dir is not None else path.parent
    plots = (out / TIME_PLOT, out / GAP_PLOT)
    for plot in plots:
        claim_file(plot)  # never over a file (or in a place) gridmatch did not write
    plot_time(runs, plots[0])
    plot_gap(runs, plots[1])
    return Comparison(summary, summary_table(summary, title=str(path)), plots)


def with_shortfall(runs: pd.DataFrame) -> pd.DataFrame:
    """Add ``shortfall``: ``1 - welfare / best welfare on the scenario`` (0 for the best).

    The best is over executable results (not relaxations); a scenario whose best
    welfare is 0 has shortfall 0 for every executable run.
    """
    executable = runs["status"].isin(EXECUTABLE_STATUSES)
    best = runs["welfare_eur"].where(executable).groupby(runs["scenario"]).transform("max")
    ratio = runs["welfare_eur"] / best.where(best > 0)
    shortfall = (1.0 - ratio).where(best > 0, 0.0)
    return runs.assign(shortfall=shortfall.where(executable))


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per formulation and size (failed runs, with no size, get their own row)."""
    ok = runs["status"] != STATUS_ERROR
    grouped = runs.assign(
        ok=ok,
        failed=~ok,
        secure_true=runs["secure"].fillna(False).astype(bool),
        secure_known=runs["secure"].notna(),
    ).groupby(["formulation", "orders"], dropna=False, sort=True)
    summary = grouped.agg(
        runs=("ok", "sum"),
        failed=("failed", "sum"),
        median_solve_s=("solve_s", "median"),
        median_gap=("gap", "median"),
        median_shortfall=("shortfall", "median"),
        secure_runs=("secure_true", "sum"),
        checked_runs=("secure_known", "sum"),
    )
    return summary.reset_index()


def summary_table(summary: pd.DataFrame, title: str | None = None) -> Table:
    """Render the summary as a Rich table."""
    table = Table(title=title)
    for name, justify in (
        ("formulation", "left"),
        ("orders", "right"),
        ("runs", "right"),
        ("failed", "right"),
        ("median time", "right"),
        ("median gap", "right"),
        ("median shortfall", "right"),
        ("AC secure", "right"),  # secure/checked runs; "off": security disabled
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    records: list[dict[str, Any]] = summary.to_dict("records")  # type: ignore[assignment]
    for row in records:
        failed, secure, checked = (
            int(row["failed"]),
            int(row["secure_runs"]),
            int(row["checked_runs"]),
        )
        table.add_row(
            str(row["formulation"]),
            _text(row["orders"], "{:d}"),
            str(int(row["runs"])),
            f"[red]{failed}[/]" if failed else "0",
            _text(row["median_solve_s"], "{:.3f} s"),
            _text(row["median_gap"], "{:.4%}"),
            _text(row["median_shortfall"], "{:.4%}"),
            f"{secure}/{checked}" if checked else "off",
        )
    return table


def plot_time(runs: pd.DataFrame, path: Path) -> None:
    """Plot clearing time against size, one series per formulation (points, median line)."""
    _plot(runs, path, [("solve_s", "clearing time solve_s [s]", True)], "time by size")


def plot_gap(runs: pd.DataFrame, path: Path) -> None:
    """Gap to the proven bound and shortfall against the best result, against size."""
    _plot(
        runs,
        path,
        [
            ("gap", "gap to proven bound", False),
            ("shortfall", "shortfall vs best formulation", False),
        ],
        "welfare gap by size",
    )


def _plot(runs: pd.DataFrame, path: Path, panels: list[tuple[str, str, bool]], title: str) -> None:
    # A bare Figure renders with Agg and touches no pyplot state: no display needed
    # (servers, CI), no GUI toolkit imported, and a notebook's backend is left alone.
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    done = runs[runs["status"] != STATUS_ERROR]
    fig = Figure(figsize=(6.4 * len(panels), 4.8))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (column, label, log_y) in zip(axes[0], panels, strict=True):
        for formulation, group in done.groupby("formulation", sort=True):
            points = group[["orders", column]].dropna().astype(float).sort_values("orders")
            if points.empty:
                continue
            medians = points.groupby("orders")[column].median()
            (line,) = ax.plot(medians.index, medians.to_numpy(), marker="o", label=formulation)
            ax.scatter(points["orders"], points[column], color=line.get_color(), alpha=0.35, s=12)
        ax.set_xlabel("orders (size)")
        ax.set_ylabel(label)
        sizes = done["orders"].dropna()
        if len(sizes) and sizes.min() > 0 and sizes.max() / sizes.min() > 20:
            ax.set_xscale("log")
        values = done[column].dropna()
        if log_y and len(values) and values.min() > 0:
            ax.set_yscale("log")
        elif not log_y:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title="formulation")
    fig.suptitle(title)
    fig.tight_layout()
    # No software version in the PNG: the same table gives the same file. Written
    # beside its name and renamed, so a reader never sees half a picture.
    staging = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(staging, dpi=120, metadata={"Software": None}, format="png")
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)


def _text(value: object, pattern: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "—"
    return pattern.format(value)
