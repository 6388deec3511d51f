"""The grid's extremes per slot from grid.csv, without and with the accepted trades."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gridmatch.grid_models.security import TRANSFORMERS
from gridmatch.report.png import new_figure

_AFTER_COLOUR = "#c0392b"
_BEFORE_COLOUR = "0.55"


def slot_extremes(grid: pd.DataFrame) -> pd.DataFrame:
    """Per slot: worst line and transformer loading and the voltage range, before and after.

    Returns
    -------
    pandas.DataFrame
        Index ``slot``; columns ``<quantity>_<before|after>`` for ``line_max``,
        ``trafo_max`` (percent, two- and three-winding transformers alike: the limit
        judged is the same), ``vm_min``, ``vm_max`` (pu), NaN where the slot has
        no such element; and ``binding`` and ``violated`` (element counts).
    """
    parts: dict[str, pd.Series] = {}
    for name, elements, how in (
        ("line_max", ("line",), "max"),
        ("trafo_max", TRANSFORMERS, "max"),
        ("vm_min", ("bus",), "min"),
        ("vm_max", ("bus",), "max"),
    ):
        rows = grid[grid.element.isin(elements)].groupby("slot")
        for state in ("before", "after"):
            parts[f"{name}_{state}"] = rows[state].agg(how)
    table = pd.DataFrame(parts, index=np.unique(grid.slot.to_numpy()))
    table["binding"] = grid.groupby("slot").binding.sum()
    table["violated"] = grid.groupby("slot").violated.sum()
    table.index.name = "slot"
    return table


def draw_security(extremes: pd.DataFrame, grid: pd.DataFrame) -> Figure:
    """Draw each traded slot's worst loading and voltage range, before and after the trades."""
    figure = new_figure(10.0, 4.8)
    # Legends go right of the axes, where they cannot hide a point.
    figure.subplots_adjust(left=0.08, right=0.72, bottom=0.11, top=0.97, hspace=0.1)
    loading_axes, voltage_axes = figure.subplots(2, 1, sharex=True)
    slots = extremes.index.to_numpy(dtype=float)
    for column, marker, label in (
        ("line_max", "o", "max line loading"),
        ("trafo_max", "s", "max trafo loading"),
    ):
        _before_after(loading_axes, slots, extremes, column, marker, label)
    _limit_lines(loading_axes, grid, ("line", *TRANSFORMERS), "limit_high")
    loading_axes.set_ylabel("loading [%]")
    for column, marker, label in (("vm_min", "v", "min voltage"), ("vm_max", "^", "max voltage")):
        _before_after(voltage_axes, slots, extremes, column, marker, label)
    _limit_lines(voltage_axes, grid, ("bus",), "limit_low")
    _limit_lines(voltage_axes, grid, ("bus",), "limit_high")
    voltage_axes.set_ylabel("voltage [pu]")
    voltage_axes.set_xlabel("slot (with trades)")
    for axes in (loading_axes, voltage_axes):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if len(slots) <= 30:
        voltage_axes.set_xticks(slots, [str(int(s)) for s in slots])
    return figure


def _before_after(
    axes: Axes, slots: np.ndarray, extremes: pd.DataFrame, column: str, marker: str, label: str
) -> None:
    after = extremes[f"{column}_after"].to_numpy(dtype=float)
    if not np.isfinite(after).any():
        return
    before = extremes[f"{column}_before"].to_numpy(dtype=float)
    axes.plot(
        slots,
        before,
        marker=marker,
        color=_BEFORE_COLOUR,
        linestyle=":",
        mfc="none",
        label=f"{label}, no trades",
    )
    axes.plot(
        slots,
        after,
        marker=marker,
        color=_AFTER_COLOUR,
        linestyle="-",
        label=f"{label}, with trades",
    )


def _limit_lines(axes: Axes, grid: pd.DataFrame, elements: tuple[str, ...], column: str) -> None:
    values = grid.loc[grid.element.isin(elements), column].to_numpy(dtype=float)
    for limit in np.unique(values[np.isfinite(values)]):
        axes.axhline(float(limit), color="k", linewidth=1.0, linestyle="--")
