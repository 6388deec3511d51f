"""Market charts from orders.csv and trades.csv: supply and demand curves, per-slot volumes."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from gridmatch.report.png import new_figure

BUY_COLOUR = "#1f77b4"
SELL_COLOUR = "#e07b00"
TRADE_COLOUR = "#2a9d3c"
CONSTRAINED_COLOUR = "#f3d9d9"


def draw_market_curves(orders: pd.DataFrame, trades: pd.DataFrame, slot: int) -> Figure:
    """Draw one slot's stepped bid and offer curves with what was accepted.

    Bids are sorted by limit price descending and offers ascending, each step as wide
    as the order's kWh. The filled part of every order is drawn thick on its own step
    (fills need not be a prefix of the curve: indivisible orders, fees and the grid
    decide too), and the slot's accepted volume is a vertical line.

    Parameters
    ----------
    orders, trades
        The slot's rows of orders.csv and trades.csv.
    """
    figure = new_figure(6.0, 4.6)
    figure.subplots_adjust(left=0.12, right=0.98, bottom=0.3, top=0.94)
    axes = figure.add_subplot()
    for side, colour, descending, label in (
        ("buy", BUY_COLOUR, True, "bids (buy limit)"),
        ("sell", SELL_COLOUR, False, "offers (sell limit)"),
    ):
        book = orders[orders.side == side].sort_values(
            ["limit_price_eur_per_kwh", "order_id"], ascending=[not descending, True]
        )
        if book.empty:
            continue
        edges = np.concatenate([[0.0], np.cumsum(book.quantity_kwh.to_numpy())])
        limits = book.limit_price_eur_per_kwh.to_numpy()
        # No baseline: a curve ends where its last order ends, it does not drop to 0 EUR.
        axes.stairs(
            limits, edges, baseline=None, color=colour, linewidth=1.6, label=f"{label}, {len(book)}"
        )
        filled = book.filled_kwh.to_numpy()
        has_fill = filled > 0.0
        axes.hlines(
            limits[has_fill],
            edges[:-1][has_fill],
            edges[:-1][has_fill] + filled[has_fill],
            color=colour,
            linewidth=6,
            alpha=0.45,
        )
    traded_kwh = float(trades.quantity_kwh.sum())
    if traded_kwh > 0.0:
        mean_price = float(
            (trades.quantity_kwh * trades.price_eur_per_kwh).sum() / trades.quantity_kwh.sum()
        )
        axes.axvline(traded_kwh, color=TRADE_COLOUR, linestyle="--", linewidth=1.4)
        axes.plot(
            [traded_kwh],
            [mean_price],
            marker="D",
            color=TRADE_COLOUR,
            linestyle="none",
            label=f"accepted {traded_kwh:.3f} kWh at mean {mean_price:.4f} EUR/kWh",
        )
    # A proxy for the thick segments, which would otherwise add one entry per side.
    handles, _ = axes.get_legend_handles_labels()
    handles.append(Patch(color="0.6", alpha=0.45, label="filled part of an order"))
    # Below the axes: inside, it hides the curves' expensive ends.
    figure.legend(handles=handles, fontsize="small", loc="lower center", ncols=2, frameon=False)
    axes.set_xlabel("cumulative energy [kWh]")
    axes.set_ylabel("limit price [EUR/kWh]")
    axes.set_title(f"slot {slot}: supply and demand", fontsize="medium")
    axes.grid(alpha=0.3)
    axes.set_xlim(left=0.0)
    return figure


def draw_slot_volumes(
    slots: list[int],
    orders: pd.DataFrame,
    trades: pd.DataFrame,
    welfare_eur: dict[int, float],
    constrained_slots: set[int],
) -> Figure:
    """Draw, per slot, the kWh bid, offered and traded, and the welfare.

    Slots whose unconstrained matching failed the AC check (the grid constrained them)
    are shaded.
    """
    figure = new_figure(9.0, 4.6)
    figure.subplots_adjust(left=0.08, right=0.99, bottom=0.11, top=0.91, hspace=0.08)
    volume_axes, welfare_axes = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    x = np.asarray(slots, dtype=float)
    bid = orders[orders.side == "buy"].groupby("slot").quantity_kwh.sum()
    offer = orders[orders.side == "sell"].groupby("slot").quantity_kwh.sum()
    traded = trades.groupby("slot").quantity_kwh.sum()
    width = 0.27
    for offset, series, colour, label in (
        (-width, bid, BUY_COLOUR, "bid"),
        (0.0, offer, SELL_COLOUR, "offered"),
        (width, traded, TRADE_COLOUR, "traded"),
    ):
        values = series.reindex(slots, fill_value=0.0).to_numpy()
        volume_axes.bar(x + offset, values, width, color=colour, label=label)
    volume_axes.set_ylabel("energy [kWh]")
    welfare = [welfare_eur.get(s, 0.0) for s in slots]
    welfare_axes.bar(x, welfare, 0.6, color="0.45")
    welfare_axes.set_ylabel("welfare [EUR]")
    welfare_axes.set_xlabel("slot")
    for axes in (volume_axes, welfare_axes):
        _shade(axes, constrained_slots & set(slots))
        axes.grid(axis="y", alpha=0.3)
    handles, _ = volume_axes.get_legend_handles_labels()
    if constrained_slots & set(slots):
        handles.append(Patch(color=CONSTRAINED_COLOUR, label="constrained by the grid"))
    # Above the axes: inside, it would hide the bars of the first slots.
    volume_axes.legend(
        handles=handles,
        fontsize="small",
        ncols=4,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        frameon=False,
    )
    if len(slots) <= 30:  # beyond that, matplotlib's own ticks stay legible
        welfare_axes.set_xticks(x, [str(s) for s in slots])
    return figure


def _shade(axes: Axes, slots: set[int]) -> None:
    for slot in sorted(slots):
        axes.axvspan(slot - 0.5, slot + 0.5, color=CONSTRAINED_COLOUR, zorder=0)
