"""The report of a battery reward folder (``gridmatch battery-rewards``, then ``report``).

One self-contained HTML page like the other reports (an inline PNG chart, no external
URL), built only from the folder's files through ``results_io.battery_rewards``: the
agreement's totals; per period the telemetry summary (SoC range, depth of discharge,
cycles a day, C-rate, temperature, SoH, coverage and longest gap) against each
condition's threshold, met or not, and the micro-EUR released; what each participant
received; and, when the run went on chain, the release ``BatteryRewards.sol`` made next
to the Python evaluation, with the contract's address and every transaction's hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gridmatch.report import markup as html
from gridmatch.report.png import new_figure, png_data_uri
from gridmatch.results_io.atomic import claim_file, write_file_atomically
from gridmatch.results_io.battery_rewards import (
    CHAIN_FILE,
    PERIODS_FILE,
    VERDICTS_FILE,
    BatteryRewardsSummary,
    ChainRecord,
    ConditionVerdict,
    PeriodRow,
    VerdictRow,
    read_battery_summary,
    read_battery_verdicts,
    read_chain_record,
    read_periods,
)
from gridmatch.results_io.layout import REPORT_FILE
from gridmatch.units import micro_eur_to_eur

# Period rows in the tables; the chart and the CSV files hold every period.
MAX_ROWS = 400
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
_MARK = {
    ConditionVerdict.MET: "met",
    ConditionVerdict.NOT_MET: "NOT MET",
    ConditionVerdict.NOT_AGREED: "not agreed",
    ConditionVerdict.INSUFFICIENT_DATA: "insufficient data",
}


@dataclass(frozen=True)
class BatteryRewardsReportInfo:
    """What :func:`build_battery_rewards_report` wrote."""

    path: Path
    size_bytes: int
    n_periods: int
    on_chain: bool

    @property
    def headline(self) -> str:
        """One line for the terminal: what the report covers and its size."""
        chain = ", with the on-chain release" if self.on_chain else ""
        return (
            f"battery rewards report of {self.n_periods} periods{chain}, "
            f"{self.size_bytes / 1e6:.2f} MB"
        )


def _eur(micro_eur: int) -> str:
    return f"{micro_eur_to_eur(micro_eur):.6f}"


def _time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def build_battery_rewards_report(out_dir: Path) -> BatteryRewardsReportInfo:
    """Write ``OUT_DIR/report.html`` for an output folder of ``gridmatch battery-rewards``.

    Raises
    ------
    gridmatch.errors.InputError
        Not a battery rewards output folder, or one of its files missing or malformed.
    """
    summary = read_battery_summary(out_dir)
    periods = read_periods(out_dir)
    verdicts = read_battery_verdicts(out_dir)
    # A chain.json left by an earlier --chain run is not this evaluation's: shown only
    # when summary.json says this run went on chain.
    chain = read_chain_record(out_dir) if summary.on_chain else None
    body = (
        _overview(summary, periods, verdicts, chain)
        + _periods_section(summary, periods)
        + _verdicts_section(summary, periods, verdicts, chain)
        + _payouts_section(summary, chain)
        + (_chain_section(summary, chain) if chain is not None else "")
    )
    files = f"{PERIODS_FILE}, {VERDICTS_FILE}, summary.json" + (
        f" and {CHAIN_FILE}" if chain is not None else ""
    )
    document = html.page(
        f"gridmatch battery rewards report: {summary.battery_id}",
        f"output folder {out_dir.resolve()} · {summary.periods} periods",
        body,
        f"Written by `gridmatch report` from {files}.",
    )
    path = out_dir / REPORT_FILE
    claim_file(path)
    write_file_atomically(path, document)
    return BatteryRewardsReportInfo(path, path.stat().st_size, len(periods), chain is not None)


def _overview(
    summary: BatteryRewardsSummary,
    periods: list[PeriodRow],
    verdicts: list[VerdictRow],
    chain: ChainRecord | None,
) -> str:
    t = summary.thresholds
    rows = [
        ("battery", f"{summary.battery_id}, {summary.capacity_kwh:g} kWh"),
        (
            "periods",
            f"{summary.periods} of {summary.period_seconds} s from {_time(summary.period_start_s)}",
        ),
        ("expiry", _time(summary.expiry_s)),
        (
            "telemetry coverage rule",
            f"at least {t['min_coverage_bps'] / 100:g} % of the samples expected every "
            f"{summary.interval_seconds} s, no gap over {t['max_gap_seconds']} s",
        ),
        ("funded", f"{_eur(summary.funded_micro_eur)} EUR"),
        ("released (Python)", f"{_eur(summary.released_micro_eur)} EUR"),
        ("conditions met", f"{summary.conditions_met} of {len(verdicts)}"),
        (
            "periods not covered by telemetry",
            str(sum(1 for p in periods if not p.covered)),
        ),
    ]
    if chain is not None:
        rows.append(("released on chain", f"{_eur(chain.released_micro_eur)} EUR"))
        rows.append(
            (
                "chain and Python",
                "equal to the last micro-EUR" if chain.matches_evaluation else "DIFFERENT",
            )
        )
        rows.append(
            (
                "released = credited = claimed + still owed",
                _reconciled_word(reconciliation(summary, chain)),
            )
        )
        if chain.reclaim is not None:
            rows.append(
                ("reclaimed by the sponsor", f"{_eur(chain.reclaim.reclaimed_micro_eur)} EUR")
            )
    else:
        rows.append(("on chain", "no (run with --chain to release on BatteryRewards.sol)"))
    return html.section(
        "overview",
        "Battery reward agreement",
        html.facts(rows)
        + html.image(
            png_data_uri(_release_chart(summary, verdicts)),
            "micro-EUR released per period and condition",
            "EUR released per period, stacked by condition; the line is the most a period "
            "can release (every agreed condition met).",
        ),
    )


def _periods_section(summary: BatteryRewardsSummary, periods: list[PeriodRow]) -> str:
    t = summary.thresholds
    threshold_row = [
        "agreement",
        "",
        "",
        f">= {t['min_coverage_bps'] / 100:g}",
        f"<= {t['max_gap_seconds']}",
        f"{t['soc_min_bps'] / 100:g}–{t['soc_max_bps'] / 100:g}",
        f"<= {t['max_dod_bps'] / 100:g}",
        f"<= {t['max_cycles_per_day_milli'] / 1000:g}",
        f"<= {t['max_c_rate_milli'] / 1000:g}",
        f"{t['temp_min_deci_c'] / 10:g}–{t['temp_max_deci_c'] / 10:g}",
        f">= {t['min_soh_bps'] / 100:g}",
        "",
    ]
    rows = [threshold_row]
    for p in periods[:MAX_ROWS]:
        if not p.summarised:
            rows.append([str(p.period), _time(p.start_s), str(p.samples), *["–"] * 8, "0"])
            continue
        rows.append(
            [
                str(p.period),
                _time(p.start_s),
                str(p.samples),
                f"{p.coverage_bps / 100:g}"
                + (" (too low)" if p.coverage_bps < t["min_coverage_bps"] else ""),
                str(p.max_gap_seconds)
                + (" (too long)" if p.max_gap_seconds > t["max_gap_seconds"] else ""),
                f"{p.soc_min_bps / 100:g}–{p.soc_max_bps / 100:g}",
                f"{p.max_dod_bps / 100:g}",
                f"{p.cycles_per_day_milli / 1000:g}",
                f"{p.max_c_rate_milli / 1000:g}",
                f"{p.temp_min_deci_c / 10:g}–{p.temp_max_deci_c / 10:g}",
                f"{p.soh_bps / 100:g}" if p.soh_bps else "no data",
                _eur(p.released_micro_eur),
            ]
        )
    return html.section(
        "periods",
        "Telemetry summary per period",
        _more(len(periods), PERIODS_FILE)
        + html.paragraph(
            "Each period's summary as the validators sign it (rounded against the battery: "
            "minima down, maxima up), under the agreement's thresholds (inclusive)."
        )
        + html.table(
            [
                "period",
                "start",
                "samples",
                "coverage %",
                "longest gap s",
                "SoC %",
                "DoD %",
                "cycles/day",
                "C-rate 1/h",
                "temperature °C",
                "SoH %",
                "released EUR",
            ],
            rows,
            text_columns=(0, 1),
            scroll=True,
        ),
    )


def _verdicts_section(
    summary: BatteryRewardsSummary,
    periods: list[PeriodRow],
    verdicts: list[VerdictRow],
    chain: ChainRecord | None,
) -> str:
    names = list(summary.amounts_micro_eur)
    by: dict[tuple[int, str], VerdictRow] = {(v.period, v.condition): v for v in verdicts}
    on_chain = {r.period: r for r in chain.releases} if chain is not None else {}
    rows = []
    for p in periods[:MAX_ROWS]:
        cells = [str(p.period)]
        for name in names:
            found = by.get((p.period, name))
            cells.append(
                "–"
                if found is None
                else _MARK[found.verdict]
                + (f" {_eur(found.released_micro_eur)}" if found.released_micro_eur else "")
            )
        cells.append(_eur(p.released_micro_eur))
        if chain is not None:
            release = on_chain.get(p.period)
            cells.append(
                "–"
                if release is None
                else _eur(release.released_micro_eur)
                if release.submitted
                else f"not submitted: {release.note}"
            )
        rows.append(cells)
    header = ["period", *names, "released EUR (Python)"]
    if chain is not None:
        header.append("released EUR (chain)")
    amounts = ", ".join(
        f"{name} {_eur(amount)}" for name, amount in summary.amounts_micro_eur.items()
    )
    return html.section(
        "verdicts",
        "Conditions per period",
        _more(len(periods), VERDICTS_FILE)
        + html.paragraph(f"EUR per period and condition met: {amounts}.")
        + html.table(
            header,
            rows,
            text_columns=tuple(range(1, len(header) - (2 if chain is not None else 1)))
            + ((len(header) - 1,) if chain is not None else ()),
            scroll=True,
        ),
    )


@dataclass(frozen=True)
class ParticipantMoney:
    """One participant's money, evaluated and on chain (whole micro-EUR).

    ``credited`` and ``owed`` are None where the chain record does not hold them (a
    record written before they were kept).
    """

    participant: str
    released_micro_eur: int  # the Python evaluation's payout
    credited_micro_eur: int | None  # owedOf after the releases, before any claim
    claimed_micro_eur: int  # paid out by BatteryRewards.claim
    owed_micro_eur: int | None  # owedOf after the claims
    gained_micro_eur: int  # the participant's token balance gain

    @property
    def reconciled(self) -> bool | None:
        """Whether released == credited == claimed + still owed; None: not recorded."""
        if self.credited_micro_eur is None or self.owed_micro_eur is None:
            return None
        return (
            self.released_micro_eur
            == self.credited_micro_eur
            == self.claimed_micro_eur + self.owed_micro_eur
        )


def participant_money(summary: BatteryRewardsSummary, chain: ChainRecord) -> list[ParticipantMoney]:
    """Each participant's released, credited, claimed and still-owed micro-EUR."""
    claimed: dict[str, int] = {}
    for claim in chain.claims:
        claimed[claim.participant] = claimed.get(claim.participant, 0) + claim.claimed_micro_eur
    # An older record has no credits at all: not recorded, rather than credited 0.
    credits = chain.credited_micro_eur if chain.credited_micro_eur else None
    return [
        ParticipantMoney(
            participant=p,
            released_micro_eur=summary.payouts_micro_eur.get(p, 0),
            credited_micro_eur=None if credits is None else credits.get(p, 0),
            claimed_micro_eur=claimed.get(p, 0),
            owed_micro_eur=None if chain.owed_micro_eur is None else chain.owed_micro_eur.get(p, 0),
            gained_micro_eur=chain.balances_micro_eur.get(p, 0),
        )
        for p in summary.shares_bps
    ]


def reconciliation(summary: BatteryRewardsSummary, chain: ChainRecord) -> bool | None:
    """Whether released == credited == claimed + still owed, per participant and in total.

    In total, the released side is the chain's own ``released`` of the agreement (and
    the evaluation's, which the run already compared with it); None: credits or what
    is still owed not recorded.
    """
    money = participant_money(summary, chain)
    verdicts = [m.reconciled for m in money]
    if any(v is None for v in verdicts):
        return None
    credited = sum(m.credited_micro_eur or 0 for m in money)
    settled = sum(m.claimed_micro_eur + (m.owed_micro_eur or 0) for m in money)
    return (
        all(verdicts)
        and chain.released_micro_eur == summary.released_micro_eur == credited == settled
    )


def _reconciled_word(verdict: bool | None) -> str:
    return {True: "yes", False: "NO", None: "not recorded"}[verdict]


def _payouts_section(summary: BatteryRewardsSummary, chain: ChainRecord | None) -> str:
    if chain is None:
        rows = [
            [participant, str(share), _eur(summary.payouts_micro_eur.get(participant, 0))]
            for participant, share in summary.shares_bps.items()
        ]
        return html.section(
            "payouts",
            "Participants",
            html.table(
                ["participant", "share bps", "released EUR (Python)"], rows, text_columns=(0,)
            ),
        )

    def maybe(micro_eur: int | None) -> str:
        return "–" if micro_eur is None else _eur(micro_eur)

    money = participant_money(summary, chain)
    rows = [
        [
            m.participant,
            str(summary.shares_bps[m.participant]),
            _eur(m.released_micro_eur),
            maybe(m.credited_micro_eur),
            _eur(m.claimed_micro_eur),
            maybe(m.owed_micro_eur),
            _eur(m.gained_micro_eur),
            _reconciled_word(m.reconciled),
            chain.participants.get(m.participant, "–"),
        ]
        for m in money
    ]
    recorded = all(m.reconciled is not None for m in money)
    rows.append(
        [
            "total",
            str(sum(summary.shares_bps.values())),
            _eur(summary.released_micro_eur),
            _eur(sum(m.credited_micro_eur or 0 for m in money)) if recorded else "–",
            _eur(sum(m.claimed_micro_eur for m in money)),
            _eur(sum(m.owed_micro_eur or 0 for m in money)) if recorded else "–",
            _eur(sum(m.gained_micro_eur for m in money)),
            _reconciled_word(reconciliation(summary, chain)),
            f"released on chain {_eur(chain.released_micro_eur)}",
        ]
    )
    return html.section(
        "payouts",
        "Participants",
        html.paragraph(
            "A release credits the participants on chain (no token moves); each credit is "
            "then claimed (BatteryRewards.claim pays the participant only) or still owed "
            "(owedOf). Reconciled: released (Python) = credited = claimed + still owed, "
            "per participant and in total, where the total released is also the chain's."
        )
        + html.table(
            [
                "participant",
                "share bps",
                "released EUR (Python)",
                "credited EUR (chain)",
                "claimed EUR (chain)",
                "still owed EUR (chain)",
                "balance gained EUR (chain)",
                "reconciled",
                "address",
            ],
            rows,
            text_columns=(0, 7, 8),
        ),
    )


def _chain_section(summary: BatteryRewardsSummary, chain: ChainRecord) -> str:
    facts = [
        ("node", chain.rpc_url or f"embedded anvil (state in {chain.chain_dir}/settlement)"),
        ("chain id", str(chain.chain_id)),
        ("BatteryRewards contract", chain.rewards_contract),
        ("agreement id", str(chain.agreement_id)),
        ("validator registry", chain.registry),
        ("payment token", chain.payment),
        (
            "registry and token",
            f"reused from the settlement in {chain.reused_settlement}"
            if chain.reused_settlement
            else "deployed by this run",
        ),
        ("sponsor", chain.sponsor),
        ("validators signing", ", ".join(chain.validators)),
        ("create transaction", chain.create_tx_hash),
        (
            "funded / released / held",
            f"{_eur(chain.funded_micro_eur)} / {_eur(chain.released_micro_eur)} / "
            f"{_eur(chain.held_micro_eur)} EUR",
        ),
        ("transactions, gas", f"{chain.transactions}, {chain.gas_used:,}"),
    ]
    if chain.reclaim is not None:
        facts += [
            ("reclaim transaction (credits the sponsor)", chain.reclaim.tx_hash),
            (
                "sponsor's withdraw transaction",
                chain.reclaim.withdraw_tx_hash
                or "none recorded (nothing to withdraw, or the credit is still owed on chain)",
            ),
            (
                "reclaimed, sponsor's gain",
                f"{_eur(chain.reclaim.reclaimed_micro_eur)}, "
                f"{_eur(chain.reclaim.sponsor_gain_micro_eur)} EUR "
                f"(at {_time(chain.reclaim.block_timestamp)}, {chain.reclaim.gas_used:,} gas)",
            ),
        ]
    rows = [
        [
            str(r.period),
            "yes" if r.submitted else "no",
            _eur(r.released_micro_eur),
            _eur(summary.released_per_period_micro_eur[r.period])
            if r.period < len(summary.released_per_period_micro_eur)
            else "–",
            r.tx_hash or "–",
            f"{r.gas_used:,}" if r.gas_used else "–",
            r.note,
        ]
        for r in chain.releases[:MAX_ROWS]
    ]
    return html.section(
        "chain",
        "On chain: BatteryRewards.sol",
        html.facts(facts)
        + html.table(
            [
                "period",
                "submitted",
                "released EUR (chain)",
                "released EUR (Python)",
                "transaction",
                "gas",
                "note",
            ],
            rows,
            text_columns=(1, 4, 6),
            scroll=True,
        ),
    )


def _more(n_periods: int, file_name: str) -> str:
    if n_periods <= MAX_ROWS:
        return ""
    return html.note(f"The first {MAX_ROWS} of {n_periods} periods; {file_name} has all.")


def _release_chart(summary: BatteryRewardsSummary, verdicts: list[VerdictRow]) -> Figure:
    figure = new_figure(8.0, 3.0)
    figure.subplots_adjust(left=0.09, right=0.78, bottom=0.16, top=0.95)
    axes = figure.subplots()
    periods = list(range(summary.periods))
    bottom = [0.0] * summary.periods
    for colour, name in zip(_COLOURS, summary.amounts_micro_eur, strict=False):
        heights = [0.0] * summary.periods
        for v in verdicts:
            if v.condition == name and 0 <= v.period < summary.periods:
                heights[v.period] = micro_eur_to_eur(v.released_micro_eur)
        axes.bar(periods, heights, bottom=bottom, color=colour, label=name, width=0.8)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    most = micro_eur_to_eur(sum(summary.amounts_micro_eur.values()))
    axes.axhline(most, color="k", linewidth=0.8, linestyle="--")
    axes.set_xlabel("period")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("EUR released")
    axes.set_ylim(0, most * 1.1 or 1.0)
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure
