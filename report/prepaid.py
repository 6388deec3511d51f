"""The report of a prepaid output folder (``gridmatch prepaid ... --report``).

One self-contained HTML page like the clearing report (inline PNG charts, no external
URL), built only from the folder's files through
:func:`gridmatch.prepaid.timeline.read_prepaid_view`: per meter the balance and the
available credit over time with the meter's state shaded (warning, emergency, friendly,
overdrawn, disconnected) and cutoffs and reconnections marked, and demand against what
was supplied; the totals per meter; the events.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gridmatch.prepaid.timeline import PrepaidView, read_prepaid_view
from gridmatch.report import markup as html
from gridmatch.report.png import new_figure, png_data_uri
from gridmatch.results_io.atomic import claim_file, write_file_atomically
from gridmatch.results_io.layout import REPORT_FILE
from gridmatch.results_io.prepaid import EVENTS_FILE, EventKind, MeterState
from gridmatch.units import MICRO_EUR_PER_EUR, WH_PER_KWH

# A chart per meter up to this many (the most disconnected first); the timelines hold all.
MAX_METER_CHARTS = 12
MAX_EVENT_ROWS = 2000
_STATE_COLOURS = {
    MeterState.WARNING.value: "#f7dc6f",
    MeterState.EMERGENCY.value: "#f0a04b",
    MeterState.FRIENDLY.value: "#b39ddb",
    MeterState.OVERDRAWN.value: "#e57373",
    MeterState.DISCONNECTED.value: "#9e9e9e",
}


@dataclass(frozen=True)
class PrepaidReportInfo:
    """What :func:`build_prepaid_report` wrote, and which meters got a chart."""

    path: Path
    size_bytes: int
    charted: tuple[str, ...]

    @property
    def headline(self) -> str:
        """One line for the terminal: what the report covers and its size."""
        return f"prepaid report of {len(self.charted)} meters, {self.size_bytes / 1e6:.2f} MB"


def build_prepaid_report(out_dir: Path) -> PrepaidReportInfo:
    """Write ``OUT_DIR/report.html`` for an output folder of ``gridmatch prepaid``.

    Raises
    ------
    gridmatch.errors.InputError
        Not a prepaid output folder, or one of its files missing or malformed.
    """
    view = read_prepaid_view(out_dir)
    charted = _charted_meters(view)
    body = _overview(view) + _meters_section(view, charted) + _events_section(view)
    summary = view.summary
    document = html.page(
        f"gridmatch prepaid report: {summary.name}",
        f"output folder {out_dir.resolve()} · {summary.start} to {summary.end} "
        f"({summary.timezone}) · reports every {summary.report_interval_min} min",
        body,
        escape(
            "Written by `gridmatch prepaid --report` from the folder's files. Money in the "
            "CSV files is whole micro-EUR; charts show EUR."
        ),
    )
    path = out_dir / REPORT_FILE
    claim_file(path)
    write_file_atomically(path, document)
    return PrepaidReportInfo(path, path.stat().st_size, tuple(charted))


def _eur(micro_eur: int) -> str:
    return f"{micro_eur / MICRO_EUR_PER_EUR:.2f}"


def _charted_meters(view: PrepaidView) -> list[str]:
    ranked = sorted(
        enumerate(view.summary.meters),
        key=lambda item: (-item[1].disconnections, -item[1].unserved_wh, item[0]),
    )
    chosen = {meter.meter_id for _, meter in ranked[:MAX_METER_CHARTS]}
    return [m.meter_id for m in view.summary.meters if m.meter_id in chosen]


def _overview(view: PrepaidView) -> str:
    s = view.summary
    facts = html.facts(
        [
            ("meters", str(s.n_meters)),
            (
                "balances at start / end",
                f"{_eur(s.start_balance_micro_eur)} / {_eur(s.end_balance_micro_eur)} EUR",
            ),
            ("top-ups / billed", f"{_eur(s.topups_micro_eur)} / {_eur(s.billed_micro_eur)} EUR"),
            ("conserved (start + top-ups - billed = end)", "yes" if s.conserved else "NO"),
            (
                "supplied / unserved",
                f"{s.supplied_wh / WH_PER_KWH:.3f} / {s.unserved_wh / WH_PER_KWH:.3f} kWh",
            ),
            ("disconnections / reconnections", f"{s.disconnections} / {s.reconnections}"),
            ("tokens issued / refused", f"{s.tokens_issued} / {s.tokens_refused}"),
            ("token scheme", f"{s.token_scheme}; 1 unit = {s.token_unit_wh} Wh"),
            (
                "tariff (micro-EUR per kWh)",
                ", ".join(f"{band} {price}" for band, price in s.tariff_micro_eur_per_kwh.items()),
            ),
        ]
    )
    header = [
        "meter",
        "participant",
        "start EUR",
        "top-ups EUR",
        "billed EUR",
        "end EUR",
        "supplied kWh",
        "unserved kWh",
        "cutoffs",
        "reconnections",
        "hours off",
        "tokens",
        "refused",
        "reports lost / late",
    ]
    rows = [
        [
            m.meter_id,
            m.participant_id,
            _eur(m.start_balance_micro_eur),
            _eur(m.topups_micro_eur),
            _eur(m.billed_energy_micro_eur + m.billed_standing_micro_eur),
            _eur(m.end_balance_micro_eur),
            f"{m.supplied_wh / WH_PER_KWH:.3f}",
            f"{m.unserved_wh / WH_PER_KWH:.3f}",
            str(m.disconnections),
            str(m.reconnections),
            f"{m.minutes_disconnected / 60:.1f}",
            str(m.tokens_issued),
            str(m.tokens_refused),
            f"{m.reports_lost} / {m.reports_late}",
        ]
        for m in s.meters
    ]
    table = html.table(header, rows, text_columns=(0, 1), scroll=True)
    return html.section("overview", "Prepaid accounts", facts + table)


def _meters_section(view: PrepaidView, charted: list[str]) -> str:
    parts = [
        html.paragraph(
            "Balance (the prepaid credit; below zero the emergency credit is in use) and "
            "available credit (balance plus emergency credit: at or below zero the meter is "
            "cut off, outside friendly-credit hours) after each report; shaded by the "
            "meter's state; below, what the customer demanded and what the meter supplied."
        )
    ]
    if len(charted) < len(view.summary.meters):
        parts.append(
            html.note(
                f"Charts for {len(charted)} of {len(view.summary.meters)} meters (most cutoffs "
                "first); every meter's timeline is in timelines/."
            )
        )
    events = view.events
    for meter_id in charted:
        figure = draw_meter(
            view.timelines[meter_id], events[events.meter_id == meter_id], view.summary.timezone
        )
        parts.append(html.heading(meter_id))
        parts.append(
            html.image(
                png_data_uri(figure),
                f"balance, available credit and state of meter {meter_id}",
                "Red triangles: cutoffs; green: reconnections. Shading: "
                "yellow warning, orange emergency credit, violet friendly credit, "
                "red overdrawn (no contact), grey disconnected.",
            )
        )
    return html.section("meters", "Meters", "".join(parts))


def draw_meter(timeline: pd.DataFrame, events: pd.DataFrame, timezone: str) -> Figure:
    """Draw one meter's balance, available credit and state, and its demand and supply."""
    times = timeline.time.dt.tz_convert(timezone).dt.tz_localize(None)
    x = mdates.date2num(times.to_numpy())
    figure = new_figure(10.0, 4.6)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.97, hspace=0.08)
    money, energy = figure.subplots(2, 1, sharex=True, height_ratios=(2.0, 1.0))
    states = timeline.state.to_numpy()
    for start, end, state in _runs(x, states):
        colour = _STATE_COLOURS.get(state)
        if colour is not None:
            money.axvspan(start, end, color=colour, alpha=0.45, linewidth=0)
    money.step(x, timeline.balance_eur, where="post", color="#1f4e79", label="balance")
    money.step(
        x,
        timeline.available_credit_eur,
        where="post",
        color="#2e86c1",
        linestyle="--",
        label="available credit",
    )
    money.axhline(0.0, color="k", linewidth=0.8)
    for kind, marker, colour in (
        (EventKind.DISCONNECTED.value, "v", "#c0392b"),
        (EventKind.RECONNECTED.value, "^", "#1b7f2a"),
    ):
        chosen = events[events.event == kind]
        if len(chosen):
            when = pd.to_datetime(pd.Series(chosen.time.tolist()), utc=True)
            local = mdates.date2num(when.dt.tz_convert(timezone).dt.tz_localize(None).to_numpy())
            money.plot(
                local,
                chosen.balance_micro_eur / MICRO_EUR_PER_EUR,
                marker,
                color=colour,
                markersize=9,
                linestyle="none",
                label=kind,
            )
    money.set_ylabel("EUR")
    money.grid(alpha=0.3)
    money.legend(fontsize="small", loc="upper right")
    width = float(np.median(np.diff(x))) if len(x) > 1 else 1.0 / 24
    energy.bar(x, timeline.demand_kwh, width=-width, align="edge", color="#d5d8dc", label="demand")
    energy.bar(
        x, timeline.supplied_kwh, width=-width, align="edge", color="#5d6d7e", label="supplied"
    )
    energy.set_ylabel("kWh")
    energy.grid(alpha=0.3)
    energy.legend(fontsize="small", loc="upper right")
    energy.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %H:%M"))
    return figure


def _runs(x: np.ndarray, states: np.ndarray) -> list[tuple[float, float, str]]:
    """Contiguous stretches of one state: (from, to, state), each until the next row."""
    runs: list[tuple[float, float, str]] = []
    if len(x) == 0:
        return runs
    begin = 0
    for i in range(1, len(x) + 1):
        if i == len(x) or states[i] != states[begin]:
            end = x[i] if i < len(x) else x[-1]
            runs.append((float(x[begin]), float(end), str(states[begin])))
            begin = i
    return runs


def _events_section(view: PrepaidView) -> str:
    events = view.events
    shown = events.head(MAX_EVENT_ROWS)
    header = ["time", "meter", "event", "balance EUR", "amount EUR", "limit Wh", "token", "detail"]
    columns = {name: shown[name].tolist() for name in shown.columns}
    rows = [
        [
            str(columns["time"][i]),
            str(columns["meter_id"][i]),
            str(columns["event"][i]),
            _eur(int(columns["balance_micro_eur"][i])),
            _eur(int(columns["amount_micro_eur"][i])),
            str(int(columns["limit_wh"][i])),
            str(columns["token"][i]),
            str(columns["detail"][i]),
        ]
        for i in range(len(shown))
    ]
    note = (
        html.note(f"The first {MAX_EVENT_ROWS} of {len(events)} events; {EVENTS_FILE} has all.")
        if len(events) > MAX_EVENT_ROWS
        else ""
    )
    table = html.table(header, rows, text_columns=(0, 1, 2, 6, 7), scroll=True)
    return html.section("events", "Events", note + table)
