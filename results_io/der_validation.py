"""The output folder of ``gridmatch validate-commitments``: layout, typed rows, summary, writer.

::

    OUT/verdicts.csv      one row per commitment: verdict and its evidence (VerdictRow)
    OUT/events.csv        the steps detected around each commitment's window (EventRow)
    OUT/summary.json      counts per verdict and device type, the meters' data (DerSummary)
    OUT/manifest.json     input hashes, versions, the event-model library and settings
    [OUT/deliveries.csv]  validated deliveries as settlement's meter CSV (--slot-start)
    [OUT/report.html]     ``gridmatch report OUT``

Written atomically like a result folder (a staging folder renamed into place, see
:mod:`~gridmatch.results_io.atomic`), through the typed tables of
:mod:`~gridmatch.results_io.tables`: the columns are the fields of the row classes.
Powers in kW, energies in kWh, times ISO-8601 with the offset the commitment was given
in; a number that does not apply is ``nan``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import pydantic

from gridmatch.results_io.atomic import atomic_output_dir
from gridmatch.results_io.layout import MANIFEST_FILE, SUMMARY_FILE
from gridmatch.results_io.outputs import read_output_file, read_output_summary
from gridmatch.results_io.tables import ANY_FLOAT, NONEMPTY, from_csv, to_csv

VERDICTS_FILE = "verdicts.csv"
EVENTS_FILE = "events.csv"
DELIVERIES_FILE = "deliveries.csv"


class Verdict(StrEnum):
    """What the meter's data says about a commitment (README: "verdict rules")."""

    VALIDATED = "validated"
    PARTIALLY_DELIVERED = "partially_delivered"
    WRONG_DEVICE = "wrong_device"
    WRONG_INTERVAL = "wrong_interval"
    NOT_DELIVERED = "not_delivered"
    INSUFFICIENT_DATA = "insufficient_data"


@dataclass(frozen=True)
class VerdictRow:
    """One commitment's verdict and its evidence (a row of verdicts.csv).

    Attributes
    ----------
    committed_kwh
        ``committed_kw`` held over the window.
    delivered_kwh, delivered_fraction
        What the matched device delivered inside the window, read by its model (see
        ``der_validation/signatures.py``), and its share of ``committed_kwh``; for
        ``wrong_interval``, what it delivered in the window it did run in.
    baseline_kw, baseline_delivered_kwh
        The pre-event level (mean power before the window, or the same window a day
        earlier) and the energy inside the window relative to it, in the operation's
        direction: a cross-check that does not depend on any model.
    matched_model, matched_score
        The device model that explains the window best (empty if none does) and its
        score; ``committed_score`` is the committed device type's.
    event_start, event_end
        When the matched device's delivery began and ended (empty if unknown).
    event_delta_kw, event_delta_kvar
        Its step in active and reactive power (signed, ``p_kw > 0`` is import).
    coverage
        Share of the window's samples the meter sent.
    """

    commitment_id: str = field(metadata=NONEMPTY)
    meter_id: str = field(metadata=NONEMPTY)
    participant_id: str = field(metadata=NONEMPTY)
    device_type: str = field(metadata=NONEMPTY)
    operation: str = field(metadata=NONEMPTY)
    start: str = field(metadata=NONEMPTY)
    end: str = field(metadata=NONEMPTY)
    committed_kw: float
    committed_kwh: float
    tolerance: float
    verdict: Verdict
    delivered_kwh: float = field(metadata=ANY_FLOAT)
    delivered_fraction: float = field(metadata=ANY_FLOAT)
    baseline_kw: float = field(metadata=ANY_FLOAT)
    baseline_delivered_kwh: float = field(metadata=ANY_FLOAT)
    matched_model: str
    matched_score: float = field(metadata=ANY_FLOAT)
    committed_score: float = field(metadata=ANY_FLOAT)
    event_start: str
    event_end: str
    event_delta_kw: float = field(metadata=ANY_FLOAT)
    event_delta_kvar: float = field(metadata=ANY_FLOAT)
    ramp_kw_per_min: float = field(metadata=ANY_FLOAT)
    period_s: float = field(metadata=ANY_FLOAT)
    daylight_correlation: float = field(metadata=ANY_FLOAT)
    coverage: float = field(metadata=ANY_FLOAT)
    resolution_s: int
    detail: str


@dataclass(frozen=True)
class EventRow:
    """One step (or ramp) detected around a commitment's window (a row of events.csv).

    Attributes
    ----------
    kind
        ``step`` (one sample boundary, or inside one interval) or ``ramp``.
    ramp_kw_per_min
        The change over the samples it took.
    duration_s
        How long the pulse this step opened lasted (``nan`` if it closed one).
    period_s
        Time to the next step like it (sign and size within 30 %), a cycling device's
        period (``nan`` if none follows within two hours).
    in_window
        Whether the step lies inside the committed window.
    """

    commitment_id: str = field(metadata=NONEMPTY)
    meter_id: str = field(metadata=NONEMPTY)
    time: str = field(metadata=NONEMPTY)
    kind: str
    delta_p_kw: float
    delta_q_kvar: float = field(metadata=ANY_FLOAT)
    level_before_kw: float
    level_after_kw: float
    ramp_kw_per_min: float
    duration_s: float = field(metadata=ANY_FLOAT)
    period_s: float = field(metadata=ANY_FLOAT)
    sign_change: bool
    in_window: bool


class _Record(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)


class MeterDataSummary(_Record):
    """What one meter sent: its resolution, span and gaps."""

    meter_id: str
    resolution_s: int
    first: str
    last: str
    rows: int
    gaps: int
    missing_samples: int
    coverage: float


class DerSummary(_Record):
    """``summary.json`` of a validation."""

    kind: Literal["der_validation"] = "der_validation"
    name: str
    n_commitments: int
    verdicts: dict[str, int]
    by_device: dict[str, dict[str, int]]
    committed_kwh: float
    validated_kwh: float
    models_version: str
    models: list[str]
    runtime_s: float
    meters: list[MeterDataSummary]


@dataclass(frozen=True)
class DerResultFiles:
    """Everything a validation output folder holds (``deliveries`` is CSV text, or None).

    ``verdicts_csv`` and ``events_csv``, when given, are the text of those rows as
    :func:`~gridmatch.results_io.tables.to_csv` writes it (rendered by the worker
    processes that judged them), and are written instead of rendering the rows again.
    """

    summary: DerSummary
    verdicts: Sequence[VerdictRow]
    events: Sequence[EventRow]
    manifest: dict[str, Any]
    deliveries: str | None = None
    verdicts_csv: str | None = None
    events_csv: str | None = None


def _json_text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def write_der_result(out_dir: Path, files: DerResultFiles) -> None:
    """Write a validation output folder atomically (every file, or on failure none).

    Raises
    ------
    gridmatch.errors.OutputFolderError
        ``out_dir`` holds files gridmatch did not write.
    """
    with atomic_output_dir(out_dir) as staging:
        verdicts = files.verdicts_csv
        events = files.events_csv
        if verdicts is None:
            verdicts = to_csv(VerdictRow, files.verdicts)
        if events is None:
            events = to_csv(EventRow, files.events)
        (staging / VERDICTS_FILE).write_text(verdicts, encoding="utf-8")
        (staging / EVENTS_FILE).write_text(events, encoding="utf-8")
        (staging / SUMMARY_FILE).write_text(
            _json_text(files.summary.model_dump(mode="json")), encoding="utf-8"
        )
        (staging / MANIFEST_FILE).write_text(_json_text(files.manifest), encoding="utf-8")
        if files.deliveries is not None:
            (staging / DELIVERIES_FILE).write_text(files.deliveries, encoding="utf-8")


def is_der_result(folder: Path) -> bool:
    """Whether ``folder`` looks like an output folder of ``gridmatch validate-commitments``.

    Its verdicts.csv and events.csv together (a battery-rewards folder has a verdicts.csv
    too, and no events.csv).
    """
    return (folder / VERDICTS_FILE).is_file() and (folder / EVENTS_FILE).is_file()


def _read(path: Path) -> str:
    return read_output_file(path, "validate-commitments")


def read_der_summary(folder: Path) -> DerSummary:
    """Read ``folder/summary.json`` of a validation output folder, validated.

    Raises
    ------
    InputError
        Missing, not JSON, or not a validation summary (naming the field).
    """
    return read_output_summary(folder, DerSummary, "validate-commitments", "validation summary")


def read_verdicts(folder: Path) -> list[VerdictRow]:
    """Read ``folder/verdicts.csv``, every cell checked (file, row and column in errors)."""
    path = folder / VERDICTS_FILE
    return from_csv(VerdictRow, _read(path), path)


def read_der_events(folder: Path) -> list[EventRow]:
    """Read ``folder/events.csv``, every cell checked (file, row and column in errors)."""
    path = folder / EVENTS_FILE
    return from_csv(EventRow, _read(path), path)
