"""The schema of ``prepaid.yaml`` (pydantic v2): tariff, report interval and policies.

Unknown keys, keys given twice, NaN and strings where numbers belong are refused.
Money is EUR with at most six decimals (whole micro-EUR), checked here so that every
amount inside the simulation is an exact integer.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridmatch.scenario_io.strict_yaml import IsoTime
from gridmatch.units import MINUTES_PER_DAY, exact_micro_eur

HOURS_PER_DAY = 24
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Hour = Annotated[int, Field(ge=0, le=HOURS_PER_DAY - 1)]
# Far beyond any tariff, small enough that every cost stays an exact int64.
MAX_PRICE_EUR_PER_KWH = 1000.0
MAX_EUR = 1e6
# A meter reports at least every week and at most every minute.
MAX_REPORT_INTERVAL_MIN = 7 * MINUTES_PER_DAY
# A token unit of 1 Wh to 1 MWh; one token carries up to prepaid.tokens.MAX_UNITS units.
MAX_TOKEN_UNIT_WH = 1_000_000
Euro = Annotated[float, Field(ge=0.0, le=MAX_EUR)]
Price = Annotated[float, Field(ge=0.0, le=MAX_PRICE_EUR_PER_KWH)]


def _whole_micro_eur(value: float) -> float:
    exact_micro_eur(value)  # raises ValueError, which pydantic reports with the key
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)


class BandSpec(_Strict):
    """One time-of-use band: a price for some local hours of every day."""

    name: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
    hours: Annotated[list[Hour], Field(min_length=1, max_length=HOURS_PER_DAY)]
    eur_per_kwh: Price

    _price = field_validator("eur_per_kwh")(_whole_micro_eur)


class TariffSpec(_Strict):
    """Energy price: one flat price, or bands that cover each local hour exactly once."""

    flat_eur_per_kwh: Price | None = None
    bands: Annotated[list[BandSpec], Field(min_length=1, max_length=HOURS_PER_DAY)] | None = None

    @field_validator("flat_eur_per_kwh")
    @classmethod
    def _flat_price(cls, value: float | None) -> float | None:
        return None if value is None else _whole_micro_eur(value)

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.flat_eur_per_kwh is None) == (self.bands is None):
            raise ValueError("give exactly one of 'flat_eur_per_kwh' and 'bands'")
        if self.bands is not None:
            names = [band.name for band in self.bands]
            if len(set(names)) != len(names):
                raise ValueError("two bands have the same name")
            owner: dict[int, str] = {}
            for band in self.bands:
                for hour in band.hours:
                    if hour in owner:
                        raise ValueError(
                            f"hour {hour} is in bands '{owner[hour]}' and '{band.name}'"
                        )
                    owner[hour] = band.name
            missing = sorted(set(range(HOURS_PER_DAY)) - set(owner))
            if missing:
                raise ValueError(f"no band covers hour(s) {', '.join(map(str, missing))}")
        return self


class FriendlyCreditSpec(_Strict):
    """Local times at which nobody is cut off (a cutoff waits for the first time after)."""

    hours: Annotated[list[Hour], Field(max_length=HOURS_PER_DAY)] = []
    weekdays: Annotated[list[Weekday], Field(max_length=7)] = []


class TokenSpec(_Strict):
    """The OpenPAYGO limit tokens: key derivation (demo) and what one unit means."""

    key_seed: Annotated[
        str,
        Field(
            min_length=8,
            max_length=200,
            description="per-meter secret keys are derived from it (simulation only: real "
            "meters are provisioned with random keys)",
        ),
    ]
    unit_wh: Annotated[int, Field(ge=1, le=MAX_TOKEN_UNIT_WH)] = 100


class PrepaidSpec(_Strict):
    """Top level of ``prepaid.yaml``."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    start: IsoTime | None = None
    end: IsoTime | None = None
    reading_minutes: Annotated[int, Field(ge=1, le=MINUTES_PER_DAY)]
    report_interval_min: Annotated[int, Field(ge=1, le=MAX_REPORT_INTERVAL_MIN)]
    tariff: TariffSpec
    standing_charge_eur_per_day: Euro = 0.0
    low_credit_warning_eur: Euro = 0.0
    emergency_credit_eur: Euro = 0.0
    reconnect_threshold_eur: Euro = 0.0
    friendly_credit: FriendlyCreditSpec = FriendlyCreditSpec()
    tokens: TokenSpec

    _money = field_validator(
        "standing_charge_eur_per_day",
        "low_credit_warning_eur",
        "emergency_credit_eur",
        "reconnect_threshold_eur",
    )(_whole_micro_eur)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not an IANA time zone (e.g. Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _times(self) -> Self:
        if self.report_interval_min % self.reading_minutes:
            raise ValueError(
                f"report_interval_min ({self.report_interval_min}) must be a multiple of "
                f"reading_minutes ({self.reading_minutes}): a reading belongs to one report"
            )
        for key in ("start", "end"):
            moment = getattr(self, key)
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"{key} needs a UTC offset (e.g. 2026-03-02T00:00:00+01:00)")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self
