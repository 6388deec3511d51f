"""The conditions' verdicts on a period's summary, and the split of what they release.

The same rules as ``BatteryRewards.metMask`` and ``_pay`` (contracts/src/BatteryRewards.sol),
restated on the integers of :class:`~gridmatch.battery_rewards.summary.Summary`:
thresholds are inclusive; the SoH condition needs SoH data; a period whose telemetry
covers it less than the agreement's ``telemetry`` asks (``BatteryRewards`` refuses its
summary) releases nothing, every agreed condition ``insufficient_data``; a condition
with amount 0 is not agreed and releases nothing; each participant gets ``amount x share / 10,000``
rounded down, the last one the remainder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gridmatch.battery_rewards.summary import Summary
from gridmatch.scenario_io.battery_input import (
    CONDITION_NAMES,
    TOTAL_BPS,
    Agreement,
    ConditionsSchema,
    TelemetrySchema,
)

MET = "met"
NOT_MET = "not_met"
NOT_AGREED = "not_agreed"
INSUFFICIENT_DATA = "insufficient_data"


@dataclass(frozen=True)
class Thresholds:
    """``BatteryRewards.Conditions``: the thresholds in the summary's integer units.

    The YAML's numbers convert exactly where they are exact, and towards the stricter
    side otherwise (minimum thresholds up, maximum ones down): never in the battery's
    favour.
    """

    soc_min_bps: int
    soc_max_bps: int
    max_dod_bps: int
    max_c_rate_milli: int
    temp_min_deci_c: int
    temp_max_deci_c: int
    max_cycles_per_day_milli: int
    min_soh_bps: int
    min_coverage_bps: int
    max_gap_seconds: int

    @classmethod
    def of(cls, c: ConditionsSchema, telemetry: TelemetrySchema) -> Thresholds:
        """Convert the agreement's conditions and its telemetry coverage rule."""

        def up(x: float) -> int:
            return math.ceil(x - 1e-9)

        def down(x: float) -> int:
            return math.floor(x + 1e-9)

        return cls(
            soc_min_bps=up(c.soc_window_percent[0] * 100),
            soc_max_bps=down(c.soc_window_percent[1] * 100),
            max_dod_bps=down(c.max_depth_of_discharge_percent * 100),
            max_c_rate_milli=down(c.max_c_rate * 1000),
            temp_min_deci_c=up(c.temperature_band_c[0] * 10),
            temp_max_deci_c=down(c.temperature_band_c[1] * 10),
            max_cycles_per_day_milli=down(c.max_equivalent_full_cycles_per_day * 1000),
            min_soh_bps=up(c.min_state_of_health_percent * 100),
            min_coverage_bps=up(telemetry.min_coverage_percent * 100),
            max_gap_seconds=telemetry.max_gap_seconds,
        )

    def as_tuple(self) -> tuple[int, ...]:
        """Return the fields in the contract's order."""
        return (
            self.soc_min_bps,
            self.soc_max_bps,
            self.max_dod_bps,
            self.max_c_rate_milli,
            self.temp_min_deci_c,
            self.temp_max_deci_c,
            self.max_cycles_per_day_milli,
            self.min_soh_bps,
            self.min_coverage_bps,
            self.max_gap_seconds,
        )


def met(thresholds: Thresholds, summary: Summary) -> tuple[bool, ...]:
    """Whether ``summary`` meets each condition, in :data:`CONDITION_NAMES` order."""
    t, s = thresholds, summary
    return (
        s.soc_min_bps >= t.soc_min_bps and s.soc_max_bps <= t.soc_max_bps,
        s.max_dod_bps <= t.max_dod_bps,
        s.max_c_rate_milli <= t.max_c_rate_milli,
        s.temp_min_deci_c >= t.temp_min_deci_c and s.temp_max_deci_c <= t.temp_max_deci_c,
        s.cycles_per_day_milli <= t.max_cycles_per_day_milli,
        s.soh_bps != 0 and s.soh_bps >= t.min_soh_bps,
    )


def covered(thresholds: Thresholds, summary: Summary) -> bool:
    """Whether the telemetry covers the period well enough (``BatteryRewards.release``)."""
    return (
        summary.coverage_bps >= thresholds.min_coverage_bps
        and summary.max_gap_seconds <= thresholds.max_gap_seconds
    )


def thresholds_of(agreement: Agreement) -> Thresholds:
    """Return the agreement's thresholds as ``BatteryRewards.Conditions`` holds them."""
    return Thresholds.of(agreement.conditions, agreement.telemetry)


def verdicts(agreement: Agreement, summary: Summary | None) -> list[tuple[str, str, int]]:
    """``(condition, verdict, micro-EUR released)`` of each condition for one period.

    Too few samples to summarise, or a summary below the coverage rule: every agreed
    condition is ``insufficient_data`` and releases nothing.
    """
    thresholds = thresholds_of(agreement)
    judged = summary is not None and covered(thresholds, summary)
    found = met(thresholds, summary) if summary is not None else (False,) * len(CONDITION_NAMES)
    out = []
    for name, ok, amount in zip(CONDITION_NAMES, found, agreement.amounts_micro_eur, strict=True):
        if amount == 0:
            out.append((name, NOT_AGREED, 0))
        elif not judged:
            out.append((name, INSUFFICIENT_DATA, 0))
        else:
            out.append((name, MET if ok else NOT_MET, amount if ok else 0))
    return out


def split(agreement: Agreement, amount: int) -> dict[str, int]:
    """Each participant's part of one release (the last one gets the rounding remainder)."""
    parts: dict[str, int] = {}
    paid = 0
    for participant, share in agreement.participants[:-1]:
        part = amount * share // TOTAL_BPS
        parts[participant] = part
        paid += part
    parts[agreement.participants[-1][0]] = amount - paid
    return parts
