"""The input of ``gridmatch battery-rewards``: ``agreement.yaml`` and ``telemetry.csv``.

``agreement.yaml`` (pydantic, unknown keys refused)::

    battery_id: bess-1
    capacity_kwh: 13.5
    period: {start: 2026-01-01T00:00:00Z, seconds: 86400, count: 3}
    expiry: 2036-01-01T00:00:00Z
    conditions:                      # thresholds, inclusive
      soc_window_percent: [10, 90]
      max_depth_of_discharge_percent: 80
      max_c_rate: 0.5                # |P| / capacity, 1/h
      temperature_band_c: [0, 40]
      max_equivalent_full_cycles_per_day: 1.5
      min_state_of_health_percent: 80
    telemetry:                       # optional: coverage a period needs (these defaults)
      interval_seconds: 300          # the meter's sampling interval: expected samples
      min_coverage_percent: 90       # share of the expected samples present, at least
      max_gap_seconds: 3600          # longest stretch without a sample, edges included
    amounts_eur:                     # per period and condition met; 0/absent: not agreed
      soc_window: 1.0
      ...
    participants:                    # shares in basis points, adding up to 10,000
      - {id: owner, share_bps: 7000}
      - {id: aggregator, share_bps: 3000}

``telemetry.csv``: ``battery_id, timestamp, soc, p_kw, temperature_c[, soh]`` (SoC and
SoH in percent, ``p_kw`` positive when discharging, ISO-8601 times with an offset).
Every problem is an :class:`~gridmatch.errors.InputError` naming the file, the row (the
file line, header = row 1) and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated

import pydantic

from gridmatch.errors import InputError
from gridmatch.scenario_io.csv_cells import Cells, iter_cells, shown
from gridmatch.scenario_io.strict_yaml import IsoTime, read_yaml_mapping, validated_model
from gridmatch.units import exact_micro_eur
from gridmatch.user_files import MIB

AGREEMENT_FILE = "agreement.yaml"
TELEMETRY_FILE = "telemetry.csv"
# The order of BatteryRewards.sol's conditions (bits of its masks, indexes of its amounts).
CONDITION_NAMES = (
    "soc_window",
    "max_depth_of_discharge",
    "max_c_rate",
    "temperature_band",
    "max_cycles_per_day",
    "min_state_of_health",
)
MAX_PARTICIPANTS = 16  # BatteryRewards.MAX_PARTICIPANTS
MAX_PERIODS = 3660  # BatteryRewards.MAX_PERIODS
TOTAL_BPS = 10_000
# 1 Wh: below it |P| / capacity (the C-rate) overflows to infinity for a real power.
MIN_CAPACITY_KWH = 0.001
# Ten years of 5-minute telemetry (MAX_PERIODS daily periods) with room to spare; a
# file of more rows is refused before it is split (2 million rows took 2.4 GB to read).
MAX_TELEMETRY_ROWS = 1 << 21
# Those rows at about 60 characters, ids of up to 100 (what is read to count them).
TELEMETRY_LIMIT_BYTES = 256 * MIB

_Percent = Annotated[float, pydantic.Field(ge=0.0, le=100.0, allow_inf_nan=False, strict=True)]
# EUR per period and condition.
_Eur = Annotated[float, pydantic.Field(ge=0.0, le=1e6, allow_inf_nan=False, strict=True)]
_DegreesC = Annotated[float, pydantic.Field(ge=-100.0, le=200.0, allow_inf_nan=False, strict=True)]
_Name = Annotated[
    str, pydantic.Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
]


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class PeriodSchema(_Strict):
    """The agreement's periods: ``count`` periods of ``seconds`` from ``start``."""

    start: IsoTime
    seconds: Annotated[int, pydantic.Field(ge=60, le=366 * 86_400, strict=True)]
    count: Annotated[int, pydantic.Field(ge=1, le=MAX_PERIODS, strict=True)]

    @pydantic.field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a UTC offset (e.g. Z or +01:00)")
        return value


class ConditionsSchema(_Strict):
    """The thresholds (inclusive) of each condition."""

    soc_window_percent: tuple[_Percent, _Percent]
    max_depth_of_discharge_percent: _Percent
    max_c_rate: Annotated[float, pydantic.Field(gt=0.0, le=100.0, allow_inf_nan=False, strict=True)]
    temperature_band_c: tuple[_DegreesC, _DegreesC]
    max_equivalent_full_cycles_per_day: Annotated[
        float, pydantic.Field(ge=0.0, le=1000.0, allow_inf_nan=False, strict=True)
    ]
    min_state_of_health_percent: _Percent

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> ConditionsSchema:
        if self.soc_window_percent[0] > self.soc_window_percent[1]:
            raise ValueError("soc_window_percent: the lower end is above the upper one")
        if self.temperature_band_c[0] > self.temperature_band_c[1]:
            raise ValueError("temperature_band_c: the lower end is above the upper one")
        return self


DEFAULT_INTERVAL_SECONDS = 300
DEFAULT_MIN_COVERAGE_PERCENT = 90.0
DEFAULT_MAX_GAP_SECONDS = 3600


class TelemetrySchema(_Strict):
    """How well a period's telemetry must cover it before anything is released.

    A period's coverage is its samples over the expected ``period / interval_seconds``
    (at most 100 %); its longest gap runs between consecutive samples or from the
    period's start to its first sample and from its last sample to its end.
    """

    interval_seconds: Annotated[int, pydantic.Field(ge=1, le=86_400, strict=True)] = (
        DEFAULT_INTERVAL_SECONDS
    )
    min_coverage_percent: _Percent = DEFAULT_MIN_COVERAGE_PERCENT
    max_gap_seconds: Annotated[int, pydantic.Field(ge=1, le=2**32 - 1, strict=True)] = (
        DEFAULT_MAX_GAP_SECONDS
    )


class AmountsSchema(_Strict):
    """EUR released per period for each condition met (0: the condition is not agreed)."""

    soc_window: _Eur = 0.0
    max_depth_of_discharge: _Eur = 0.0
    max_c_rate: _Eur = 0.0
    temperature_band: _Eur = 0.0
    max_cycles_per_day: _Eur = 0.0
    min_state_of_health: _Eur = 0.0


class ParticipantSchema(_Strict):
    """A participant and its share of every release, in basis points."""

    id: _Name
    share_bps: Annotated[int, pydantic.Field(ge=1, le=TOTAL_BPS, strict=True)]


class AgreementSchema(_Strict):
    """``agreement.yaml``."""

    battery_id: _Name
    capacity_kwh: Annotated[
        float, pydantic.Field(ge=MIN_CAPACITY_KWH, le=1e6, allow_inf_nan=False, strict=True)
    ]
    period: PeriodSchema
    expiry: IsoTime
    conditions: ConditionsSchema
    telemetry: TelemetrySchema = TelemetrySchema()
    amounts_eur: AmountsSchema
    participants: Annotated[
        list[ParticipantSchema], pydantic.Field(min_length=1, max_length=MAX_PARTICIPANTS)
    ]

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> AgreementSchema:
        if self.expiry.tzinfo is None:
            raise ValueError("expiry needs a UTC offset (e.g. Z or +01:00)")
        end = self.period.start.timestamp() + self.period.seconds * self.period.count
        if self.expiry.timestamp() < end:
            raise ValueError("expiry comes before the last period ends")
        if self.expiry.timestamp() < end + self.period.seconds:
            # As the contract: the last period needs time to be summarised and released.
            raise ValueError(
                "expiry leaves no release window: at least one period after the last ends"
            )
        if self.telemetry.interval_seconds > self.period.seconds:
            raise ValueError("telemetry.interval_seconds is longer than a period")
        total = sum(p.share_bps for p in self.participants)
        if total != TOTAL_BPS:
            raise ValueError(f"participants' share_bps add up to {total}, not {TOTAL_BPS}")
        ids = [p.id for p in self.participants]
        if len(set(ids)) != len(ids):
            raise ValueError("a participant id is given twice")
        return self


@dataclass(frozen=True)
class Agreement:
    """A validated agreement; money in whole micro-EUR, times in Unix seconds."""

    battery_id: str
    capacity_kwh: float
    period_start_s: int
    period_seconds: int
    periods: int
    expiry_s: int
    conditions: ConditionsSchema
    telemetry: TelemetrySchema
    amounts_micro_eur: tuple[int, ...]  # in CONDITION_NAMES order
    participants: tuple[tuple[str, int], ...]  # (id, share_bps)


@dataclass(frozen=True, slots=True)
class TelemetrySample:
    """One telemetry row of one battery."""

    line: int
    time_s: float
    soc_percent: float
    p_kw: float
    temperature_c: float
    soh_percent: float | None


def read_agreement(path: Path) -> Agreement:
    """Read and validate ``agreement.yaml``.

    Raises
    ------
    InputError
        Malformed YAML, an unknown or missing key, a value out of range, shares not
        adding up to 10,000 bps, an amount finer than 1 micro-EUR, or nothing funded.
    """
    document = read_yaml_mapping(path, "battery reward agreement")
    schema = validated_model(AgreementSchema, document, path)
    amounts = []
    for name in CONDITION_NAMES:
        try:
            amounts.append(exact_micro_eur(getattr(schema.amounts_eur, name)))
        except ValueError as exc:
            raise InputError(path, str(exc), field=f"amounts_eur.{name}") from None
    if not any(amounts):
        raise InputError(path, "no condition has an amount: nothing to fund", field="amounts_eur")
    start = schema.period.start.timestamp()
    if start != int(start) or schema.expiry.timestamp() != int(schema.expiry.timestamp()):
        raise InputError(path, "times must be whole seconds", field="period.start")
    return Agreement(
        battery_id=schema.battery_id,
        capacity_kwh=schema.capacity_kwh,
        period_start_s=int(start),
        period_seconds=schema.period.seconds,
        periods=schema.period.count,
        expiry_s=int(schema.expiry.timestamp()),
        conditions=schema.conditions,
        telemetry=schema.telemetry,
        amounts_micro_eur=tuple(amounts),
        participants=tuple((p.id, p.share_bps) for p in schema.participants),
    )


def _number(cells: Cells, field: str, low: float, high: float) -> float:
    value = cells.text(field)
    parsed = cells.finite(field)
    if not low <= parsed <= high:
        raise cells.fail(field, f"{shown(value)} is outside [{low:g}, {high:g}]")
    return parsed


def read_telemetry(path: Path, battery_id: str) -> list[TelemetrySample]:
    """Read ``telemetry.csv``: the samples of ``battery_id``, in time order.

    Rows of other batteries are refused (one agreement, one battery), as are repeated
    or decreasing times.

    Raises
    ------
    InputError
        Naming the file, row and field.
    """
    rows = iter_cells(
        path,
        "battery telemetry",
        ("battery_id", "timestamp", "soc", "p_kw", "temperature_c"),
        ("soh",),
        max_rows=MAX_TELEMETRY_ROWS,
        limit_bytes=TELEMETRY_LIMIT_BYTES,
    )
    samples: list[TelemetrySample] = []
    for cells in rows:
        found = cells.identifier("battery_id")
        if found != battery_id:
            raise cells.fail(
                "battery_id", f"'{found}' is not the agreement's battery '{battery_id}'"
            )
        time_s = cells.timestamp("timestamp").timestamp()
        if samples and time_s <= samples[-1].time_s:
            raise cells.fail(
                "timestamp", f"not after the previous row's time (row {samples[-1].line})"
            )
        soh = None
        if cells.has("soh") and cells.record["soh"]:
            soh = _number(cells, "soh", 0.0, 100.0)
        samples.append(
            TelemetrySample(
                line=cells.line,
                time_s=time_s,
                soc_percent=_number(cells, "soc", 0.0, 100.0),
                p_kw=_number(cells, "p_kw", -1e6, 1e6),
                temperature_c=_number(cells, "temperature_c", -100.0, 200.0),
                soh_percent=soh,
            )
        )
    if not samples:
        raise InputError(path, "no telemetry rows")
    return samples
