"""``gridmatch battery-rewards DIR``: read, summarise, judge and write the verdicts.

Writes ``OUT/periods.csv`` (each period's summary), ``OUT/verdicts.csv`` (per period and
condition: verdict and micro-EUR released) and ``OUT/summary.json`` (totals, each
participant's micro-EUR). The chain side (:mod:`gridmatch.settlement.battery_rewards`)
releases the same on ``BatteryRewards.sol`` and checks it to the last unit.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from gridmatch.battery_rewards.conditions import MET, split, verdicts
from gridmatch.battery_rewards.summary import PeriodSummary, period_summaries
from gridmatch.errors import InputError
from gridmatch.results_io.atomic import write_file_atomically
from gridmatch.scenario_io.battery_input import (
    AGREEMENT_FILE,
    TELEMETRY_FILE,
    Agreement,
    read_agreement,
    read_telemetry,
)

PERIODS_FILE = "periods.csv"
VERDICTS_FILE = "verdicts.csv"
SUMMARY_FILE = "summary.json"


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


def _csv(header: list[str], rows: list[list[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def write_evaluation(
    evaluation: Evaluation, out_dir: Path, chain: dict[str, object] | None = None
) -> list[Path]:
    """Write the three files (with ``chain``'s record in summary.json, if given)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = [
        "soc_min_bps",
        "soc_max_bps",
        "max_dod_bps",
        "max_c_rate_milli",
        "temp_min_deci_c",
        "temp_max_deci_c",
        "cycles_per_day_milli",
        "soh_bps",
    ]
    period_rows: list[list[object]] = []
    for p in evaluation.periods:
        values: list[object] = list(p.summary.as_tuple()) if p.summary else [""] * len(fields)
        period_rows.append(
            [
                p.period,
                p.start_s,
                p.end_s,
                p.samples,
                *values,
                repr(p.equivalent_full_cycles),
                repr(p.depth_of_discharge_percent),
                repr(p.max_c_rate),
            ]
        )
    paths = [out_dir / PERIODS_FILE, out_dir / VERDICTS_FILE, out_dir / SUMMARY_FILE]
    write_file_atomically(
        paths[0],
        _csv(
            [
                "period",
                "start_s",
                "end_s",
                "samples",
                *fields,
                "equivalent_full_cycles",
                "depth_of_discharge_percent",
                "max_c_rate",
            ],
            period_rows,
        ),
    )
    write_file_atomically(
        paths[1],
        _csv(
            ["period", "condition", "verdict", "released_micro_eur"],
            [list(r) for r in evaluation.verdicts],
        ),
    )
    document: dict[str, object] = {
        "battery_id": evaluation.agreement.battery_id,
        "periods": evaluation.agreement.periods,
        "funded_micro_eur": evaluation.funded_micro_eur,
        "released_micro_eur": evaluation.total_released_micro_eur,
        "released_per_period_micro_eur": list(evaluation.released_micro_eur),
        "payouts_micro_eur": evaluation.payouts_micro_eur,
        "conditions_met": sum(1 for r in evaluation.verdicts if r[2] == MET),
    }
    if chain is not None:
        document["chain"] = chain
    write_file_atomically(paths[2], json.dumps(document, indent=1, sort_keys=True) + "\n")
    return paths
