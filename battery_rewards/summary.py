"""One period's telemetry summary, in the integers ``BatteryRewards.Summary`` holds.

Cycles are counted with the ``rainflow`` package (ASTM E1049 rainflow counting of the
state-of-charge series): the depth of discharge of the period is its largest cycle
range (half cycles included), its equivalent full cycles the sum of range x count / 100
(a full 0-100-0 % cycle is one; a single charge 0-100 % half of one), scaled to a day.
The C-rate is the largest |P| / capacity. Coverage is the share of the expected samples
(``period / telemetry.interval_seconds``) present, at most 100 %; the longest gap runs
between consecutive samples and from the period's edges to its first and last sample.
Every quantity is rounded against the battery
(minima down, maxima up, after a 1e-9 guard against binary noise), so a summary that
meets a threshold meets it without rounding help.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import rainflow

from gridmatch.scenario_io.battery_input import Agreement, TelemetrySample

# A period needs at least this many samples to be summarised.
MIN_SAMPLES = 2
_GUARD = 1e-9
_SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Summary:
    """``BatteryRewards.Summary``: what validators attest of one period.

    SoC and SoH in basis points of 100 %, C-rate and cycles per day in thousandths,
    temperatures in tenths of a degree C; ``soh_bps`` 0 when the period has no SoH data;
    ``coverage_bps`` the share of the expected samples present, ``max_gap_seconds`` the
    longest stretch without one.
    """

    soc_min_bps: int
    soc_max_bps: int
    max_dod_bps: int
    max_c_rate_milli: int
    temp_min_deci_c: int
    temp_max_deci_c: int
    cycles_per_day_milli: int
    soh_bps: int
    coverage_bps: int
    max_gap_seconds: int

    def as_tuple(self) -> tuple[int, ...]:
        """Return the fields in the contract's order."""
        return (
            self.soc_min_bps,
            self.soc_max_bps,
            self.max_dod_bps,
            self.max_c_rate_milli,
            self.temp_min_deci_c,
            self.temp_max_deci_c,
            self.cycles_per_day_milli,
            self.soh_bps,
            self.coverage_bps,
            self.max_gap_seconds,
        )


@dataclass(frozen=True)
class PeriodSummary:
    """A period, its samples and its summary (``None``: too few samples to judge)."""

    period: int
    start_s: int
    end_s: int
    samples: int
    summary: Summary | None
    # The raw numbers behind the summary, for the verdict file.
    equivalent_full_cycles: float
    depth_of_discharge_percent: float
    max_c_rate: float


def _down(x: float) -> int:
    return math.floor(x + _GUARD)


def _up(x: float) -> int:
    return max(0, math.ceil(x - _GUARD))


def coverage(
    samples: Sequence[TelemetrySample], start_s: int, period_seconds: int, interval_seconds: int
) -> tuple[int, int]:
    """Return a period's coverage (bps of the expected samples) and longest gap (seconds).

    Both rounded against the battery: coverage down, the gap up.
    """
    expected = max(1, period_seconds // interval_seconds)
    coverage_bps = min(10_000, len(samples) * 10_000 // expected)
    edges = [float(start_s), *(s.time_s for s in samples), float(start_s + period_seconds)]
    gap = max(b - a for a, b in itertools.pairwise(edges))
    return coverage_bps, min(2**32 - 1, _up(gap))


def summarise(
    samples: Sequence[TelemetrySample],
    period_seconds: int,
    capacity_kwh: float,
    *,
    start_s: int | None = None,
    interval_seconds: int | None = None,
) -> tuple[Summary, float, float, float]:
    """Return one period's summary and its equivalent full cycles, DoD (%) and C-rate.

    The coverage fields need the period's ``start_s`` and the expected
    ``interval_seconds``; without them the samples are taken as covering the period
    (10,000 bps, gap 0), for tests of the other quantities.
    """
    soc = [s.soc_percent for s in samples]
    # rainflow 3.2 finds no cycle in a two-point series; it is one half cycle.
    cycles = (
        list(rainflow.extract_cycles(soc)) if len(soc) > 2 else [(abs(soc[1] - soc[0]), 0.0, 0.5)]
    )
    # The deepest cycle spans the lowest to the highest SoC (BatteryRewards.checkSummary
    # holds a summary to that); rainflow 3.2 can lose that range when a reversal is too
    # small for it to see ([1, 0, 1e-300, 0, 1] gives two cycles of range 0).
    depth = max(max((c[0] for c in cycles), default=0.0), max(soc) - min(soc))
    # The deepest cycle is at least a half cycle, so the cycles are at least half the
    # depth (checkSummary holds a summary to that too), whatever rainflow lost.
    efc = max(sum(c[0] * c[2] for c in cycles), depth / 2.0) / 100.0
    c_rate = max(abs(s.p_kw) for s in samples) / capacity_kwh
    soh = [s.soh_percent for s in samples if s.soh_percent is not None]
    temps = [s.temperature_c for s in samples]
    coverage_bps, max_gap_s = (
        coverage(samples, start_s, period_seconds, interval_seconds)
        if start_s is not None and interval_seconds is not None
        else (10_000, 0)
    )
    summary = Summary(
        soc_min_bps=_down(min(soc) * 100),
        soc_max_bps=min(10_000, _up(max(soc) * 100)),
        max_dod_bps=min(10_000, _up(depth * 100)),
        max_c_rate_milli=min(2**32 - 1, _up(c_rate * 1000)),
        temp_min_deci_c=math.floor(min(temps) * 10 + _GUARD),
        temp_max_deci_c=math.ceil(max(temps) * 10 - _GUARD),
        cycles_per_day_milli=min(2**32 - 1, _up(efc * _SECONDS_PER_DAY / period_seconds * 1000)),
        soh_bps=_down(min(soh) * 100) if soh else 0,
        coverage_bps=coverage_bps,
        max_gap_seconds=max_gap_s,
    )
    return summary, efc, depth, c_rate


def period_summaries(
    agreement: Agreement, samples: Sequence[TelemetrySample]
) -> list[PeriodSummary]:
    """Split the samples into the agreement's periods (``[start, end)``) and summarise each."""
    found: list[list[TelemetrySample]] = [[] for _ in range(agreement.periods)]
    for sample in samples:
        k = math.floor((sample.time_s - agreement.period_start_s) / agreement.period_seconds)
        if 0 <= k < agreement.periods:
            found[k].append(sample)
    out = []
    for k, part in enumerate(found):
        start = agreement.period_start_s + k * agreement.period_seconds
        if len(part) < MIN_SAMPLES:
            out.append(
                PeriodSummary(
                    k, start, start + agreement.period_seconds, len(part), None, 0.0, 0.0, 0.0
                )
            )
            continue
        summary, efc, depth, c_rate = summarise(
            part,
            agreement.period_seconds,
            agreement.capacity_kwh,
            start_s=start,
            interval_seconds=agreement.telemetry.interval_seconds,
        )
        out.append(
            PeriodSummary(
                k, start, start + agreement.period_seconds, len(part), summary, efc, depth, c_rate
            )
        )
    return out
