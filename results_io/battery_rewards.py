"""The output folder of ``gridmatch battery-rewards``: layout, typed rows, records.

::

    OUT/periods.csv       one row per period: its summary in the contract's integers (PeriodRow)
    OUT/verdicts.csv      per period and condition: verdict and micro-EUR released (VerdictRow)
    OUT/summary.json      totals, thresholds, amounts and payouts (BatteryRewardsSummary)
    [OUT/chain.json]      with ``--chain``: the release on BatteryRewards.sol (ChainRecord)
    [OUT/settlement/]     with ``--chain`` on its own deployment: the keystore, anvil's state
    [OUT/report.html]     ``gridmatch report OUT``

Each file is replaced atomically on its own (the folder also holds the keystore of an
on-chain run, which a folder swap would lose). The tables go through
:mod:`~gridmatch.results_io.tables`: the columns are the fields of the row classes.
A period too thin to summarise has ``summarised`` false and zeros in its summary
columns; ``covered`` says whether its telemetry met the agreement's coverage rule.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

import pydantic

from gridmatch.errors import OutputFolderError
from gridmatch.results_io.atomic import MARKER, OWNED, claim_file, write_file_atomically
from gridmatch.results_io.layout import REPORT_FILE, SETTLEMENT_DIR, SUMMARY_FILE
from gridmatch.results_io.outputs import read_output_file, read_output_summary
from gridmatch.results_io.tables import NON_NEGATIVE, NONEMPTY, from_csv, to_csv
from gridmatch.user_files import RECORD_LIMIT_BYTES, parse_json, validated

PERIODS_FILE = "periods.csv"
VERDICTS_FILE = "verdicts.csv"
CHAIN_FILE = "chain.json"
# Everything a battery-rewards folder holds (its keystore and chain state in settlement/).
_OWN_NAMES = frozenset(
    {PERIODS_FILE, VERDICTS_FILE, SUMMARY_FILE, CHAIN_FILE, REPORT_FILE, SETTLEMENT_DIR}
)
COMMAND = "battery-rewards"


class ConditionVerdict(StrEnum):
    """What a period's summary says about one condition."""

    MET = "met"
    NOT_MET = "not_met"
    NOT_AGREED = "not_agreed"
    INSUFFICIENT_DATA = "insufficient_data"


@dataclass(frozen=True)
class PeriodRow:
    """One period and its summary (a row of periods.csv).

    Attributes
    ----------
    start_s, end_s
        The period ``[start, end)`` in Unix seconds.
    summarised
        Whether the period had enough samples for a summary (else its summary columns are 0).
    covered
        Whether the summary meets the agreement's telemetry coverage rule (the contract
        refuses a summary that does not).
    soc_min_bps ... max_gap_seconds
        ``BatteryRewards.Summary``, in its units (bps, thousandths, tenths of a degree C, s).
    released_micro_eur
        What the period released, in whole micro-EUR.
    """

    period: int = field(metadata=NON_NEGATIVE)
    start_s: int
    end_s: int
    samples: int = field(metadata=NON_NEGATIVE)
    summarised: bool
    covered: bool
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
    equivalent_full_cycles: float
    depth_of_discharge_percent: float
    max_c_rate: float
    released_micro_eur: int = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class VerdictRow:
    """One condition's verdict in one period (a row of verdicts.csv)."""

    period: int = field(metadata=NON_NEGATIVE)
    condition: str = field(metadata=NONEMPTY)
    verdict: ConditionVerdict
    released_micro_eur: int = field(metadata=NON_NEGATIVE)


class _Record(pydantic.BaseModel):
    # An older reader reads a newer file: unknown keys are ignored, known ones checked.
    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)


class BatteryRewardsSummary(_Record):
    """``summary.json`` of a battery reward evaluation (money in whole micro-EUR).

    ``thresholds`` are ``BatteryRewards.Conditions`` by field name (``min_coverage_bps``
    and ``max_gap_seconds`` included); ``amounts_micro_eur`` per condition and period.
    """

    kind: Literal["battery_rewards"] = "battery_rewards"
    battery_id: str
    capacity_kwh: float
    period_start_s: int
    period_seconds: int
    periods: int
    expiry_s: int
    interval_seconds: int
    funded_micro_eur: int
    released_micro_eur: int
    released_per_period_micro_eur: list[int]
    payouts_micro_eur: dict[str, int]
    shares_bps: dict[str, int]
    conditions_met: int
    thresholds: dict[str, int]
    amounts_micro_eur: dict[str, int]
    on_chain: bool


class PeriodRelease(_Record):
    """One period as submitted to ``BatteryRewards.release`` (or why it was not)."""

    period: int
    submitted: bool
    released_micro_eur: int
    tx_hash: str | None = None
    gas_used: int = 0
    note: str = ""


class ClaimRecord(_Record):
    """One participant's credit paid out by ``BatteryRewards.claim`` (pull payments)."""

    participant: str
    address: str
    claimed_micro_eur: int
    tx_hash: str
    gas_used: int


class ReclaimRecord(_Record):
    """The sponsor's reclaim after expiry, and its withdrawal.

    ``reclaim`` credits the sponsor (pull payments, as the participants' releases);
    ``withdraw`` then pays the credit out. ``withdraw_tx_hash`` is empty when the
    withdrawal failed after the reclaim (or in a record of the push-payment contract):
    the credit is then still owed to the sponsor on chain.
    """

    tx_hash: str
    reclaimed_micro_eur: int
    sponsor_gain_micro_eur: int
    gas_used: int
    block_timestamp: int
    withdraw_tx_hash: str = ""
    withdraw_gas_used: int = 0


class ChainRecord(_Record):
    """``chain.json``: where the agreement lives on chain and what it paid.

    Attributes
    ----------
    rpc_url
        The node used; None: the embedded anvil whose state is in
        ``chain_dir/settlement/chain-state.json``.
    chain_dir
        The folder whose ``settlement/`` holds the keystore (sponsor and validators) and
        the embedded chain: the output folder, or the settlement's result folder reused.
    reused_settlement
        The result folder of ``gridmatch settle`` whose registry and payment token were
        used, or None when the run deployed its own.
    credited_micro_eur
        What the releases credited to each participant (``owedOf``, read from the chain
        before the claims): a release moves no tokens.
    balances_micro_eur
        What each participant's token balance gained, read from the chain, after
        ``claims`` paid each one its credit.
    owed_micro_eur
        What each participant is still owed (``owedOf``, read from the chain after the
        claims); None in a record written before it was kept. With ``credited`` and
        ``claims`` it reconciles: credited == claimed + still owed.
    """

    rpc_url: str | None
    chain_dir: str
    reused_settlement: str | None
    chain_id: int
    payment: str
    registry: str
    rewards_contract: str
    agreement_id: int
    sponsor: str
    validators: dict[str, str]
    participants: dict[str, str]
    create_tx_hash: str
    funded_micro_eur: int
    released_micro_eur: int
    held_micro_eur: int
    balances_micro_eur: dict[str, int]
    releases: list[PeriodRelease]
    credited_micro_eur: dict[str, int] = {}
    claims: list[ClaimRecord] = []
    owed_micro_eur: dict[str, int] | None = None
    transactions: int
    gas_used: int
    matches_evaluation: bool
    reclaim: ReclaimRecord | None = None


def _json_text(document: object) -> str:
    # Keys in the models' order: conditions stay in the contract's order.
    return json.dumps(document, indent=1, allow_nan=False) + "\n"


def claim_output_folder(out_dir: Path, *, on_chain: bool, evaluation: bool = True) -> None:
    """Make sure ``out_dir`` may take this command's files, before anything is sent or written.

    The folder is not swapped as a whole (it keeps an on-chain run's keystore), so each
    file is claimed instead: listed in the folder's marker, never written over a file
    gridmatch did not write. A folder of the user's own that no run wrote into is refused
    as a whole, as every other command refuses it.

    Parameters
    ----------
    out_dir
        The output folder.
    on_chain
        Whether ``chain.json`` is written too.
    evaluation
        Whether the evaluation's tables and summary are written (not by a reclaim).

    Raises
    ------
    OutputFolderError
        ``out_dir`` is a file or a link, a folder of someone else's files, or holds one
        of this command's file names that gridmatch did not write.
    """
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise OutputFolderError(f"{out_dir}: exists and is not a folder")
    present = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else set()
    ours = is_battery_rewards_result(out_dir)
    if (out_dir / MARKER).is_file() or (SUMMARY_FILE in present and not ours):
        raise OutputFolderError(
            f"{out_dir}: holds another command's result (its summary.json would be "
            "replaced); write to another folder"
        )
    if present and not (out_dir / OWNED).is_file():
        if not (ours and present <= _OWN_NAMES):
            raise OutputFolderError(
                f"{out_dir}: folder is not empty and holds no gridmatch result; "
                "refusing to write into it"
            )
        # Written before its files were listed: this command's own, taken as listed.
        listed = sorted(present - {SETTLEMENT_DIR})
        write_file_atomically(out_dir / OWNED, "\n".join(listed) + "\n")
    names = [PERIODS_FILE, VERDICTS_FILE, SUMMARY_FILE] if evaluation else []
    for name in [*names, *([CHAIN_FILE] if on_chain else [])]:
        claim_file(out_dir / name)


def write_battery_rewards(
    out_dir: Path,
    periods: Sequence[PeriodRow],
    verdicts: Sequence[VerdictRow],
    summary: BatteryRewardsSummary,
) -> list[Path]:
    """Write periods.csv, verdicts.csv and summary.json (each replaced atomically).

    Call :func:`claim_output_folder` first.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / PERIODS_FILE, out_dir / VERDICTS_FILE, out_dir / SUMMARY_FILE]
    write_file_atomically(paths[0], to_csv(PeriodRow, periods))
    write_file_atomically(paths[1], to_csv(VerdictRow, verdicts))
    write_file_atomically(paths[2], _json_text(summary.model_dump(mode="json")))
    return paths


def write_chain_record(out_dir: Path, record: ChainRecord) -> Path:
    """Write (or replace) ``out_dir/chain.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CHAIN_FILE
    write_file_atomically(path, _json_text(record.model_dump(mode="json")))
    return path


def is_battery_rewards_result(folder: Path) -> bool:
    """Whether ``folder`` looks like an output folder of ``gridmatch battery-rewards``."""
    return (folder / PERIODS_FILE).is_file() and (folder / VERDICTS_FILE).is_file()


def read_battery_summary(folder: Path) -> BatteryRewardsSummary:
    """Read ``folder/summary.json``, validated.

    Raises
    ------
    InputError
        Missing, not JSON, or not a battery reward summary (naming the field).
    """
    return read_output_summary(folder, BatteryRewardsSummary, COMMAND, "battery reward summary")


def read_periods(folder: Path) -> list[PeriodRow]:
    """Read ``folder/periods.csv``, every cell checked (file, row and column in errors)."""
    path = folder / PERIODS_FILE
    return from_csv(PeriodRow, read_output_file(path, COMMAND), path)


def read_battery_verdicts(folder: Path) -> list[VerdictRow]:
    """Read ``folder/verdicts.csv``, every cell checked (file, row and column in errors)."""
    path = folder / VERDICTS_FILE
    return from_csv(VerdictRow, read_output_file(path, COMMAND), path)


def read_chain_record(folder: Path) -> ChainRecord | None:
    """Read ``folder/chain.json``; None when the run did not go on chain.

    Raises
    ------
    InputError
        Present but unreadable, not JSON, or not a chain record (naming the field).
    """
    path = folder / CHAIN_FILE
    if not path.exists():
        return None
    document = parse_json(read_output_file(path, COMMAND, RECORD_LIMIT_BYTES), path)
    return validated(ChainRecord, document, path, "battery reward chain record")
