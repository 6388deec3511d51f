"""The report's sections, each from the files of a result folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gridmatch.report import markup as html
from gridmatch.report.data import ResultFolder
from gridmatch.report.market_plot import draw_market_curves, draw_slot_volumes
from gridmatch.report.network import DrawableNetwork
from gridmatch.report.network_plot import GridScale, draw_slot_network, grid_scale
from gridmatch.report.png import png_data_uri
from gridmatch.report.security_plot import draw_security, slot_extremes
from gridmatch.results_io.layout import GRID_FILE, ORDERS_FILE, TRADES_FILE
from gridmatch.results_io.rows import TradeRow
from gridmatch.results_io.tables import columns

# More rows than this make a page that browsers scroll sluggishly; trades.csv has them all.
MAX_TRADE_ROWS = 2000
MAX_GRID_ROWS = 300


@dataclass(frozen=True)
class SlotFacts:
    """Per-slot numbers shared by the overview table and the slot panels.

    Attributes
    ----------
    table
        Index ``slot``; columns ``n_buy``, ``n_sell``, ``buy_kwh``, ``sell_kwh``,
        ``n_trades``, ``traded_kwh``, ``mean_price`` (EUR/kWh, NaN without trades),
        ``welfare_eur``, ``termination``.
    constrained
        Slots the grid constrained (insecure without it, or secured by the fallback).
    extremes
        :func:`~gridmatch.report.security_plot.slot_extremes` of grid.csv, if any.
    """

    table: pd.DataFrame
    constrained: frozenset[int]
    extremes: pd.DataFrame | None

    def row(self, slot: int) -> dict[str, Any]:
        """Return one slot's row of :attr:`table` by column name."""
        return _records(self.table)[slot]

    def extreme(self, slot: int) -> dict[str, Any] | None:
        """Return one slot's row of :attr:`extremes`, or ``None`` if it has none."""
        if self.extremes is None:
            return None
        return _records(self.extremes).get(slot)


def slot_facts(folder: ResultFolder) -> SlotFacts:
    """Gather per-slot totals from orders.csv, trades.csv, summary.json and grid.csv."""
    orders, trades, summary = folder.orders, folder.trades, folder.summary
    slots = sorted(set(orders.slot.tolist()) | {s.slot for s in summary.slots})
    by_side = orders.groupby(["slot", "side"]).quantity_kwh.agg(["count", "sum"])
    table = pd.DataFrame(index=pd.Index(slots, name="slot"))
    for side in ("buy", "sell"):
        part = by_side.xs(side, level="side") if side in by_side.index.get_level_values(1) else None
        table[f"n_{side}"] = 0 if part is None else part["count"].reindex(slots, fill_value=0)
        table[f"{side}_kwh"] = 0.0 if part is None else part["sum"].reindex(slots, fill_value=0.0)
    grouped = trades.groupby("slot")
    table["n_trades"] = grouped.size().reindex(slots, fill_value=0)
    table["traded_kwh"] = grouped.quantity_kwh.sum().reindex(slots, fill_value=0.0)
    value = (trades.quantity_kwh * trades.price_eur_per_kwh).groupby(trades.slot).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        table["mean_price"] = value.reindex(slots) / table.traded_kwh.replace(0.0, np.nan)
    table["welfare_eur"] = grouped.welfare_eur.sum().reindex(slots, fill_value=0.0)
    # Why the solver stopped, and where the trades came from when not from it.
    solver = {
        s.slot: s.termination if s.provenance == "solver" else f"{s.termination}, {s.provenance}"
        for s in summary.slots
    }
    table["termination"] = [solver.get(s, "") for s in slots]
    constrained = frozenset(summary.unconstrained_insecure_slots or ()) | frozenset(
        summary.fallback_slots or ()
    )
    extremes = slot_extremes(folder.grid) if folder.grid is not None else None
    return SlotFacts(table, constrained, extremes)


def overview_section(folder: ResultFolder, facts: SlotFacts) -> str:
    """Key figures of the clearing, the per-slot chart and the per-slot totals."""
    s = folder.summary
    gap = "–" if s.gap is None else f"{s.gap:.4%}"
    key_figures = html.facts(
        [
            ("status", s.status),
            ("welfare", f"{s.welfare_eur:.4f} EUR"),
            ("proven bound", f"{html.number(s.bound_eur, 4)} EUR (gap {gap})"),
            ("orders / trades", f"{s.n_orders} / {s.n_trades}"),
            ("traded", f"{s.traded_kwh:.3f} kWh"),
            ("formulation", f"{s.formulation} ({s.solver} {s.solver_version})"),
            ("runtime", f"{s.runtime_s:.2f} s"),
            ("grid secure (AC)", _secure_text(folder)),
        ]
    )
    table = facts.table
    slots: list[int] = table.index.to_numpy(dtype=np.int64).tolist()
    chart = draw_slot_volumes(
        slots,
        folder.orders,
        folder.trades,
        dict(zip(slots, table.welfare_eur.to_numpy(dtype=float).tolist(), strict=True)),
        set(facts.constrained),
    )
    figure = html.image(
        png_data_uri(chart),
        "energy bid, offered and traded per slot, and welfare per slot",
        "Per slot: kWh bid, offered and traded (top), welfare of the trades (bottom)."
        + (" Shaded: slots the grid constrained." if facts.constrained else ""),
    )
    header = [
        "slot",
        "buy orders",
        "sell orders",
        "bid kWh",
        "offered kWh",
        "trades",
        "traded kWh",
        "mean price EUR/kWh",
        "welfare EUR",
        "solver",
        "grid",
    ]
    rows = []
    for slot, row in _records(table).items():
        rows.append(
            [
                str(slot),
                str(int(row["n_buy"])),
                str(int(row["n_sell"])),
                html.number(float(row["buy_kwh"])),
                html.number(float(row["sell_kwh"])),
                str(int(row["n_trades"])),
                html.number(float(row["traded_kwh"])),
                html.number(float(row["mean_price"]), 4),
                html.number(float(row["welfare_eur"]), 4),
                str(row["termination"]),
                _slot_grid_text(folder, slot),
            ]
        )
    totals = html.table(header, rows, text_columns=(9, 10), scroll=True)
    return html.section(
        "overview", "Clearing", key_figures + figure + html.heading("Per-slot totals") + totals
    )


def slots_section(
    folder: ResultFolder,
    facts: SlotFacts,
    detail_slots: Sequence[int],
    initial: int,
    network: DrawableNetwork | None,
    network_notes: Sequence[str],
) -> str:
    """One panel per chosen slot: supply and demand curves and the network map."""
    scale = grid_scale(folder.grid) if network is not None and folder.grid is not None else None
    intro = html.paragraph(
        "Supply and demand from "
        f"{ORDERS_FILE} (limit prices and fills), and the grid after the slot's trades from "
        f"{GRID_FILE} (the clearing's own final AC power flow). "
        "Slots outlined in red were constrained by the grid."
    )
    notes = "".join(html.note(n) for n in network_notes)
    panels = []
    for slot in detail_slots:
        panels.append(html.slot_panel(slot, _slot_panel_body(folder, facts, slot, network, scale)))
    picker = html.slot_picker(detail_slots, initial, set(facts.constrained))
    return html.section("slots", "Slots", intro + notes + picker + "".join(panels))


def security_section(folder: ResultFolder, facts: SlotFacts) -> str:
    """Describe the secure clearing: rounds, power flows, cost, binding elements."""
    s = folder.summary
    if s.secure is None or folder.grid is None or facts.extremes is None:
        return html.section(
            "security",
            "Grid security",
            html.note(
                "Not checked: the scenario has security.enabled: false, so the trades were "
                "never run through an AC power flow."
            ),
        )
    price_share = (
        f" ({s.price_of_security_eur / s.unconstrained_welfare_eur:.2%} of the unconstrained)"
        if s.price_of_security_eur is not None and s.unconstrained_welfare_eur
        else ""
    )
    summary_table = html.facts(
        [
            ("secure (final AC check of every traded slot)", _secure_text(folder)),
            ("security rounds (matching again with grid rows)", html.number(s.security_iterations)),
            ("AC power flows", str(s.ac_power_flows)),
            ("welfare without the grid", f"{html.number(s.unconstrained_welfare_eur, 4)} EUR"),
            ("welfare, secure", f"{s.welfare_eur:.4f} EUR"),
            ("price of security", f"{html.number(s.price_of_security_eur, 4)} EUR{price_share}"),
            ("insecure without the grid", _slot_list(s.unconstrained_insecure_slots or ())),
            ("secured by dropping trades (fallback)", _slot_list(s.fallback_slots or ())),
            ("insecure after clearing", _slot_list(s.insecure_slots or ())),
            ("max line loading", f"{html.number(s.max_line_loading_percent, 2)} %"),
            ("max trafo loading", f"{html.number(s.max_trafo_loading_percent, 2)} %"),
            (
                "voltage range",
                f"{html.number(s.vm_min_pu, 4)} – {html.number(s.vm_max_pu, 4)} pu",
            ),
        ]
    )
    chart = html.image(
        png_data_uri(draw_security(facts.extremes, folder.grid)),
        "worst loading and voltage range per traded slot, without and with trades",
        "Per traded slot (from grid.csv): the worst line and transformer loading and the "
        "lowest and highest bus voltage, without trades (grey, dotted) and with the accepted "
        "trades (red); dashed black lines are the limits. A value beyond a limit is allowed "
        "only where the slot was already there without trades, and no worse.",
    )
    grid = folder.grid
    binding = grid[grid.binding]
    violated = grid[grid.violated]
    body = summary_table + chart
    body += html.heading(f"Binding security rows ({len(binding)})")
    if binding.empty:
        body += html.paragraph("No element's security row limited the final trades.")
    else:
        body += html.paragraph(
            "Elements whose linearised security row limited the trades of their slot."
        )
        body += _grid_rows_table(binding)
    body += html.heading(f"Elements outside their limits after the trades ({len(violated)})")
    if violated.empty:
        body += html.paragraph(
            "None: every line, transformer and bus is within its limit, or no worse than "
            "without the trades."
        )
    else:
        body += _grid_rows_table(violated)
    return html.section("security", "Grid security", body)


def trades_section(folder: ResultFolder) -> str:
    """List the trades of trades.csv as they are."""
    trades = folder.trades
    shown = trades.head(MAX_TRADE_ROWS)
    trade_columns = columns(TradeRow)
    text_columns = [k for k, c in enumerate(trade_columns) if c.endswith("_id")]
    digits = {"quantity_kwh": 3, "welfare_eur": 5}
    rows = []
    for record in shown[list(trade_columns)].itertuples(index=False):
        cells = []
        for column, value in zip(trade_columns, record, strict=True):
            if isinstance(value, float):
                cells.append(html.number(value, digits.get(column, 4)))
            else:
                cells.append(str(value))
        rows.append(cells)
    body = html.paragraph(
        f"{len(trades)} trades from {TRADES_FILE} (prices and fees in EUR/kWh, energy in kWh, "
        "welfare in EUR; full precision in the file)."
    )
    if len(trades) > len(shown):
        body += html.note(f"Only the first {len(shown)} of {len(trades)} trades are shown.")
    if rows:
        body += html.table(list(trade_columns), rows, text_columns=text_columns, scroll=True)
    return html.section("trades", "Trades", body)


def _slot_panel_body(
    folder: ResultFolder,
    facts: SlotFacts,
    slot: int,
    network: DrawableNetwork | None,
    scale: GridScale | None,
) -> str:
    row = facts.row(slot)
    title = (
        f"Slot {slot}: {int(row['n_buy'])} buy and {int(row['n_sell'])} sell orders, "
        f"{int(row['n_trades'])} trades, {float(row['traded_kwh']):.3f} kWh, "
        f"welfare {float(row['welfare_eur']):.4f} EUR"
    )
    orders = folder.orders[folder.orders.slot == slot]
    trades = folder.trades[folder.trades.slot == slot]
    figures = [
        html.image(
            png_data_uri(draw_market_curves(orders, trades, slot)),
            f"supply and demand curves of slot {slot}",
            "Bids sorted by limit price descending, offers ascending; thick: the filled part "
            "of each order; dashed: the accepted volume, diamond: its mean price.",
            css_class="market-curves",
        )
    ]
    grid = folder.grid
    if network is not None and scale is not None and grid is not None:
        rows = grid[grid.slot == slot]
        if rows.empty:
            figures.append(
                html.paragraph("No trades in this slot: the grid was not checked, no map.")
            )
        else:
            figures.append(
                html.image(
                    png_data_uri(draw_slot_network(network, rows, scale)),
                    f"network of slot {slot}: line loading and bus voltage after the trades",
                    _map_caption(facts, slot, network),
                    css_class="network-map",
                )
            )
    return html.heading(title) + f'<div class="figures">{"".join(figures)}</div>'


def _map_caption(facts: SlotFacts, slot: int, network: DrawableNetwork) -> str:
    caption = "Lines (and transformers) coloured by loading, buses by voltage, after the trades."
    e = facts.extreme(slot)
    if e is not None:
        caption += (
            f" Worst line {html.number(float(e['line_max_after']), 2)} % "
            f"(without trades {html.number(float(e['line_max_before']), 2)} %); voltages "
            f"{html.number(float(e['vm_min_after']), 4)} – "
            f"{html.number(float(e['vm_max_after']), 4)} pu."
        )
    if network.generic_layout:
        caption += " Generic tree layout (the network has no coordinates)."
    return caption


def _grid_rows_table(rows: pd.DataFrame) -> str:
    shown = rows.head(MAX_GRID_ROWS)
    header = ["slot", "element", "index", "quantity", "before", "after", "limit low", "limit high"]
    cells = [
        [
            str(r["slot"]),
            str(r["element"]),
            str(r["index"]),
            str(r["quantity"]),
            *(html.number(float(r[c]), 4) for c in ("before", "after", "limit_low", "limit_high")),
        ]
        for r in shown.to_dict("records")
    ]
    markup = html.table(header, cells, text_columns=(1, 3), scroll=True)
    if len(rows) > len(shown):
        markup += html.note(f"Only the first {len(shown)} of {len(rows)} rows; see {GRID_FILE}.")
    return markup


def _records(frame: pd.DataFrame) -> dict[int, dict[str, Any]]:
    """Rows of a frame indexed by slot, as plain dicts by slot."""
    slots: list[int] = frame.index.to_numpy(dtype=np.int64).tolist()
    records: list[dict[str, Any]] = frame.to_dict("records")  # type: ignore[assignment]
    return dict(zip(slots, records, strict=True))


def _secure_text(folder: ResultFolder) -> str:
    s = folder.summary
    if s.secure is None:
        return "not checked (security.enabled: false)"
    if s.secure:
        return (
            f"yes ({s.ac_power_flows} power flows, {html.number(s.security_iterations)} "
            "security rounds)"
        )
    return f"NO: slots {_slot_list(s.insecure_slots or ())}"


def _slot_grid_text(folder: ResultFolder, slot: int) -> str:
    s = folder.summary
    if s.secure is None:
        return "not checked"
    marks = []
    if slot in (s.unconstrained_insecure_slots or ()):
        marks.append("constrained")
    if slot in (s.fallback_slots or ()):
        marks.append("fallback")
    if slot in (s.insecure_slots or ()):
        marks.append("INSECURE")
    return ", ".join(marks)


def _slot_list(slots: Sequence[int]) -> str:
    return ", ".join(str(s) for s in slots) if slots else "none"
