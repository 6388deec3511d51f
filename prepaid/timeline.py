"""Per-meter timeline data of a prepaid output folder, ready to plot or tabulate.

Read through :mod:`gridmatch.results_io.prepaid` (every cell validated), one pandas
frame per meter: the columns of :class:`~gridmatch.results_io.prepaid.TimelineRow`
with ``time`` as time-zone-aware timestamps, plus EUR floats of the money columns for
axes (``balance_eur``, ``available_credit_eur``) and kWh of the energy ones. The
integer micro-EUR columns stay the exact record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from gridmatch.errors import InputError
from gridmatch.results_io.prepaid import (
    EVENTS_FILE,
    EventRow,
    PrepaidSummary,
    TimelineRow,
    is_prepaid_result,
    read_prepaid_events,
    read_prepaid_summary,
    read_prepaid_timeline,
    timeline_file,
)
from gridmatch.results_io.tables import to_frame
from gridmatch.scenario_io.prepaid_input import EARLIEST, LATEST, TIME_RANGE
from gridmatch.units import MICRO_EUR_PER_EUR, WH_PER_KWH


@dataclass(frozen=True)
class PrepaidView:
    """A prepaid output folder as frames: the summary, timelines by meter, the events."""

    directory: Path
    summary: PrepaidSummary
    timelines: dict[str, pd.DataFrame]
    events: pd.DataFrame


def timeline_frame(rows: Sequence[TimelineRow]) -> pd.DataFrame:
    """One meter's timeline rows as a frame with parsed times and EUR/kWh helper columns."""
    frame = to_frame(TimelineRow, rows)
    frame["time"] = pd.to_datetime(pd.Series([r.time for r in rows], dtype=object), utc=True)
    frame["balance_eur"] = frame.current_credit_amount_micro_eur / MICRO_EUR_PER_EUR
    frame["available_credit_eur"] = frame.available_credit_micro_eur / MICRO_EUR_PER_EUR
    frame["demand_kwh"] = frame.demand_wh / WH_PER_KWH
    frame["supplied_kwh"] = frame.supplied_wh / WH_PER_KWH
    return frame


def check_times(path: Path, times: Sequence[str]) -> None:
    """Refuse a ``time`` cell that is not ISO-8601 with an offset within the time axis.

    ``gridmatch prepaid`` writes times of :data:`~gridmatch.scenario_io.prepaid_input.TIME_RANGE`
    only; a folder edited by hand could hold others, which pandas' nanosecond time axis
    (1677 to 2262) cannot hold.

    Raises
    ------
    InputError
        Naming the file, row (header = row 1) and field ``time``.
    """
    for row, text in enumerate(times, start=2):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InputError(
                path, f"'{text[:40]}' is not an ISO-8601 time", row=row, field="time"
            ) from None
        if moment.utcoffset() is None:
            raise InputError(path, f"'{text}' has no UTC offset", row=row, field="time")
        if not EARLIEST <= moment <= LATEST:
            raise InputError(path, f"{text} is outside {TIME_RANGE}", row=row, field="time")


def read_prepaid_view(folder: Path) -> PrepaidView:
    """Read a whole prepaid output folder: summary, every meter's timeline, events.

    Raises
    ------
    InputError
        Not a prepaid output folder, or a file of it missing or malformed (file, row,
        field named).
    """
    if not is_prepaid_result(folder):
        raise InputError(folder, "not an output folder of `gridmatch prepaid` (no timelines/)")
    summary = read_prepaid_summary(folder)
    timelines = {}
    for meter in summary.meters:
        rows = read_prepaid_timeline(folder, meter.meter_id)
        check_times(timeline_file(folder, meter.meter_id), [r.time for r in rows])
        timelines[meter.meter_id] = timeline_frame(rows)
    event_rows = read_prepaid_events(folder)
    check_times(folder / EVENTS_FILE, [e.time for e in event_rows])
    events = to_frame(EventRow, event_rows)
    return PrepaidView(folder, summary, timelines, events)
