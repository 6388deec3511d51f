"""``gridmatch battery-rewards DIR``: read, summarise, judge and write the verdicts.

Writes ``OUT/periods.csv`` (each period's summary and coverage), ``OUT/verdicts.csv``
(per period and condition: verdict and micro-EUR released) and ``OUT/summary.json``
(totals, thresholds, each participant's micro-EUR) through
:mod:`gridmatch.results_io.battery_rewards`. The chain side
(:mod:`gridmatch.settlement.battery_rewards`) releases the same on ``BatteryRewards.sol``
and checks it to the last unit.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from gridmatch.battery_rewards.conditions import (
    MET,
    Thresholds,
    covered,
    split,
    thresholds_of,
    verdicts,
)
from gridmatch.battery_rewards.summary import PeriodSummary, Summary, period_summaries
from gridmatch.errors import InputError
from gridmatch.results_io.battery_rewards import (
    BatteryRewardsSummary,
    ConditionVerdict,
    PeriodRow,
    VerdictRow,
    write_battery_rewards,
)
from gridmatch.scenario_io.battery_input import (
    AGREEMENT_FILE,
    CONDITION_NAMES,
    TELEMETRY_FILE,
    Agreement,
    read_agreement,
    read_telemetry,
)


@dataclass(frozen=True)
class Evaluation:
    """An agreement judged on its telemetry."""

    agreement: Agreement
    periods: tuple[PeriodSummary, ...]
    # (period, condition, verdict, micro-EUR) in period and condition order
    verdicts: tuple[tuple[int, str, str, int], ...]
    released_micro_eur: tuple[int, ...]  # per period
    payouts_micro_eur: dict[str, int]  # per participant, over all periods

    @property
    def funded_micro_eur(self) -> int:
        """What the sponsor funds: periods x sum of the amounts."""
        return self.agreement.periods * sum(self.agreement.amounts_micro_eur)

    @property
    def total_released_micro_eur(self) -> int:
        """Everything released over the periods judged."""
        return sum(self.released_micro_eur)


def evaluate(agreement: Agreement, periods: list[PeriodSummary]) -> Evaluation:
    """Judge every period and split each period's release by the shares."""
    rows = []
    released = []
    payouts = {p: 0 for p, _ in agreement.participants}
    for period in periods:
        total = 0
        for name, verdict, amount in verdicts(agreement, period.summary):
            rows.append((period.period, name, verdict, amount))
            total += amount if verdict == MET else 0
        released.append(total)
        if total:
            for participant, part in split(agreement, total).items():
                payouts[participant] += part
    return Evaluation(agreement, tuple(periods), tuple(rows), tuple(released), payouts)


def evaluate_folder(folder: Path) -> Evaluation:
    """Read ``agreement.yaml`` and ``telemetry.csv`` from ``folder`` and judge them."""
    if not folder.is_dir():
        raise InputError(folder, "not a folder (expected agreement.yaml and telemetry.csv)")
    agreement = read_agreement(folder / AGREEMENT_FILE)
    samples = read_telemetry(folder / TELEMETRY_FILE, agreement.battery_id)
    return evaluate(agreement, period_summaries(agreement, samples))


def write_evaluation(
    evaluation: Evaluation, out_dir: Path, *, on_chain: bool = False
) -> list[Path]:
    """Write periods.csv, verdicts.csv and summary.json (``on_chain``: chain.json beside)."""
    agreement = evaluation.agreement
    thresholds = thresholds_of(agreement)
    rows = []
    for p, released in zip(evaluation.periods, evaluation.released_micro_eur, strict=True):
        s = p.summary or _NO_SUMMARY
        rows.append(
            PeriodRow(
                period=p.period,
                start_s=p.start_s,
                end_s=p.end_s,
                samples=p.samples,
                summarised=p.summary is not None,
                covered=p.summary is not None and covered(thresholds, p.summary),
                soc_min_bps=s.soc_min_bps,
                soc_max_bps=s.soc_max_bps,
                max_dod_bps=s.max_dod_bps,
                max_c_rate_milli=s.max_c_rate_milli,
                temp_min_deci_c=s.temp_min_deci_c,
                temp_max_deci_c=s.temp_max_deci_c,
                cycles_per_day_milli=s.cycles_per_day_milli,
                soh_bps=s.soh_bps,
                coverage_bps=s.coverage_bps,
                max_gap_seconds=s.max_gap_seconds,
                equivalent_full_cycles=p.equivalent_full_cycles,
                depth_of_discharge_percent=p.depth_of_discharge_percent,
                max_c_rate=p.max_c_rate,
                released_micro_eur=released,
            )
        )
    summary = BatteryRewardsSummary(
        battery_id=agreement.battery_id,
        capacity_kwh=agreement.capacity_kwh,
        period_start_s=agreement.period_start_s,
        period_seconds=agreement.period_seconds,
        periods=agreement.periods,
        expiry_s=agreement.expiry_s,
        interval_seconds=agreement.telemetry.interval_seconds,
        funded_micro_eur=evaluation.funded_micro_eur,
        released_micro_eur=evaluation.total_released_micro_eur,
        released_per_period_micro_eur=list(evaluation.released_micro_eur),
        payouts_micro_eur=evaluation.payouts_micro_eur,
        shares_bps=dict(agreement.participants),
        conditions_met=sum(1 for r in evaluation.verdicts if r[2] == MET),
        thresholds=dict(zip(_THRESHOLD_FIELDS, thresholds.as_tuple(), strict=True)),
        amounts_micro_eur=dict(zip(CONDITION_NAMES, agreement.amounts_micro_eur, strict=True)),
        on_chain=on_chain,
    )
    verdict_rows = [
        VerdictRow(period, name, ConditionVerdict(verdict), amount)
        for period, name, verdict, amount in evaluation.verdicts
    ]
    return write_battery_rewards(out_dir, rows, verdict_rows, summary)


# A period too thin to summarise: zeros in its summary columns (``summarised`` false).
_NO_SUMMARY = Summary(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
_THRESHOLD_FIELDS = tuple(f.name for f in fields(Thresholds))
