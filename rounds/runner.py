"""Run a day of rolling rounds: clear, record in the ledger, write each round's folder.

``OUT/`` after a run::

    ledger.sqlite      every round's inputs, options, versions and results
    round-001/ ...     per round: trades.csv, orders.csv (the round's book and its
                       fills), summary.json, manifest.json, grid.csv (with security)
    trades.csv         every round's trades, with round_no and cleared_at_min first
    orders.csv         every order of the day: submitted_at_min, filled_kwh over all
                       rounds, status (filled, partially_filled, unfilled, late, and
                       pending while later rounds are still to come)
    summary.json       one row per round and the day's totals

Each round's ledger row and folder are written together (the row commits only after
the folder is in place), so a crash leaves whole rounds. A ledger is never
overwritten: a day stopped by a crash or by ``until_min`` is continued with
``resume`` (see :mod:`gridmatch.rounds.resume`), one writer at a time. The three day
files are rewritten from the ledger at the end of every run, so they always cover
every round it holds.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridmatch.errors import InputError, OutputFolderError
from gridmatch.matching.backends.registry import get_backend
from gridmatch.matching.solution import SolveOptions
from gridmatch.pipeline import RunSettings, resolve_settings, result_files
from gridmatch.results_io.atomic import MARKER, claim_file, write_file_atomically
from gridmatch.results_io.folder import json_text, parse_trades, write_result
from gridmatch.results_io.layout import (
    LEDGER_FILE,
    ORDERS_FILE,
    SUMMARY_FILE,
    TRADES_FILE,
    round_folder,
    round_folders,
    round_number,
)
from gridmatch.results_io.manifest import build_manifest
from gridmatch.results_io.rows import (
    DayOrderRow,
    DayTradeRow,
    OrderStatus,
    day_trade_rows,
    order_status,
)
from gridmatch.results_io.summary import DaySummary, OptionsRecord, RoundRecord
from gridmatch.results_io.tables import to_csv
from gridmatch.rounds.engine import (
    Market,
    RoundClearing,
    RoundInput,
    clear_round,
    load_market,
    network_json,
)
from gridmatch.rounds.hashing import canonical_json, sha256_text, utc_now
from gridmatch.rounds.ledger import Ledger, StoredRound, StoredScenario
from gridmatch.rounds.ledger_codecs import orders_json
from gridmatch.rounds.order_book import RollingScenario, load_rolling_scenario
from gridmatch.rounds.resume import restore_rounds
from gridmatch.rounds.schedule import MAX_ROUNDS, CarryOver, round_count, round_times_min
from gridmatch.scenario_io.loader import SCENARIO_FILE
from gridmatch.scenario_io.schema import ScenarioSpec
from gridmatch.units import micro_eur_to_eur

__all__ = ["RoundsRun", "round_folder", "round_folders", "run_rounds"]


@dataclass(frozen=True)
class RoundsRun:
    """What :func:`run_rounds` did.

    Attributes
    ----------
    ledger_path
        The ledger written.
    summary
        The content of ``OUT/summary.json``.
    restored_rounds
        (``resume``) Stored rounds whose folder was gone and is written again.
    unrestored_rounds
        (``resume``) Stored rounds whose folder is gone and stays so: cleared again,
        they gave other trades than the ledger holds (a round stopped by its time limit).
    """

    ledger_path: Path
    summary: dict[str, Any]
    restored_rounds: tuple[int, ...] = ()
    unrestored_rounds: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Day:
    """What a run of a day works from: the scenario, its settings, rounds and carry-over."""

    rolling: RollingScenario
    formulation: str
    options: SolveOptions
    carry: CarryOver
    times: list[int]
    market: Market
    stored_scenario: StoredScenario


def run_rounds(
    scenario_dir: Path,
    out_dir: Path,
    settings: RunSettings,
    *,
    resume: bool = False,
    until_min: int | None = None,
    on_round: Callable[[RoundClearing], None] | None = None,
) -> RoundsRun:
    """Clear a scenario in rolling rounds, recording every round in ``OUT/ledger.sqlite``.

    Parameters
    ----------
    settings
        As for ``gridmatch clear``; ``time_limit_s`` is each round's budget.
    resume
        Continue the day of the ledger in ``OUT`` (after a crash or an ``until_min``
        stop, possibly with orders added since); see :mod:`gridmatch.rounds.resume`.
        Without a ledger in ``OUT`` the day starts afresh.
    until_min
        Clear only the rounds due at or before this minute of the day (an operator's
        "now"); ``None``: every round of the day.
    on_round
        Called after each round is recorded (progress output).

    Raises
    ------
    InputError
        Bad input, or (``resume``) a scenario folder that no longer gives the stored
        rounds their inputs; nothing is written.
    gridmatch.rounds.resume.LedgerMismatchError
        (``resume``) Other formulation or options than the stored rounds'.
    gridmatch.errors.OutputFolderError
        ``OUT`` already holds a ledger and ``resume`` is false, ``OUT`` is not a new or
        empty folder, or another process is writing its ledger.
    gridmatch.matching.backends.registry.UnknownFormulationError
        Unknown formulation; nothing is written.
    """
    started = time.perf_counter()
    ledger_path = out_dir / LEDGER_FILE
    continuing = resume and ledger_path.exists()
    _check_out_dir(out_dir, ledger_path, continuing)
    day = _prepare_day(scenario_dir, settings)
    opened = (
        Ledger.open_for_append(ledger_path)
        if continuing
        else Ledger.create(ledger_path, day.stored_scenario)
    )
    # Everything below happens under the ledger's writer lock, the day files included.
    with opened as ledger:
        records: list[StoredRound] = []
        restored: dict[int, bool] = {}
        if continuing:

            def restore(stored: StoredRound, round_input: RoundInput) -> None:
                folder = round_folder(out_dir, stored.round_no)
                if not folder.exists():
                    restored[stored.round_no] = _restore_folder(folder, day, stored, round_input)

            records = restore_rounds(
                ledger,
                day.rolling,
                day.stored_scenario,
                day.carry,
                day.times,
                day.formulation,
                day.options,
                on_stored=restore,
            )
        records += _clear_due_rounds(day, ledger, out_dir, len(records), until_min, on_round)
        _remove_unrecorded_rounds(out_dir, len(records))
        summary = _day_summary(day, records, started, ledger_path)
        _write_day_files(out_dir, day, records, summary)
    return RoundsRun(
        ledger_path,
        summary.document(),
        tuple(n for n, done in restored.items() if done),
        tuple(n for n, done in restored.items() if not done),
    )


def _check_out_dir(out_dir: Path, ledger_path: Path, continuing: bool) -> None:
    """Refuse an output folder a day would overwrite something in."""
    if ledger_path.exists() and not continuing:
        raise OutputFolderError(
            f"{ledger_path}: a round ledger already exists here and is never overwritten; "
            "continue its day with --resume, or choose another output folder"
        )
    if not continuing and out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        # The day's files would replace whatever is there: only a new folder is safe.
        raise OutputFolderError(f"{out_dir}: exists and is not an empty folder")


def _prepare_day(scenario_dir: Path, settings: RunSettings) -> _Day:
    """Validate the scenario and lay out the day: settings, round times, stored scenario."""
    rolling = load_rolling_scenario(scenario_dir)
    scenario = rolling.scenario
    formulation, options = resolve_settings(scenario, settings)
    get_backend(formulation)  # an unknown or missing solver fails before anything is written
    carry = CarryOver(
        scenario.book,
        rolling.submitted_at_min,
        scenario.spec.slot_minutes,
        rolling.rounds,
        track_background=scenario.spec.security.enabled,
        available_eur=scenario.available_eur(),
        topups=[
            (t.participant_id, t.at_min, micro_eur_to_eur(t.amount_micro_eur))
            for t in scenario.topups
        ],
    )
    count = round_count(rolling.rounds, carry.last_close_min)
    if count > MAX_ROUNDS:
        raise InputError(
            scenario.directory / SCENARIO_FILE,
            f"the day would need {count} rounds (until the last slot closes at "
            f"{carry.last_close_min:g} min); at most {MAX_ROUNDS}: give a longer interval",
            field="rounds.interval_min",
        )
    times = round_times_min(rolling.rounds, carry.last_close_min)
    if not times:
        raise InputError(
            scenario.directory / SCENARIO_FILE,
            f"the first round ({rolling.rounds.first_round_min} min) comes after every slot "
            f"has closed (the last at {carry.last_close_min:g} min)",
            field="rounds.first_round_min",
        )
    # Every round clears on the spec and network as stored, so a rerun meets the same.
    network_text = network_json(scenario.net)
    spec_json = canonical_json(scenario.spec.model_dump(mode="json"))
    market = load_market(
        ScenarioSpec.model_validate(json.loads(spec_json)),
        network_text,
        scenario.directory / SCENARIO_FILE,
    )
    stored_scenario = StoredScenario(
        name=scenario.name,
        spec_json=spec_json,
        network_json=network_text,
        network_sha256=sha256_text(network_text),
        orders_json=orders_json(scenario.book, rolling.submitted_at_min),
        inputs_json=canonical_json(
            build_manifest(
                scenario.name, scenario.directory, scenario.input_files, formulation, options
            )["inputs"]
        ),
        created_utc=utc_now(),
    )
    return _Day(rolling, formulation, options, carry, times, market, stored_scenario)


def _clear_due_rounds(
    day: _Day,
    ledger: Ledger,
    out_dir: Path,
    n_stored: int,
    until_min: int | None,
    on_round: Callable[[RoundClearing], None] | None,
) -> list[StoredRound]:
    """Clear the rounds after the stored ones that are due by ``until_min``; record each."""
    # New rounds hash with the day's stored scenario (a resumed day's scenario.yaml may
    # be stored in an older but equal form).
    scenario_sha256 = ledger.scenario.sha256
    records = []
    for round_no, at_min in enumerate(day.times, start=1):
        if round_no <= n_stored:
            continue
        if until_min is not None and at_min > until_min:
            break
        round_input = day.carry.round_input(round_no, at_min, day.formulation, day.options)
        clearing = clear_round(day.market, round_input)
        record = StoredRound.from_clearing(clearing, scenario_sha256)
        with ledger.append_round(record):
            _write_round_folder(round_folder(out_dir, round_no), day.rolling, clearing, record)
        day.carry.record(clearing)
        records.append(record)
        if on_round is not None:
            on_round(clearing)
    return records


def _restore_folder(folder: Path, day: _Day, stored: StoredRound, round_input: RoundInput) -> bool:
    """Write a stored round's folder again, cleared again from its checked input.

    The ledger is the record and its folder a view of it: written only if clearing the
    round again gives the stored trades byte for byte (else ``False``, nothing written).
    """
    clearing = clear_round(day.market, round_input)
    if clearing.trades_sha256 != stored.trades_sha256:
        return False
    _write_round_folder(folder, day.rolling, clearing, stored)
    return True


def _remove_unrecorded_rounds(out_dir: Path, n_recorded: int) -> None:
    """Delete round folders a crash left without a ledger row (the ledger is the record).

    Only folders gridmatch wrote (they carry its marker) are removed.
    """
    for folder in round_folders(out_dir):
        number = round_number(folder)
        if number is not None and number > n_recorded and (folder / MARKER).is_file():
            shutil.rmtree(folder)


def _write_round_folder(
    folder: Path, rolling: RollingScenario, clearing: RoundClearing, record: StoredRound
) -> None:
    scenario = rolling.scenario
    round_input = clearing.round_input
    manifest = build_manifest(
        scenario.name,
        scenario.directory,
        scenario.input_files,
        round_input.formulation,
        round_input.options,
    )
    manifest["round"] = {
        "round_no": round_input.round_no,
        "cleared_at_min": round_input.cleared_at_min,
        "input_sha256": record.input_sha256,
        "trades_sha256": record.trades_sha256,
        "ledger": LEDGER_FILE,
    }
    available = None if round_input.available_eur is None else dict(round_input.available_eur)
    files = result_files(
        round_input.book, clearing.result, clearing.summary, manifest, clearing.security, available
    )
    write_result(folder, files)


def _day_summary(
    day: _Day, records: list[StoredRound], started: float, ledger_path: Path
) -> DaySummary:
    rounds = [
        RoundRecord.of(r.summary(ledger_path), r.input_sha256, r.trades_sha256) for r in records
    ]
    secure = [r.secure for r in rounds]
    return DaySummary(
        scenario=day.rolling.scenario.name,
        formulation=day.formulation,
        options=OptionsRecord.of(day.options),
        rounds_spec=day.rolling.rounds.model_dump(mode="json"),
        n_rounds=len(rounds),
        n_rounds_planned=len(day.times),
        complete=len(rounds) == len(day.times),
        n_orders=len(day.rolling.scenario.book),
        n_late_orders=int(day.carry.late(day.times).sum()),
        n_trades=sum(r.n_trades for r in rounds),
        traded_kwh=sum(r.traded_kwh for r in rounds),
        welfare_eur=sum(r.welfare_eur for r in rounds),
        # null without grid security (or before any round), as in a single clearing's
        secure=None if not secure or any(s is None for s in secure) else all(secure),
        runtime_s=time.perf_counter() - started,
        ledger=LEDGER_FILE,
        rounds=tuple(rounds),
    )


def _write_day_files(
    out_dir: Path, day: _Day, records: list[StoredRound], summary: DaySummary
) -> None:
    trades: list[DayTradeRow] = []
    for record in records:
        stored = parse_trades(record.trades_csv, out_dir / LEDGER_FILE)
        trades += day_trade_rows(record.round_no, record.cleared_at_min, stored)
    texts = {
        TRADES_FILE: to_csv(DayTradeRow, trades),
        ORDERS_FILE: to_csv(DayOrderRow, _day_orders(day, records)),
        SUMMARY_FILE: json_text(summary.document()),
    }
    for name, text in texts.items():
        claim_file(out_dir / name)
        write_file_atomically(out_dir / name, text)


def _day_orders(day: _Day, records: list[StoredRound]) -> list[DayOrderRow]:
    """Every order of the day with its fill over all rounds so far, and its status."""
    carry = day.carry
    filled = carry.traded_kwh
    late = carry.late(day.times)
    not_yet_seen = carry.late(day.times[: len(records)])  # by the rounds cleared so far
    cut_off = carry.cut_off
    rows = []
    for k, order in enumerate(day.rolling.scenario.book.orders):
        if late[k]:
            status = OrderStatus.LATE
        elif not_yet_seen[k]:
            status = OrderStatus.PENDING  # a round still to come (after --until) will see it
        else:
            status = order_status(order.quantity_kwh, float(filled[k]))
            if cut_off[k] and status is not OrderStatus.FILLED:
                status = OrderStatus.CUT_OFF  # its account ran dry while it was open
        rows.append(DayOrderRow(order, day.rolling.submitted_at_min[k], float(filled[k]), status))
    return rows
