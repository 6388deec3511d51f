"""The report of a DER validation folder (``gridmatch validate-commitments ... --report``).

One self-contained HTML page like the clearing report (inline PNG charts, no external
URL), built only from the folder's files through ``results_io.der_validation``: the
counts per verdict and device type, delivered against committed energy, for the
commitments that were not validated (up to :data:`MAX_CHARTS`) the net power around
the window as the detected steps describe it, and every verdict with its evidence.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import matplotlib.dates as mdates
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from gridmatch.report import markup as html
from gridmatch.report.png import new_figure, png_data_uri
from gridmatch.results_io.atomic import claim_file, write_file_atomically
from gridmatch.results_io.der_validation import (
    EVENTS_FILE,
    VERDICTS_FILE,
    EventRow,
    Verdict,
    VerdictRow,
    read_der_events,
    read_der_summary,
    read_verdicts,
)
from gridmatch.results_io.layout import REPORT_FILE

MAX_CHARTS = 12
MAX_ROWS = 2000
_COLOURS = {
    Verdict.VALIDATED: "#1b7f2a",
    Verdict.PARTIALLY_DELIVERED: "#f0a04b",
    Verdict.WRONG_DEVICE: "#8e44ad",
    Verdict.WRONG_INTERVAL: "#2e86c1",
    Verdict.NOT_DELIVERED: "#c0392b",
    Verdict.INSUFFICIENT_DATA: "#9e9e9e",
}


@dataclass(frozen=True)
class DerReportInfo:
    """What :func:`build_der_report` wrote."""

    path: Path
    size_bytes: int
    n_commitments: int
    charted: tuple[str, ...]

    @property
    def headline(self) -> str:
        """One line for the terminal: what the report covers and its size."""
        return (
            f"DER validation report of {self.n_commitments} commitments, "
            f"{self.size_bytes / 1e6:.2f} MB"
        )


def build_der_report(out_dir: Path) -> DerReportInfo:
    """Write ``OUT_DIR/report.html`` for an output folder of ``gridmatch validate-commitments``.

    Raises
    ------
    gridmatch.errors.InputError
        Not a validation output folder, or one of its files missing or malformed.
    """
    summary = read_der_summary(out_dir)
    verdicts = read_verdicts(out_dir)
    events = read_der_events(out_dir)
    by_commitment: dict[str, list[EventRow]] = defaultdict(list)
    for event in events:
        by_commitment[event.commitment_id].append(event)
    charted = [r for r in verdicts if r.verdict is not Verdict.VALIDATED][:MAX_CHARTS]
    facts = html.facts(
        [
            ("commitments", str(summary.n_commitments)),
            *((verdict, str(n)) for verdict, n in summary.verdicts.items()),
            (
                "committed / validated",
                f"{summary.committed_kwh:.3f} / {summary.validated_kwh:.3f} kWh",
            ),
            (
                "event-model library",
                f"version {summary.models_version}: {', '.join(summary.models)}",
            ),
            ("meters", str(len(summary.meters))),
        ]
    )
    device_rows = [
        [device, *(str(counts.get(v.value, 0)) for v in Verdict)]
        for device, counts in sorted(summary.by_device.items())
    ]
    devices = html.table(
        ["device type", *(v.value for v in Verdict)], device_rows, text_columns=(0,)
    )
    overview = html.section(
        "overview",
        "DER commitment validation",
        facts
        + devices
        + html.image(
            png_data_uri(_energy_chart(verdicts)),
            "delivered against committed energy",
            "Delivered against committed energy per commitment, coloured by verdict "
            "(the diagonal is delivery as committed).",
        ),
    )
    parts = []
    for row in charted:
        parts.append(html.heading(f"{row.commitment_id}: {row.verdict.value}"))
        parts.append(html.paragraph(row.detail))
        parts.append(
            html.image(
                png_data_uri(_window_chart(row, by_commitment.get(row.commitment_id, []))),
                f"net power around commitment {row.commitment_id}",
                "Net power (p_kw > 0 is import) as the detected steps give it; the committed "
                "window shaded, the matched device's delivery between the dashed lines.",
            )
        )
    windows = ""
    if parts:
        note = (
            html.note(f"The first {MAX_CHARTS} commitments that were not validated.")
            if len(charted) == MAX_CHARTS
            else ""
        )
        windows = html.section("windows", "Commitments not validated", note + "".join(parts))
    table_rows = [
        [
            r.commitment_id,
            r.meter_id,
            r.device_type,
            r.operation,
            r.start,
            r.end,
            html.number(r.committed_kwh),
            html.number(r.delivered_kwh),
            r.verdict.value,
            r.matched_model,
            html.number(r.matched_score, 2),
            html.number(r.coverage, 2),
            r.detail,
        ]
        for r in verdicts[:MAX_ROWS]
    ]
    more = (
        html.note(f"The first {MAX_ROWS} of {len(verdicts)} commitments; {VERDICTS_FILE} has all.")
        if len(verdicts) > MAX_ROWS
        else ""
    )
    table = html.table(
        [
            "commitment",
            "meter",
            "device",
            "operation",
            "start",
            "end",
            "committed kWh",
            "delivered kWh",
            "verdict",
            "matched model",
            "score",
            "coverage",
            "evidence",
        ],
        table_rows,
        text_columns=(0, 1, 2, 3, 4, 5, 8, 9, 12),
        scroll=True,
    )
    body = overview + windows + html.section("verdicts", "Verdicts", more + table)
    document = html.page(
        f"gridmatch DER validation report: {summary.name}",
        f"output folder {out_dir.resolve()} · {summary.n_commitments} commitments",
        body,
        f"Written by `gridmatch report` from {VERDICTS_FILE}, {EVENTS_FILE} and summary.json.",
    )
    path = out_dir / REPORT_FILE
    claim_file(path)
    write_file_atomically(path, document)
    return DerReportInfo(
        path, path.stat().st_size, len(verdicts), tuple(r.commitment_id for r in charted)
    )


def _energy_chart(rows: list[VerdictRow]) -> Figure:
    figure = new_figure(6.0, 4.0)
    figure.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.96)
    axes = figure.subplots()
    top = 0.0
    for verdict in Verdict:
        chosen = [r for r in rows if r.verdict is verdict and math.isfinite(r.delivered_kwh)]
        if not chosen:
            continue
        x = [r.committed_kwh for r in chosen]
        y = [r.delivered_kwh for r in chosen]
        top = max(top, *x, *y)
        axes.scatter(x, y, s=18, color=_COLOURS[verdict], label=verdict.value)
    axes.plot([0, top or 1.0], [0, top or 1.0], color="k", linewidth=0.8)
    axes.set_xlabel("committed kWh")
    axes.set_ylabel("delivered kWh")
    axes.grid(alpha=0.3)
    if top:
        axes.legend(fontsize="small")
    return figure


_FIRST_DAY = float(mdates.date2num(datetime(1, 1, 1, 0, 0, 1)))
_LAST_DAY = float(mdates.date2num(datetime(9999, 12, 31, 23, 59, 59)))


def _local(text: str) -> datetime:
    """Return the clock time as written (in the commitment's own offset), for the axis."""
    return datetime.fromisoformat(text).replace(tzinfo=None)


def _window_chart(row: VerdictRow, events: list[EventRow]) -> Figure:
    """Net power as piecewise-constant levels between the detected steps."""
    figure = new_figure(9.0, 2.6)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.2, top=0.95)
    axes = figure.subplots()
    start, end = _local(row.start), _local(row.end)
    axes.axvspan(mdates.date2num(start), mdates.date2num(end), color="#d5f5e3", alpha=0.8)
    times = [_local(e.time) for e in events]
    for k, event in enumerate(events):
        at = mdates.date2num(times[k])
        until = mdates.date2num(times[k + 1]) if k + 1 < len(events) else at + 1 / 48
        before_from = mdates.date2num(times[k - 1]) if k else at - 1 / 48
        if k == 0:
            axes.hlines(event.level_before_kw, before_from, at, color="#1f4e79")
        axes.hlines(event.level_after_kw, at, until, color="#1f4e79")
        axes.vlines(at, event.level_before_kw, event.level_after_kw, color="#1f4e79")
    for text in (row.event_start, row.event_end):
        if text:
            axes.axvline(mdates.date2num(_local(text)), color="k", linestyle="--")
    # Matplotlib's dates end at years 1 and 9999: a window at either end keeps its
    # axis (and the autoscale's margins) inside them.
    low, high = axes.get_xlim()
    axes.set_xlim(max(low, _FIRST_DAY), min(high, _LAST_DAY))
    axes.set_ylabel("kW")
    axes.grid(alpha=0.3)
    axes.xaxis.set_major_formatter(FuncFormatter(_clock))
    return figure


def _clock(day: float, _position: int | None = None) -> str:
    """Label a tick ``day hh:mm``; none for a tick the locator put past year 9999."""
    if not _FIRST_DAY <= day <= _LAST_DAY:
        return ""
    return str(mdates.num2date(day).strftime("%d %H:%M"))
