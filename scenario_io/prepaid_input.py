"""Read a prepaid simulation folder (``gridmatch prepaid SIM_DIR``), validated at the edge.

The folder holds::

    prepaid.yaml   tariff, report interval, policies, token settings (prepaid_schema.py)
    accounts.csv   participant_id, meter_id, balance_eur [, emergency_credit_eur]
    usage.csv      meter_id, timestamp, kwh
    topups.csv     meter_id, timestamp, amount_eur                 (optional)
    comms.csv      meter_id, timestamp, delay_min                  (optional)
    tokens.csv     meter_id, timestamp, token                      (optional)

Times are ISO-8601 with a UTC offset. A usage row is the energy a meter's customer
*demanded* in the ``reading_minutes`` that **start** at its timestamp (so a reading's
tariff band and friendly-credit hour are those of its own timestamp, with no "one second
before" rule); readings must lie on the grid ``start + j * reading_minutes``, a missing
reading counts as no demand (and is counted in the summary), a reading given twice is an
error. Report instants are ``start + k * report_interval_min``; a report covers the
readings that start in the interval before it. A top-up or a keypad token is handled at
the first report instant at or after its time (``start`` itself is instant 0, the
commissioning). ``comms.csv`` marks a report (by its instant, not the last one) as
``lost`` or delayed by ``delay_min`` minutes (it reaches the server at the first report
instant at or after that); every other report arrives on time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

import numpy as np

from gridmatch.errors import InputError
from gridmatch.scenario_io.accounts_csv import ACCOUNTS_FILE, read_accounts
from gridmatch.scenario_io.csv_cells import Cells, read_table
from gridmatch.scenario_io.prepaid_schema import HOURS_PER_DAY, WEEKDAYS, PrepaidSpec
from gridmatch.scenario_io.strict_yaml import read_yaml_mapping, validated_model
from gridmatch.units import MINUTES_PER_HOUR, SECONDS_PER_HOUR, IntArray, exact_micro_eur
from gridmatch.user_files import is_given, parse_int

PREPAID_FILE = "prepaid.yaml"
USAGE_FILE = "usage.csv"
TOPUPS_FILE = "topups.csv"
COMMS_FILE = "comms.csv"
TOKENS_FILE = "tokens.csv"
# A year of 1-minute reports per meter; far beyond a utility's study, bounded memory.
MAX_REPORTS = 366 * 24 * 60
# As many reading slots per meter (a year of 1-minute readings): each is an array cell
# and a tariff-band lookup.
MAX_READINGS = MAX_REPORTS
# Timeline rows held in memory over all meters (meters x (reports + 1)), about 0.6 kB
# each: some 1.3 GB, two meters' years of 1-minute reports, or 200 meters' of hourly.
MAX_TIMELINE_ROWS = 2_000_000
# Top-ups and keypad tokens per meter (each file): every token the server sends after
# commissioning answers one of them (a top-up, the cutoff and reconnection it leads to, a
# keypad token the meter took), and an OpenPAYGO meter's k-th token costs O(k) hashes
# (prepaid/tokens.py: TokenChain). A top-up a day for 16 months.
MAX_ROWS_PER_METER = 500
# Every prepaid time, and the whole simulated period, lies in [EARLIEST, LATEST): the
# timelines and the report put them on pandas' nanosecond time axis (1677-09-21 to
# 2262-04-11), and local times (UTC offsets under a day) stay valid datetimes.
EARLIEST = datetime(1678, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 1, 1, tzinfo=UTC)
TIME_RANGE = f"{EARLIEST.date().isoformat()} to {LATEST.date().isoformat()} (UTC)"
# A standard OpenPAYGO token is at most 9 digits (extended ones are not used here).
MAX_TOKEN_DIGITS = 9
_SECONDS_PER_MINUTE = SECONDS_PER_HOUR // MINUTES_PER_HOUR
LOST = "lost"


@dataclass(frozen=True)
class Tariff:
    """Energy prices by local hour, in whole micro-EUR per kWh.

    Attributes
    ----------
    band_names
        One register per band (a flat tariff has the one band ``flat``).
    band_of_hour
        Index into ``band_names`` for each local hour 0-23.
    """

    band_names: tuple[str, ...]
    micro_eur_per_kwh: tuple[int, ...]
    band_of_hour: tuple[int, ...]

    @property
    def n_bands(self) -> int:
        """Number of bands (registers)."""
        return len(self.band_names)


@dataclass(frozen=True)
class PrepaidPolicy:
    """The validated settings of prepaid.yaml, money in whole micro-EUR, times in UTC.

    Attributes
    ----------
    start
        Instant 0 (commissioning); report ``k`` is at ``start + k * report_interval_min``.
    n_reports
        Report instants after the start; the last one is the closing read.
    friendly_hours, friendly_weekdays
        Local hours (0-23) and weekdays (0 = Monday) at which nobody is cut off.
    """

    name: str
    zone: ZoneInfo
    start: datetime
    reading_minutes: int
    report_interval_min: int
    n_reports: int
    tariff: Tariff
    standing_charge_micro_eur_per_day: int
    low_credit_warning_micro_eur: int
    emergency_credit_micro_eur: int
    reconnect_threshold_micro_eur: int
    friendly_hours: frozenset[int]
    friendly_weekdays: frozenset[int]
    token_unit_wh: int
    key_seed: str

    @property
    def readings_per_report(self) -> int:
        """Readings in one report interval."""
        return self.report_interval_min // self.reading_minutes

    def report_time(self, k: int) -> datetime:
        """Local time of report instant ``k`` (0 = start)."""
        return (self.start + timedelta(minutes=k * self.report_interval_min)).astimezone(self.zone)

    def is_friendly(self, k: int) -> bool:
        """Whether report instant ``k`` falls in friendly-credit time (no cutoff then)."""
        local = self.report_time(k)
        return local.hour in self.friendly_hours or local.weekday() in self.friendly_weekdays


@dataclass(frozen=True)
class MeterInput:
    """One meter's account and what happens to it.

    Attributes
    ----------
    demand_wh
        Shape ``(n_reports + 1, n_bands)``: Wh demanded per report interval and band;
        row ``k`` is the interval that ends at instant ``k`` (row 0 is empty).
    topups
        ``(instant, amount in micro-EUR)`` in file order.
    arrival
        Report instant -> the instant its report reaches the server, ``None`` if lost;
        reports not listed arrive on time.
    keypad_tokens
        ``(instant, token text)`` entered at the meter, in file order.
    missing_readings
        Reading slots in the period without a row in usage.csv (counted as no demand).
    """

    meter_id: str
    participant_id: str
    balance_micro_eur: int
    emergency_credit_micro_eur: int
    demand_wh: IntArray
    topups: tuple[tuple[int, int], ...] = ()
    arrival: Mapping[int, int | None] = field(default_factory=dict)
    keypad_tokens: tuple[tuple[int, str], ...] = ()
    missing_readings: int = 0


@dataclass(frozen=True)
class PrepaidInputs:
    """A validated simulation folder; meters in accounts.csv order."""

    directory: Path
    spec: PrepaidSpec
    policy: PrepaidPolicy
    meters: tuple[MeterInput, ...]
    input_files: tuple[Path, ...]


def read_prepaid_spec(path: Path) -> PrepaidSpec:
    """Parse and validate ``prepaid.yaml``.

    Raises
    ------
    InputError
        Malformed YAML (a key given twice included) or a value the schema refuses.
    """
    return validated_model(PrepaidSpec, read_yaml_mapping(path, "prepaid settings"), path)


def load_prepaid(directory: Path) -> PrepaidInputs:
    """Validate a prepaid simulation folder completely before anything is simulated.

    Raises
    ------
    InputError
        On the first problem, naming the file, row and field.
    """
    if not directory.is_dir():
        raise InputError(directory, f"not a folder; expected a folder with {PREPAID_FILE}")
    spec_path = directory / PREPAID_FILE
    spec = read_prepaid_spec(spec_path)
    accounts = read_accounts(directory / ACCOUNTS_FILE, require_meter=True)
    usage_path = directory / USAGE_FILE
    readings = _read_usage(usage_path, {a.meter_id for a in accounts.accounts if a.meter_id})
    policy = _policy(spec, spec_path, readings)
    timeline_rows = len(accounts.accounts) * (policy.n_reports + 1)
    if timeline_rows > MAX_TIMELINE_ROWS:
        raise InputError(
            accounts.path,
            f"{len(accounts.accounts)} meters x {policy.n_reports + 1} report instants make "
            f"{timeline_rows} timeline rows; at most {MAX_TIMELINE_ROWS} (split the meters over "
            "several folders, or report less often)",
        )
    demand, missing = _demand(policy, readings, usage_path)
    files = [spec_path, accounts.path, usage_path]
    topups = _optional(directory / TOPUPS_FILE, files, lambda p: _read_topups(p, policy))
    arrival = _optional(directory / COMMS_FILE, files, lambda p: _read_comms(p, policy))
    keypad = _optional(directory / TOKENS_FILE, files, lambda p: _read_tokens(p, policy))
    known = {a.meter_id for a in accounts.accounts}
    for name, table in ((TOPUPS_FILE, topups), (COMMS_FILE, arrival), (TOKENS_FILE, keypad)):
        for meter, rows in table.items():
            if meter not in known:
                raise InputError(
                    directory / name,
                    f"meter '{meter}' has no account in {ACCOUNTS_FILE}",
                    row=rows.first_row,
                    field="meter_id",
                )
    meters = []
    zero = np.zeros((policy.n_reports + 1, policy.tariff.n_bands), dtype=np.int64)
    for account in accounts.accounts:
        assert account.meter_id is not None  # require_meter
        meter = account.meter_id
        emergency = account.emergency_credit_micro_eur
        meters.append(
            MeterInput(
                meter_id=meter,
                participant_id=account.participant_id,
                balance_micro_eur=account.balance_micro_eur,
                emergency_credit_micro_eur=(
                    policy.emergency_credit_micro_eur if emergency is None else emergency
                ),
                demand_wh=demand.get(meter, zero),
                topups=tuple(topups[meter].items) if meter in topups else (),
                arrival=dict(arrival[meter].items) if meter in arrival else {},
                keypad_tokens=tuple(keypad[meter].items) if meter in keypad else (),
                missing_readings=missing.get(meter, _slots(policy)),
            )
        )
    return PrepaidInputs(directory, spec, policy, tuple(meters), tuple(files))


_Item = TypeVar("_Item")


@dataclass
class _PerMeter(Generic[_Item]):
    first_row: int
    items: list[tuple[int, _Item]] = field(default_factory=list)


@dataclass(frozen=True)
class _Reading:
    row: int
    moment: datetime
    wh: int


def _optional(
    path: Path, files: list[Path], read: Callable[[Path], dict[str, _PerMeter[_Item]]]
) -> dict[str, _PerMeter[_Item]]:
    if not is_given(path):
        return {}
    files.append(path)
    return read(path)


def _read_usage(path: Path, meters: set[str]) -> dict[str, list[_Reading]]:
    table = read_table(path, "usage file", ("meter_id", "timestamp", "kwh"))
    readings: dict[str, list[_Reading]] = {}
    for cells in table.cells():
        meter = cells.meter_id()
        if meter not in meters:
            raise cells.fail("meter_id", f"meter '{meter}' has no account in {ACCOUNTS_FILE}")
        readings.setdefault(meter, []).append(_Reading(cells.line, _moment(cells), cells.wh("kwh")))
    if not readings:
        raise InputError(path, "no readings: the file has a header and no rows")
    return readings


def _moment(cells: Cells) -> datetime:
    """Read a row's timestamp, refusing one outside :data:`TIME_RANGE`."""
    moment = cells.timestamp()
    if not EARLIEST <= moment < LATEST:
        raise cells.fail("timestamp", f"{cells.record['timestamp']} is outside {TIME_RANGE}")
    return moment


def _policy(spec: PrepaidSpec, path: Path, readings: dict[str, list[_Reading]]) -> PrepaidPolicy:
    reading_s = spec.reading_minutes * _SECONDS_PER_MINUTE
    interval_s = spec.report_interval_min * _SECONDS_PER_MINUTE
    moments = [r.moment for rows in readings.values() for r in rows]
    for key in ("start", "end"):
        given = getattr(spec, key)
        if given is not None and not EARLIEST <= given < LATEST:
            raise InputError(path, f"{given.isoformat()} is outside {TIME_RANGE}", field=key)
    start = (spec.start or min(moments)).astimezone(UTC)
    if spec.end is not None:
        span_s = (spec.end - start).total_seconds()
        if span_s <= 0:
            raise InputError(path, "end must be after start (or the first reading)", field="end")
        if span_s % interval_s:
            raise InputError(
                path,
                f"the period from start to end is not a whole number of report intervals "
                f"({spec.report_interval_min} min)",
                field="end",
            )
    else:
        last_s = (max(moments) - start).total_seconds() + reading_s
        span_s = max(math.ceil(last_s / interval_s), 1) * interval_s
    n_reports = int(span_s // interval_s)
    if n_reports > MAX_REPORTS:
        raise InputError(
            path,
            f"the period holds {n_reports} report intervals; at most {MAX_REPORTS}",
            field="report_interval_min",
        )
    n_readings = n_reports * (spec.report_interval_min // spec.reading_minutes)
    if n_readings > MAX_READINGS:
        raise InputError(
            path,
            f"the period holds {n_readings} reading slots of {spec.reading_minutes} min per "
            f"meter; at most {MAX_READINGS} (a year of 1-minute readings)",
            field="reading_minutes",
        )
    # Compared as durations: adding the span to the start could leave datetime's range.
    if (LATEST - start).total_seconds() < span_s:
        raise InputError(
            path,
            f"the simulated period from {start.isoformat()} ({n_reports} reports of "
            f"{spec.report_interval_min} min) ends after {TIME_RANGE}",
            field="end" if spec.end is not None else "report_interval_min",
        )
    tariff_spec = spec.tariff
    if tariff_spec.flat_eur_per_kwh is not None:
        tariff = Tariff(
            ("flat",), (exact_micro_eur(tariff_spec.flat_eur_per_kwh),), (0,) * HOURS_PER_DAY
        )
    else:
        assert tariff_spec.bands is not None
        band_of_hour = [0] * HOURS_PER_DAY
        for index, band in enumerate(tariff_spec.bands):
            for hour in band.hours:
                band_of_hour[hour] = index
        tariff = Tariff(
            tuple(b.name for b in tariff_spec.bands),
            tuple(exact_micro_eur(b.eur_per_kwh) for b in tariff_spec.bands),
            tuple(band_of_hour),
        )
    return PrepaidPolicy(
        name=spec.name,
        zone=ZoneInfo(spec.timezone),
        start=start,
        reading_minutes=spec.reading_minutes,
        report_interval_min=spec.report_interval_min,
        n_reports=n_reports,
        tariff=tariff,
        standing_charge_micro_eur_per_day=exact_micro_eur(spec.standing_charge_eur_per_day),
        low_credit_warning_micro_eur=exact_micro_eur(spec.low_credit_warning_eur),
        emergency_credit_micro_eur=exact_micro_eur(spec.emergency_credit_eur),
        reconnect_threshold_micro_eur=exact_micro_eur(spec.reconnect_threshold_eur),
        friendly_hours=frozenset(spec.friendly_credit.hours),
        friendly_weekdays=frozenset(WEEKDAYS.index(d) for d in spec.friendly_credit.weekdays),
        token_unit_wh=spec.tokens.unit_wh,
        key_seed=spec.tokens.key_seed,
    )


def _slots(policy: PrepaidPolicy) -> int:
    return policy.n_reports * policy.readings_per_report


def _band_of_slot(policy: PrepaidPolicy) -> IntArray:
    """Tariff band of every reading slot (by the local hour its reading starts in)."""
    step = timedelta(minutes=policy.reading_minutes)
    hours = [(policy.start + j * step).astimezone(policy.zone).hour for j in range(_slots(policy))]
    return np.asarray([policy.tariff.band_of_hour[h] for h in hours], dtype=np.int64)


def _demand(
    policy: PrepaidPolicy, readings: dict[str, list[_Reading]], path: Path
) -> tuple[dict[str, IntArray], dict[str, int]]:
    reading_s = policy.reading_minutes * _SECONDS_PER_MINUTE
    n_slots = _slots(policy)
    bands = _band_of_slot(policy)
    demand: dict[str, IntArray] = {}
    missing: dict[str, int] = {}
    for meter, rows in readings.items():
        seen: dict[int, int] = {}
        slot_wh = np.zeros(n_slots, dtype=np.int64)
        for reading in rows:
            offset_s = (reading.moment - policy.start).total_seconds()
            if offset_s < 0 or offset_s >= n_slots * reading_s:
                raise InputError(
                    path,
                    f"{reading.moment.isoformat()} lies outside the simulated period "
                    f"({policy.report_time(0).isoformat()} to "
                    f"{policy.report_time(policy.n_reports).isoformat()})",
                    row=reading.row,
                    field="timestamp",
                )
            if offset_s % reading_s:
                raise InputError(
                    path,
                    f"{reading.moment.isoformat()} is not on the {policy.reading_minutes}-minute "
                    f"reading grid from {policy.report_time(0).isoformat()}",
                    row=reading.row,
                    field="timestamp",
                )
            slot = int(offset_s // reading_s)
            if slot in seen:
                raise InputError(
                    path,
                    f"meter '{meter}' has a second reading at {reading.moment.isoformat()} "
                    f"(first on row {seen[slot]})",
                    row=reading.row,
                    field="timestamp",
                )
            seen[slot] = reading.row
            slot_wh[slot] = reading.wh
        per_report = np.zeros((policy.n_reports + 1, policy.tariff.n_bands), dtype=np.int64)
        interval = np.arange(n_slots) // policy.readings_per_report + 1
        np.add.at(per_report, (interval, bands), slot_wh)
        demand[meter] = per_report
        missing[meter] = n_slots - len(seen)
    return demand, missing


def _instant(cells: Cells, policy: PrepaidPolicy) -> int:
    """Return the first report instant at or after the row's timestamp (0 = start)."""
    moment = _moment(cells)
    offset_s = (moment - policy.start).total_seconds()
    interval_s = policy.report_interval_min * _SECONDS_PER_MINUTE
    if offset_s < 0 or offset_s > policy.n_reports * interval_s:
        raise cells.fail(
            "timestamp",
            f"{moment.isoformat()} lies outside the simulated period "
            f"({policy.report_time(0).isoformat()} to "
            f"{policy.report_time(policy.n_reports).isoformat()})",
        )
    return math.ceil(offset_s / interval_s)


def _group(
    result: dict[str, _PerMeter[_Item]], meter: str, line: int, item: tuple[int, _Item]
) -> None:
    result.setdefault(meter, _PerMeter(line)).items.append(item)


def _bounded(cells: Cells, rows: _PerMeter[_Item], what: str) -> None:
    """Refuse a meter's row beyond :data:`MAX_ROWS_PER_METER` of a file."""
    if len(rows.items) > MAX_ROWS_PER_METER:
        raise cells.fail(
            "meter_id",
            f"meter '{cells.record['meter_id']}' has more than {MAX_ROWS_PER_METER} {what} "
            "(each may cost the meter a token; OpenPAYGO meters take a few a month)",
        )


def _read_topups(path: Path, policy: PrepaidPolicy) -> dict[str, _PerMeter[int]]:
    table = read_table(path, "top-ups file", ("meter_id", "timestamp", "amount_eur"))
    result: dict[str, _PerMeter[int]] = {}
    for cells in table.cells():
        meter = cells.meter_id()
        instant = _instant(cells, policy)
        amount = cells.micro_eur("amount_eur", minimum_eur=0.0, positive=True)
        _group(result, meter, cells.line, (instant, amount))
        _bounded(cells, result[meter], "top-ups")
    return result


def _read_comms(path: Path, policy: PrepaidPolicy) -> dict[str, _PerMeter[int | None]]:
    table = read_table(path, "communications file", ("meter_id", "timestamp", "delay_min"))
    result: dict[str, _PerMeter[int | None]] = {}
    interval_s = policy.report_interval_min * _SECONDS_PER_MINUTE
    seen: dict[tuple[str, int], int] = {}
    for cells in table.cells():
        meter = cells.meter_id()
        moment = _moment(cells)
        offset_s = (moment - policy.start).total_seconds()
        if offset_s % interval_s or not 0 < offset_s < policy.n_reports * interval_s:
            raise cells.fail(
                "timestamp",
                f"{moment.isoformat()} is not a report instant between the start and the "
                f"closing read at {policy.report_time(policy.n_reports).isoformat()} "
                f"(every {policy.report_interval_min} min from "
                f"{policy.report_time(0).isoformat()})",
            )
        instant = int(offset_s // interval_s)
        if (meter, instant) in seen:
            raise cells.fail(
                "timestamp",
                f"the report of meter '{meter}' at {moment.isoformat()} is given twice "
                f"(first on row {seen[meter, instant]})",
            )
        seen[meter, instant] = cells.line
        delay = cells.text("delay_min")
        arrives: int | None
        if delay == LOST:
            arrives = None
        else:
            try:
                minutes = parse_int(delay)
            except ValueError:
                raise cells.fail(
                    "delay_min", f"'{delay}' is not a whole number or '{LOST}'"
                ) from None
            if minutes < 0:
                raise cells.fail("delay_min", f"{minutes} is negative")
            if minutes > MAX_REPORTS * policy.report_interval_min:
                raise cells.fail("delay_min", f"{minutes} is beyond the simulated period")
            arrives = instant + math.ceil(minutes / policy.report_interval_min)
        _group(result, meter, cells.line, (instant, arrives))
    return result


def _read_tokens(path: Path, policy: PrepaidPolicy) -> dict[str, _PerMeter[str]]:
    table = read_table(path, "keypad tokens file", ("meter_id", "timestamp", "token"))
    result: dict[str, _PerMeter[str]] = {}
    for cells in table.cells():
        meter = cells.meter_id()
        instant = _instant(cells, policy)
        token = cells.text("token")
        if not token.isdigit() or not token.isascii() or len(token) > MAX_TOKEN_DIGITS:
            raise cells.fail(
                "token", f"an OpenPAYGO token is 1 to {MAX_TOKEN_DIGITS} digits, not '{token[:20]}'"
            )
        _group(result, meter, cells.line, (instant, token))
        _bounded(cells, result[meter], "keypad tokens")
    return result
