"""The output folder of ``gridmatch mobility``: its layout, typed rows, summary, writer, readers.

::

    OUT/summary.json      totals, solver status, gap, stages, the grid check (MobilitySummary)
    OUT/requests.csv      per request: need, served, status, vehicles, the reason if unserved
    OUT/deliveries.csv    per request and vehicle: position, route, ETA, energy (the user's view)
    OUT/fleet.csv         per vehicle: what it had, gave, burnt, keeps (the owner's view)
    OUT/itineraries.csv   per vehicle, step by step: drive, wait, deliver (the driver's view)
    OUT/sessions.csv      per point: each vehicle's session, port, power (the operator's view)
    OUT/map.geojson       vehicles, requests, points and routes (WGS84), for a map
    OUT/manifest.json     input hashes, versions, settings
    [OUT/report.html]     ``gridmatch report OUT``

Written atomically like a result folder (a staging folder renamed into place, see
:mod:`~gridmatch.results_io.atomic`), through the typed tables of
:mod:`~gridmatch.results_io.tables`: the columns are the fields of the row classes.
Energy delivered is whole Wh, rounded down (``*_wh``); times are minutes from the start
of the dispatch. ``v2g_offers.csv`` (:class:`V2gOfferRow`) is what ``mobility v2g-offers``
writes beside a scenario's orders, and :class:`V2gCreditRow` what ``mobility v2g-credit``
reports per vehicle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import pydantic

from gridmatch.errors import InputError, OutputFolderError
from gridmatch.results_io.atomic import atomic_output_dir, claim_file
from gridmatch.results_io.layout import MANIFEST_FILE, SUMMARY_FILE
from gridmatch.results_io.outputs import read_output_file, read_output_summary
from gridmatch.results_io.tables import ANY_FLOAT, NON_NEGATIVE, NONEMPTY, from_csv, to_csv
from gridmatch.user_files import (
    RECORD_LIMIT_BYTES,
    TABLE_LIMIT_BYTES,
    parse_json,
    read_text,
)

REQUESTS_FILE = "requests.csv"
DELIVERIES_FILE = "deliveries.csv"
FLEET_FILE = "fleet.csv"
ITINERARIES_FILE = "itineraries.csv"
SESSIONS_FILE = "sessions.csv"
MAP_FILE = "map.geojson"
V2G_OFFERS_FILE = "v2g_offers.csv"


class RequestStatus(StrEnum):
    """What became of a request."""

    SERVED = "served"  # all of its need (to the Wh)
    PARTIAL = "partial"
    UNSERVED = "unserved"


class UnservedReason(StrEnum):
    """Why a request (or the rest of it) was not served; empty when it was.

    The first four say no vehicle could serve it at all; the others that some could,
    but the dispatch used them otherwise or a limit stopped them.
    """

    NONE = ""
    NO_VEHICLE = "no_vehicle"  # nothing dispatchable carries it with energy above reserve
    OUT_OF_RANGE = "no_vehicle_in_range"  # no road there, or the drive eats the spare energy
    TIME_WINDOW = "time_window"  # nobody arrives before the window closes
    CAPACITY = "capacity"  # indivisible: nobody can bring all of it within the window
    USED_BY_CRITICAL = "vehicles_used_by_critical"  # the vehicles that could went to critical ones
    USED_ELSEWHERE = "vehicles_used_elsewhere"  # the vehicles that could went to other requests
    POINT_LIMIT = "point_limit"  # the point's ports or kW were all taken
    GRID_LIMIT = "grid_limit"  # the AC check lowered the point's limit
    SOLVER_LIMIT = "solver_time_limit"  # a free vehicle could have come; not proven optimal
    TRAVEL_COST = "not_worth_the_drive"  # less energy than the drive's travel penalty


class Activity(StrEnum):
    """One step of a vehicle's itinerary."""

    DRIVE = "drive"
    WAIT = "wait"  # arrived before the window opened
    DELIVER = "deliver"
    IDLE = "idle"  # dispatchable, not sent
    UNAVAILABLE = "unavailable"  # out of service, charging in normal mode, below reserve...


@dataclass(frozen=True)
class RequestRow:
    """One line of requests.csv.

    Attributes
    ----------
    vehicles
        Ids of the vehicles sent, ``;``-separated.
    first_eta_min
        When the first of them arrives (NaN if none comes).
    reason, detail
        Why it is not served in full, as a word and in words.
    """

    request_id: str = field(metadata=NONEMPTY)
    priority: str = field(metadata=NONEMPTY)
    carrier: str = field(metadata=NONEMPTY)
    node: str = field(metadata=NONEMPTY)
    point_id: str
    earliest_min: float = field(metadata=NON_NEGATIVE)
    latest_min: float = field(metadata=NON_NEGATIVE)
    need_wh: int = field(metadata=NON_NEGATIVE)
    served_wh: int = field(metadata=NON_NEGATIVE)
    status: RequestStatus
    n_vehicles: int = field(metadata=NON_NEGATIVE)
    vehicles: str
    first_eta_min: float = field(metadata=ANY_FLOAT)
    reason: UnservedReason
    detail: str


@dataclass(frozen=True)
class DeliveryRow:
    """One line of deliveries.csv: a vehicle sent to a request.

    Attributes
    ----------
    vehicle_node, vehicle_lon, vehicle_lat
        Where the vehicle is now (lon/lat NaN without nodes.csv).
    eta_min, start_min, end_min
        Arrival, start and end of delivery.
    power_kw
        Average power of the delivery (a point session runs at it until the window ends).
    fuel_l
        For fuel: the litres that ``energy_wh`` stands for (0 for electricity).
    route
        Node ids of the fastest route, space-separated.
    """

    request_id: str = field(metadata=NONEMPTY)
    priority: str = field(metadata=NONEMPTY)
    vehicle_id: str = field(metadata=NONEMPTY)
    vehicle_kind: str = field(metadata=NONEMPTY)
    vehicle_node: str = field(metadata=NONEMPTY)
    vehicle_lon: float = field(metadata=ANY_FLOAT)
    vehicle_lat: float = field(metadata=ANY_FLOAT)
    point_id: str
    eta_min: float = field(metadata=NON_NEGATIVE)
    start_min: float = field(metadata=NON_NEGATIVE)
    end_min: float = field(metadata=NON_NEGATIVE)
    distance_km: float = field(metadata=NON_NEGATIVE)
    drive_kwh: float = field(metadata=NON_NEGATIVE)
    energy_wh: int = field(metadata=NON_NEGATIVE)
    fuel_l: float = field(metadata=NON_NEGATIVE)
    power_kw: float = field(metadata=NON_NEGATIVE)
    route: str = field(metadata=NONEMPTY)


@dataclass(frozen=True)
class FleetRow:
    """One line of fleet.csv: a vehicle's energy before and after the dispatch.

    ``left_kwh = residual - delivered - drive``, never below ``reserve_wh``.
    """

    vehicle_id: str = field(metadata=NONEMPTY)
    kind: str = field(metadata=NONEMPTY)
    state: str = field(metadata=NONEMPTY)
    node: str = field(metadata=NONEMPTY)
    owner_id: str = field(metadata=NONEMPTY)
    dispatchable: bool
    sent: bool
    request_id: str
    residual_wh: int = field(metadata=NON_NEGATIVE)
    reserve_wh: int = field(metadata=NON_NEGATIVE)
    delivered_wh: int = field(metadata=NON_NEGATIVE)
    drive_kwh: float = field(metadata=NON_NEGATIVE)
    left_kwh: float = field(metadata=ANY_FLOAT)
    note: str


@dataclass(frozen=True)
class ItineraryRow:
    """One step of a vehicle's itinerary (itineraries.csv), in time order per vehicle."""

    vehicle_id: str = field(metadata=NONEMPTY)
    step: int = field(metadata=NON_NEGATIVE)
    activity: Activity
    node: str = field(metadata=NONEMPTY)
    to_node: str
    start_min: float = field(metadata=NON_NEGATIVE)
    end_min: float = field(metadata=NON_NEGATIVE)
    distance_km: float = field(metadata=NON_NEGATIVE)
    energy_wh: int = field(metadata=NON_NEGATIVE)
    request_id: str
    point_id: str
    detail: str


@dataclass(frozen=True)
class SessionRow:
    """One line of sessions.csv: a vehicle plugged into a point's port."""

    point_id: str = field(metadata=NONEMPTY)
    bus: str
    port: int = field(metadata=NON_NEGATIVE)
    vehicle_id: str = field(metadata=NONEMPTY)
    request_id: str = field(metadata=NONEMPTY)
    start_min: float = field(metadata=NON_NEGATIVE)
    end_min: float = field(metadata=NON_NEGATIVE)
    energy_wh: int = field(metadata=NON_NEGATIVE)
    power_kw: float = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class V2gOfferRow:
    """One line of v2g_offers.csv: a parked vehicle's sell order in one market slot.

    ``spare_kwh`` is what the vehicle may give over the slots of this stay: ``residual -
    max(reserve, departure)`` less what it offered at its earlier stays; its orders of the
    stay add up to at most that.
    """

    vehicle_id: str = field(metadata=NONEMPTY)
    owner_id: str = field(metadata=NONEMPTY)
    order_id: str = field(metadata=NONEMPTY)
    point_id: str = field(metadata=NONEMPTY)
    bus: int = field(metadata=NON_NEGATIVE)
    slot: int = field(metadata=NON_NEGATIVE)
    quantity_kwh: float = field(metadata=NON_NEGATIVE)
    limit_price_eur_per_kwh: float = field(metadata=NON_NEGATIVE)
    spare_kwh: float = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class V2gCreditRow:
    """What a vehicle earned in a cleared market (``mobility v2g-credit``).

    ``credit_eur`` is the sellers' side of its trades, ``sum(quantity * price)``; the
    buyers pay the grid fee on top, so the vehicle is credited exactly this.
    """

    vehicle_id: str = field(metadata=NONEMPTY)
    owner_id: str = field(metadata=NONEMPTY)
    offered_kwh: float = field(metadata=NON_NEGATIVE)
    sold_kwh: float = field(metadata=NON_NEGATIVE)
    n_trades: int = field(metadata=NON_NEGATIVE)
    credit_eur: float = field(metadata=NON_NEGATIVE)
    average_price_eur_per_kwh: float = field(metadata=ANY_FLOAT)


class _Record(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)


class StageSummary(_Record):
    """One stage of the dispatch (emergency mode has two: critical, then all)."""

    name: str
    method: str
    source: str
    solver_status: str
    objective_kwh: float
    bound_kwh: float
    gap: float | None
    n_pairs: int
    n_model_pairs: int
    lp_rounds: int
    runtime_s: float


class GridSummary(_Record):
    """The AC check of the injections at points on grid buses."""

    checked: bool
    secure: bool
    rounds: int
    ac_power_flows: int
    injection_kw_by_bus: dict[str, float]
    capped_points: list[str]
    # Points whose sessions were cut without a re-solve, for lack of time (issue #20).
    cut_points: list[str] = []
    max_line_loading_percent: float | None
    min_vm_pu: float | None
    max_vm_pu: float | None


class MobilitySummary(_Record):
    """``summary.json`` of a mobility dispatch.

    ``status`` is ``optimal`` when every stage's gap is within ``mip_gap``, else
    ``feasible``; ``gap`` is the largest of the stages' gaps (emergency mode: it covers
    the critical energy and the total; ``objective_kwh`` and ``bound_kwh`` are the last
    stage's), ``null`` when no bound is known.
    """

    kind: Literal["mobility"] = "mobility"
    name: str
    mode: str
    backend: str
    status: str
    gap: float | None
    objective_kwh: float
    bound_kwh: float
    n_vehicles: int
    n_dispatchable: int
    n_sent: int
    n_requests: int
    n_served: int
    n_partial: int
    n_unserved: int
    need_wh: int
    served_wh: int
    critical_need_wh: int
    critical_served_wh: int
    normal_need_wh: int
    normal_served_wh: int
    critical_floor_kwh: float | None
    fuel_served_l: float
    reasons: dict[str, int]
    stages: list[StageSummary]
    grid: GridSummary
    time_limit_s: float
    mip_gap: float
    seed: int
    horizon_min: float
    travel_penalty_kwh_per_min: float
    fuel_kwh_per_l: float
    runtime_s: float


@dataclass(frozen=True)
class MobilityResultFiles:
    """Everything a mobility output folder holds (``geojson`` is the parsed map)."""

    summary: MobilitySummary
    requests: Sequence[RequestRow]
    deliveries: Sequence[DeliveryRow]
    fleet: Sequence[FleetRow]
    itineraries: Sequence[ItineraryRow]
    sessions: Sequence[SessionRow]
    geojson: dict[str, Any]
    manifest: dict[str, Any]


def _json_text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def write_mobility_result(out_dir: Path, files: MobilityResultFiles) -> None:
    """Write a mobility output folder atomically (every file, or on failure none).

    Raises
    ------
    gridmatch.errors.OutputFolderError
        ``out_dir`` holds files gridmatch did not write.
    """
    with atomic_output_dir(out_dir) as staging:
        for name, cls, rows in (
            (REQUESTS_FILE, RequestRow, files.requests),
            (DELIVERIES_FILE, DeliveryRow, files.deliveries),
            (FLEET_FILE, FleetRow, files.fleet),
            (ITINERARIES_FILE, ItineraryRow, files.itineraries),
            (SESSIONS_FILE, SessionRow, files.sessions),
        ):
            (staging / name).write_text(to_csv(cls, rows), encoding="utf-8")
        (staging / MAP_FILE).write_text(_json_text(files.geojson), encoding="utf-8")
        (staging / SUMMARY_FILE).write_text(
            _json_text(files.summary.model_dump(mode="json")), encoding="utf-8"
        )
        (staging / MANIFEST_FILE).write_text(_json_text(files.manifest), encoding="utf-8")


def is_mobility_result(folder: Path) -> bool:
    """Whether ``folder`` looks like an output folder of ``gridmatch mobility``."""
    return (folder / DELIVERIES_FILE).is_file() and (folder / ITINERARIES_FILE).is_file()


def _read(path: Path) -> str:
    return read_output_file(path, "mobility")


def read_mobility_summary(folder: Path) -> MobilitySummary:
    """Read ``folder/summary.json`` of a mobility output folder, validated.

    Raises
    ------
    InputError
        Missing, not JSON, or not a mobility summary (naming the field).
    """
    return read_output_summary(folder, MobilitySummary, "mobility", "mobility summary")


def read_request_rows(folder: Path) -> list[RequestRow]:
    """Read requests.csv of an output folder, every cell checked."""
    path = folder / REQUESTS_FILE
    return from_csv(RequestRow, _read(path), path)


def read_deliveries(folder: Path) -> list[DeliveryRow]:
    """Read deliveries.csv of an output folder, every cell checked."""
    path = folder / DELIVERIES_FILE
    return from_csv(DeliveryRow, _read(path), path)


def read_fleet(folder: Path) -> list[FleetRow]:
    """Read fleet.csv of an output folder, every cell checked."""
    path = folder / FLEET_FILE
    return from_csv(FleetRow, _read(path), path)


def read_itineraries(folder: Path) -> list[ItineraryRow]:
    """Read itineraries.csv of an output folder, every cell checked."""
    path = folder / ITINERARIES_FILE
    return from_csv(ItineraryRow, _read(path), path)


def read_sessions(folder: Path) -> list[SessionRow]:
    """Read sessions.csv of an output folder, every cell checked."""
    path = folder / SESSIONS_FILE
    return from_csv(SessionRow, _read(path), path)


def read_map(folder: Path) -> dict[str, Any]:
    """Read map.geojson of an output folder (a FeatureCollection).

    Raises
    ------
    InputError
        Missing, not JSON, or not a FeatureCollection.
    """
    path = folder / MAP_FILE
    document = parse_json(read_output_file(path, "mobility", RECORD_LIMIT_BYTES), path)
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise InputError(path, "not a GeoJSON FeatureCollection", field="type")
    if not isinstance(document.get("features"), list):
        raise InputError(path, "features must be a list", field="features")
    return document


def v2g_offers_csv(rows: Sequence[V2gOfferRow]) -> str:
    """Return the text of v2g_offers.csv."""
    return to_csv(V2gOfferRow, rows)


def read_v2g_offers(path: Path) -> list[V2gOfferRow]:
    """Read a v2g_offers.csv, every cell checked.

    Raises
    ------
    InputError
        Missing or malformed (file, row and column named).
    """
    if not path.exists():
        raise InputError(path, "file not found; write it with `gridmatch mobility v2g-offers`")
    return from_csv(V2gOfferRow, read_text(path, TABLE_LIMIT_BYTES), path)


def v2g_credit_csv(rows: Sequence[V2gCreditRow]) -> str:
    """Return the text of a v2g credit table."""
    return to_csv(V2gCreditRow, rows)


def claim_credit_file(path: Path) -> None:
    """Make sure ``v2g-credit -o`` may write ``path``: never over another table of ours.

    :func:`~gridmatch.results_io.atomic.claim_file` lets gridmatch replace any file its
    folder's marker lists, which in a result folder is the result itself (``-o
    RES/trades.csv`` replaced the trades it had just read). An existing file is replaced
    only if it is a credit table (its header is this one's).

    Raises
    ------
    OutputFolderError
        ``path`` is a file gridmatch did not write, or another of its tables.
    """
    if path.is_file() and not path.is_symlink():
        header = to_csv(V2gCreditRow, []).splitlines()[0]
        with path.open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline().rstrip("\r\n")
        if first != header:
            raise OutputFolderError(
                f"{path}: exists and is not a v2g credit table; refusing to overwrite it"
            )
    claim_file(path)
