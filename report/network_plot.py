"""One slot's grid state drawn on the network with pandapower's plotting collections.

Lines and transformers are coloured by loading (percent of rating), buses by voltage
(pu), after the slot's accepted trades, as grid.csv records them. Elements whose
security row bound the trades get a black outline, elements out of their limits a red
one. The colour scales are fixed over all slots, so colours compare between maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandapower.plotting as pp_plot
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, ListedColormap, Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.spatial import cKDTree

from gridmatch.grid_models.security import TRANSFORMERS
from gridmatch.report.network import DrawableNetwork
from gridmatch.report.png import new_figure

# Lightest part of YlOrRd left out: a line at 0 % must still show on white paper.
LOADING_CMAP: Colormap = ListedColormap(colormaps["YlOrRd"](np.linspace(0.25, 1.0, 256)))
# Red below the band, blue above, pale at 1 pu: undervoltage (the usual LV problem) is red.
VOLTAGE_CMAP: Colormap = colormaps["RdBu"]
# Magenta: in neither colour map, so a violation cannot pass for a high value.
_VIOLATED_COLOUR = "#e000e0"
_BINDING_COLOUR = "black"
_LINE_WIDTH_PT = 2.5


@dataclass(frozen=True)
class GridScale:
    """Colour scales and limits shared by every slot's map."""

    loading_norm: Normalize
    vm_norm: Normalize
    line_limit_percent: float | None
    trafo_limit_percent: float | None
    vm_min_pu: float | None
    vm_max_pu: float | None


def grid_scale(grid: pd.DataFrame) -> GridScale:
    """Fix colour ranges over all slots of grid.csv, wide enough for the limits."""
    branch = grid[grid.element.isin(["line", *TRANSFORMERS])]
    bus = grid[grid.element == "bus"]
    line_limit = _limit(grid, "line", "limit_high")
    trafo_limit = _limit(grid, TRANSFORMERS, "limit_high")
    vm_min = _limit(grid, "bus", "limit_low")
    vm_max = _limit(grid, "bus", "limit_high")
    loading_top = max(
        [v for v in (line_limit, trafo_limit) if v is not None]
        + [float(np.nanmax(branch.after)) if branch.after.notna().any() else 0.0, 1.0]
    )
    vm_values = [v for v in (vm_min, vm_max) if v is not None]
    if bus.after.notna().any():
        vm_values += [float(np.nanmin(bus.after)), float(np.nanmax(bus.after))]
    low, high = (min(vm_values), max(vm_values)) if vm_values else (0.95, 1.05)
    # A margin so the limit marks do not sit on the colour bar's ends.
    margin = 0.1 * max(high - low, 0.01)
    low, high = low - margin, high + margin
    # Pale exactly at 1 pu when the range allows it, so that red means below nominal.
    vm_norm = TwoSlopeNorm(1.0, low, high) if low < 1.0 < high else Normalize(low, high)
    return GridScale(
        Normalize(0.0, loading_top),
        vm_norm,
        line_limit,
        trafo_limit,
        vm_min,
        vm_max,
    )


def draw_slot_network(network: DrawableNetwork, rows: pd.DataFrame, scale: GridScale) -> Figure:
    """Draw one slot's loadings and voltages on the network.

    Parameters
    ----------
    rows
        The slot's rows of grid.csv (every in-service line, transformer and bus).
    """
    net = network.net
    xy = network.bus_xy()
    size = _bus_size(xy)
    line = _element(rows, "line", xy, net)
    trafo = _element(rows, "trafo", xy, net)
    trafo3w = _element(rows, "trafo3w", xy, net)
    bus = rows[(rows.element == "bus") & rows["index"].isin(xy.index)].set_index("index")
    collections = [
        *_line_collections(net, line, scale),
        *_trafo_collections(net, trafo, trafo3w, scale, size),
        *_bus_collections(net, bus, scale, size),
        *_ext_grid_collections(net, xy, size),
    ]
    figure, axes, bars = _map_figure(xy)
    for collection in collections:
        if collection is not None:
            axes.add_collection(collection)
    axes.autoscale_view()
    axes.set_aspect("equal", adjustable="datalim")
    axes.set_axis_off()
    _colour_bars(figure, bars, scale, has_trafo=bool(len(trafo) + len(trafo3w)))
    _legend(figure)
    return figure


def _line_collections(net: Any, line: pd.DataFrame, scale: GridScale) -> list[Any]:
    """Outlines of violated and binding lines under every line coloured by its loading."""
    collections = []
    for flag, colour, width in (
        ("violated", _VIOLATED_COLOUR, 4.0),
        ("binding", _BINDING_COLOUR, 2.2),
    ):
        marked = line.index[line[flag].to_numpy(dtype=bool)]
        if len(marked):
            collections.append(
                pp_plot.create_line_collection(
                    net,
                    lines=marked,
                    use_bus_geodata=True,
                    color=colour,
                    linewidths=_LINE_WIDTH_PT * width,
                    zorder=1,
                )
            )
    if len(line):
        collections.append(
            pp_plot.create_line_collection(
                net,
                lines=line.index,
                use_bus_geodata=True,
                z=line.after.to_numpy(),
                cmap=LOADING_CMAP,
                norm=scale.loading_norm,
                plot_colormap=False,
                linewidths=_LINE_WIDTH_PT,
                zorder=2,
            )
        )
    return collections


def _trafo_collections(
    net: Any, trafo: pd.DataFrame, trafo3w: pd.DataFrame, scale: GridScale, size: float
) -> list[Any]:
    """Draw the two- and three-winding transformers coloured by their loading."""
    style = {
        "cmap": LOADING_CMAP,
        "norm": scale.loading_norm,
        "plot_colormap": False,
        "linewidths": 1.5,
        "zorder": 2,
    }
    drawn: list[Any] = []
    if len(trafo):
        drawn += (
            pp_plot.create_trafo_collection(
                net, trafos=trafo.index, size=size * 1.2, z=trafo.after, **style
            )
            or []
        )
    if len(trafo3w):
        # Lines from its star point to the three buses: no symbol size to give.
        drawn += (
            pp_plot.create_trafo3w_collection(net, trafo3ws=trafo3w.index, z=trafo3w.after, **style)
            or []
        )
    return drawn


def _bus_collections(net: Any, bus: pd.DataFrame, scale: GridScale, size: float) -> list[Any]:
    """Halos of violated and binding buses under every bus coloured by its voltage."""
    collections = []
    for flag, colour, grow in (
        ("violated", _VIOLATED_COLOUR, 2.2),
        ("binding", _BINDING_COLOUR, 1.7),
    ):
        marked = bus.index[bus[flag].to_numpy(dtype=bool)]
        if len(marked):
            collections.append(
                pp_plot.create_bus_collection(
                    net, buses=marked, size=size * grow, color=colour, zorder=3
                )
            )
    if len(bus):
        collections.append(
            pp_plot.create_bus_collection(
                net,
                buses=bus.index,
                size=size,
                z=bus.after.to_numpy(),
                cmap=VOLTAGE_CMAP,
                norm=scale.vm_norm,
                plot_colormap=False,
                edgecolor="0.25",
                linewidth=0.5,
                zorder=4,
            )
        )
    return collections


def _ext_grid_collections(net: Any, xy: pd.DataFrame, size: float) -> list[Any]:
    """Draw the external grids that sit at drawn buses."""
    ext_grid = net.ext_grid[
        net.ext_grid.in_service.to_numpy(dtype=bool) & net.ext_grid.bus.isin(xy.index).to_numpy()
    ]
    if not len(ext_grid):
        return []
    return list(
        pp_plot.create_ext_grid_collection(
            net,
            size=size * 3.0,
            ext_grids=ext_grid.index,
            ext_grid_buses=ext_grid.bus.to_numpy(),
            orientation=0.0,
            zorder=5,
        )
    )


def _legend(figure: Figure) -> None:
    figure.legend(
        handles=[
            Line2D([], [], color=_BINDING_COLOUR, lw=4, label="security row bound the trades"),
            Line2D([], [], color=_VIOLATED_COLOUR, lw=4, label="outside its limit"),
            Line2D(
                [], [], color="k", marker="s", lw=0, markerfacecolor="none", label="external grid"
            ),
        ],
        loc="lower center",
        ncols=3,
        fontsize="small",
        frameon=False,
    )


def _map_figure(xy: pd.DataFrame) -> tuple[Figure, Axes, tuple[Axes, Axes]]:
    """Make a figure shaped after the network: the map, then two colour bars on the right."""
    height_in, bars_in, legend_in = 4.6, 2.0, 0.35
    map_height_in = height_in - legend_in - 0.1
    span = np.ptp(xy.to_numpy(), axis=0) if len(xy) else np.ones(2)
    aspect = float(span[0] / span[1]) if span[1] > 0 else 2.0
    map_width_in = float(np.clip(aspect * map_height_in, 3.2, 7.5))
    width_in = map_width_in + bars_in
    figure = new_figure(width_in, height_in)
    axes = figure.add_axes(
        (0.01, legend_in / height_in, map_width_in / width_in - 0.02, map_height_in / height_in)
    )
    bar_bottom, bar_height = (legend_in + 0.25) / height_in, (map_height_in - 0.5) / height_in
    bars = (
        figure.add_axes(((map_width_in + 0.05) / width_in, bar_bottom, 0.2 / width_in, bar_height)),
        figure.add_axes(((map_width_in + 1.05) / width_in, bar_bottom, 0.2 / width_in, bar_height)),
    )
    return figure, axes, bars


def _element(rows: pd.DataFrame, element: str, xy: pd.DataFrame, net: object) -> pd.DataFrame:
    """Select the slot's rows of one branch type whose end buses both have coordinates."""
    table = rows[rows.element == element].set_index("index")
    if table.empty:
        return table
    branches = getattr(net, element)
    ends = {
        "line": ("from_bus", "to_bus"),
        "trafo": ("hv_bus", "lv_bus"),
        "trafo3w": ("hv_bus", "mv_bus", "lv_bus"),
    }[element]
    drawable = np.ones(len(table), dtype=bool)
    for end in ends:
        drawable &= branches.loc[table.index, end].isin(xy.index).to_numpy()
    return table[drawable]


def _bus_size(xy: pd.DataFrame) -> float:
    """Bus circle radius in map units: visible, but smaller than the gap to the next bus."""
    points = xy.to_numpy()
    if len(points) < 2:
        return 1.0
    extent = float(np.ptp(points, axis=0).max()) or 1.0
    distance, _ = cKDTree(points).query(points, k=2)
    gaps = distance[:, 1][distance[:, 1] > 1e-9 * extent]
    size = 0.012 * extent
    if gaps.size:
        size = min(size, 0.35 * float(np.median(gaps)))
    return size


def _colour_bars(
    figure: Figure, bars: tuple[Axes, Axes], scale: GridScale, *, has_trafo: bool
) -> None:
    voltage = figure.colorbar(ScalarMappable(scale.vm_norm, VOLTAGE_CMAP), cax=bars[0])
    voltage.set_label("bus voltage [pu]; black: limits")
    for limit in (scale.vm_min_pu, scale.vm_max_pu):
        if limit is not None:
            voltage.ax.axhline(limit, color="k", linewidth=1.5)
    loading = figure.colorbar(ScalarMappable(scale.loading_norm, LOADING_CMAP), cax=bars[1])
    loading.set_label("loading [%]; black: limit" + (" (dotted: trafo)" if has_trafo else ""))
    if scale.line_limit_percent is not None:
        loading.ax.axhline(scale.line_limit_percent, color="k", linewidth=1.5)
    if has_trafo and scale.trafo_limit_percent is not None:
        loading.ax.axhline(scale.trafo_limit_percent, color="k", linestyle=":", linewidth=1.5)


def _limit(grid: pd.DataFrame, element: str | tuple[str, ...], column: str) -> float | None:
    elements = (element,) if isinstance(element, str) else element
    values = grid.loc[grid.element.isin(elements), column]
    finite = values[np.isfinite(values)]
    return float(finite.iloc[0]) if len(finite) else None
