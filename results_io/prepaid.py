"""The output folder of ``gridmatch prepaid``: its layout, typed rows, summary, writer, readers.

::

    OUT/summary.json              totals per meter and overall (PrepaidSummary)
    OUT/events.csv                every cutoff, reconnection, warning, token, top-up, report
    OUT/timelines/<meter_id>.csv  one row per report instant (TimelineRow)
    OUT/manifest.json             input hashes, versions, settings
    [OUT/report.html]             ``gridmatch prepaid --report``

Written atomically like a result folder (a staging folder renamed into place, see
:mod:`~gridmatch.results_io.atomic`), through the same typed tables
(:mod:`~gridmatch.results_io.tables`): the columns are the fields of the row classes.
Money is in whole micro-EUR (``*_micro_eur``, exact integers), energy in whole Wh.
The words of the state columns are named after DLMS/COSEM's Account (class 111), Credit
(class 112) and Disconnect control (class 70) objects; that is naming, not an
implementation of COSEM.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import pydantic

from gridmatch.results_io.atomic import atomic_output_dir
from gridmatch.results_io.layout import MANIFEST_FILE, SUMMARY_FILE
from gridmatch.results_io.outputs import read_output_file, read_output_summary
from gridmatch.results_io.tables import NONEMPTY, from_csv, to_csv

EVENTS_FILE = "events.csv"
TIMELINES_DIR = "timelines"


class ControlState(StrEnum):
    """The meter's switch, as Disconnect control's ``control_state`` (class 70)."""

    DISCONNECTED = "disconnected"
    CONNECTED = "connected"
    READY_FOR_RECONNECTION = "ready_for_reconnection"


class CreditStatus(StrEnum):
    """A credit's status, as Credit's ``credit_status`` (class 112).

    The token credit (the prepaid balance) is ``in_use`` while the balance is above zero,
    else ``exhausted``; the emergency credit is ``selectable`` while unused, ``in_use``
    while the balance is at or below zero and credit is left, else ``exhausted``.
    """

    SELECTABLE = "selectable"
    IN_USE = "in_use"
    EXHAUSTED = "exhausted"


class MeterState(StrEnum):
    """What a timeline row says about the customer after a report instant.

    ``connected``: balance above the low-credit threshold; ``warning``: at or below it and
    above zero; ``emergency``: running on emergency credit; ``friendly``: credit exhausted,
    still connected because of friendly-credit hours; ``overdrawn``: credit exhausted,
    still connected because the server could not reach the meter and the meter's own
    limit is not reached yet; ``disconnected``: switched off.
    """

    CONNECTED = "connected"
    WARNING = "warning"
    EMERGENCY = "emergency"
    FRIENDLY = "friendly"
    OVERDRAWN = "overdrawn"
    DISCONNECTED = "disconnected"


class ReportStatus(StrEnum):
    """What happened to a meter's report of an instant."""

    COMMISSIONING = "commissioning"  # instant 0: no usage yet, server and meter in contact
    DELIVERED = "delivered"
    LATE = "late"  # reached the server at a later instant (see events.csv)
    LOST = "lost"
    CLOSING = "closing"  # the last instant: a closing read, always billed


class EventKind(StrEnum):
    """Rows of events.csv."""

    TOKEN_ISSUED = "token_issued"
    TOKEN_ACCEPTED = "token_accepted"
    TOKEN_REFUSED = "token_refused"
    TOPUP = "topup"
    LOW_CREDIT_WARNING = "low_credit_warning"
    EMERGENCY_CREDIT_IN_USE = "emergency_credit_in_use"
    CREDIT_EXHAUSTED = "credit_exhausted"
    CUTOFF_DEFERRED = "cutoff_deferred"
    DISCONNECTED = "disconnected"
    RECONNECTED = "reconnected"
    REPORT_LOST = "report_lost"
    REPORT_LATE = "report_late"
    REPORT_STALE = "report_stale"


@dataclass(frozen=True)
class TimelineRow:
    """One report instant of one meter (a row of ``timelines/<meter_id>.csv``).

    Energy columns are the interval that **ends** at ``time``; money and state columns
    are after everything done at ``time`` (billing, top-ups, tokens, switching).

    Attributes
    ----------
    time
        The report instant, ISO-8601 in the simulation's time zone.
    demand_wh, supplied_wh, unserved_wh
        What the customer demanded (usage.csv), what the meter supplied, and the rest
        (demand while disconnected: never billed).
    cost_micro_eur
        The tariff cost of this interval's supplied energy (from the meter's registers).
    billed_micro_eur
        What the server charged at this instant: the energy of every report it received
        then (a late report bills its interval now) and the standing charge.
    current_credit_amount_micro_eur
        The prepaid balance (negative: debt, emergency credit in use).
    emergency_credit_micro_eur
        Emergency credit left.
    available_credit_micro_eur
        Balance plus the emergency credit allowance: cut off at or below zero.
    amount_to_clear_micro_eur
        What a top-up must pay before the balance is above zero again.
    limit_wh
        Wh the meter may still supply before it switches itself off without word from
        the server (its OpenPAYGO limit; negative: overrun in the last interval).
    """

    time: str = field(metadata=NONEMPTY)
    report: ReportStatus
    demand_wh: int
    supplied_wh: int
    unserved_wh: int
    cost_micro_eur: int
    billed_micro_eur: int
    topup_micro_eur: int
    current_credit_amount_micro_eur: int
    emergency_credit_micro_eur: int
    available_credit_micro_eur: int
    amount_to_clear_micro_eur: int
    limit_wh: int
    credit_status: CreditStatus
    emergency_credit_status: CreditStatus
    control_state: ControlState
    state: MeterState


@dataclass(frozen=True)
class EventRow:
    """One row of events.csv, in time order (then meter, then the order things happened).

    Attributes
    ----------
    balance_micro_eur
        The balance right after the event.
    amount_micro_eur
        A top-up's amount, a late report's charge; 0 for other events.
    limit_wh
        The meter's remaining limit after the event (token and switching events).
    token, token_count
        The OpenPAYGO token and its counter (token events; empty and 0 otherwise).
    detail
        Why, in words: the purpose of a token, the reason one was refused, what cut off.
    """

    time: str = field(metadata=NONEMPTY)
    meter_id: str = field(metadata=NONEMPTY)
    event: EventKind
    balance_micro_eur: int
    amount_micro_eur: int
    limit_wh: int
    token: str
    token_count: int
    detail: str


class _Record(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)


class MeterTotals(_Record):
    """One meter's totals over the simulated period.

    ``conserved`` is the exactness check ``start + topups - billed == end`` (to the
    micro-EUR; billed = energy + standing charge), and ``unbilled_wh`` what the meter
    supplied that no charge covers (0 after the closing read).
    """

    meter_id: str
    participant_id: str
    start_balance_micro_eur: int
    topups_micro_eur: int
    billed_energy_micro_eur: int
    billed_standing_micro_eur: int
    end_balance_micro_eur: int
    conserved: bool
    demand_wh: int
    supplied_wh: int
    unserved_wh: int
    unbilled_wh: int
    supplied_by_band_wh: dict[str, int]
    missing_readings: int
    disconnections: int
    reconnections: int
    minutes_disconnected: int
    low_credit_warnings: int
    tokens_issued: int
    tokens_refused: int
    reports_lost: int
    reports_late: int
    reports_stale: int


class PrepaidSummary(_Record):
    """``summary.json`` of a prepaid simulation."""

    kind: Literal["prepaid"] = "prepaid"
    name: str
    start: str
    end: str
    timezone: str
    reading_minutes: int
    report_interval_min: int
    n_reports: int
    tariff_micro_eur_per_kwh: dict[str, int]
    token_scheme: str
    token_unit_wh: int
    n_meters: int
    start_balance_micro_eur: int
    topups_micro_eur: int
    billed_micro_eur: int
    end_balance_micro_eur: int
    conserved: bool
    supplied_wh: int
    unserved_wh: int
    disconnections: int
    reconnections: int
    tokens_issued: int
    tokens_refused: int
    runtime_s: float
    meters: list[MeterTotals]


@dataclass(frozen=True)
class PrepaidResultFiles:
    """Everything a prepaid output folder holds; ``timelines`` by meter id."""

    summary: PrepaidSummary
    timelines: Mapping[str, Sequence[TimelineRow]]
    events: Sequence[EventRow]
    manifest: dict[str, Any]


def timeline_file(folder: Path, meter_id: str) -> Path:
    """Path of a meter's timeline in an output folder (meter ids are file-name safe)."""
    return folder / TIMELINES_DIR / f"{meter_id}.csv"


def _json_text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def write_prepaid_result(out_dir: Path, files: PrepaidResultFiles) -> None:
    """Write a prepaid output folder atomically (every file, or on failure none).

    Raises
    ------
    gridmatch.errors.OutputFolderError
        ``out_dir`` holds files gridmatch did not write.
    """
    with atomic_output_dir(out_dir) as staging:
        (staging / TIMELINES_DIR).mkdir()
        for meter_id, rows in files.timelines.items():
            timeline_file(staging, meter_id).write_text(to_csv(TimelineRow, rows), encoding="utf-8")
        (staging / EVENTS_FILE).write_text(to_csv(EventRow, files.events), encoding="utf-8")
        (staging / SUMMARY_FILE).write_text(
            _json_text(files.summary.model_dump(mode="json")), encoding="utf-8"
        )
        (staging / MANIFEST_FILE).write_text(_json_text(files.manifest), encoding="utf-8")


def is_prepaid_result(folder: Path) -> bool:
    """Whether ``folder`` looks like an output folder of ``gridmatch prepaid``."""
    return (folder / TIMELINES_DIR).is_dir() and (folder / EVENTS_FILE).is_file()


def _read(path: Path) -> str:
    return read_output_file(path, "prepaid")


def read_prepaid_summary(folder: Path) -> PrepaidSummary:
    """Read ``folder/summary.json`` of a prepaid output folder, validated.

    Raises
    ------
    InputError
        Missing, not JSON, or not a prepaid summary (naming the field).
    """
    return read_output_summary(folder, PrepaidSummary, "prepaid", "prepaid summary")


def read_prepaid_events(folder: Path) -> list[EventRow]:
    """Read ``folder/events.csv``, every cell checked (file, row and column in errors)."""
    path = folder / EVENTS_FILE
    return from_csv(EventRow, _read(path), path)


def read_prepaid_timeline(folder: Path, meter_id: str) -> list[TimelineRow]:
    """Read one meter's timeline, every cell checked (file, row and column in errors)."""
    path = timeline_file(folder, meter_id)
    return from_csv(TimelineRow, _read(path), path)
