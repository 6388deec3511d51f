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

import csv
import io
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridmatch.matching.backends.registry import get_backend
from gridmatch.matching.solution import SolveOptions
from gridmatch.pipeline import RunSettings, resolve_settings
from gridmatch.results_io.atomic import (
    MARKER,
    OutputFolderError,
    atomic_output_dir,
    write_file_atomically,
)
from gridmatch.results_io.manifest import build_manifest
from gridmatch.results_io.writers import (
    TRADE_COLUMNS,
    order_fields,
    write_grid,
    write_json,
    write_orders,
)
from gridmatch.rounds.engine import RoundClearing, clear_round, load_market, network_json
from gridmatch.rounds.ledger import (
    LEDGER_FILE,
    Ledger,
    StoredRound,
    StoredScenario,
    canonical_json,
    options_json,
    orders_json,
    sha256_text,
    utc_now,
)
from gridmatch.rounds.order_book import SUBMITTED_COLUMN, RollingScenario, load_rolling_scenario
from gridmatch.rounds.resume import restore_rounds
from gridmatch.rounds.schedule import CarryOver, round_times_min
from gridmatch.scenario_io.errors import InputError
from gridmatch.scenario_io.loader import SCENARIO_FILE
from gridmatch.scenario_io.orders_csv import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from gridmatch.scenario_io.schema import ScenarioSpec

_FILL_TOLERANCE_KWH = 1e-6
_ROUND_PREFIX = "round-"


@dataclass(frozen=True)
class RoundsRun:
    """What :func:`run_rounds` did.

    Attributes
    ----------
    ledger_path
        The ledger written.
    summary
        The content of ``OUT/summary.json``.
    """

    ledger_path: Path
    summary: dict[str, Any]


def round_folder(out_dir: Path, round_no: int) -> Path:
    """Return the result folder of one round."""
    return out_dir / f"{_ROUND_PREFIX}{round_no:03d}"


def round_folders(out_dir: Path) -> list[Path]:
    """Return the round folders in ``out_dir``, in round order."""
    return sorted(out_dir.glob(f"{_ROUND_PREFIX}[0-9][0-9][0-9]"))


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
    gridmatch.results_io.atomic.OutputFolderError
        ``OUT`` already holds a ledger and ``resume`` is false, ``OUT`` is not a new or
        empty folder, or another process is writing its ledger.
    gridmatch.matching.backends.registry.UnknownFormulationError
        Unknown formulation; nothing is written.
    """
    started = time.perf_counter()
    ledger_path = out_dir / LEDGER_FILE
    continuing = resume and ledger_path.exists()
    if ledger_path.exists() and not continuing:
        raise OutputFolderError(
            f"{ledger_path}: a round ledger already exists here and is never overwritten; "
            "continue its day with --resume, or choose another output folder"
        )
    if not continuing and out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        # The day's files would replace whatever is there: only a new folder is safe.
        raise OutputFolderError(f"{out_dir}: exists and is not an empty folder")
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
    records: list[StoredRound] = []
    opened = (
        Ledger.open_for_append(ledger_path)
        if continuing
        else Ledger.create(ledger_path, stored_scenario)
    )
    # Everything below happens under the ledger's writer lock, the day files included.
    with opened as ledger:
        # New rounds hash with the day's stored scenario (a resumed day's scenario.yaml
        # may be stored in an older but equal form).
        scenario_sha256 = ledger.scenario.sha256
        if continuing:
            records = restore_rounds(
                ledger, rolling, stored_scenario, carry, times, formulation, options
            )
        for round_no, at_min in enumerate(times, start=1):
            if round_no <= len(records):
                continue
            if until_min is not None and at_min > until_min:
                break
            clearing = clear_round(
                market, carry.round_input(round_no, at_min, formulation, options)
            )
            record = StoredRound.from_clearing(clearing, scenario_sha256)
            with ledger.append_round(record):
                _write_round_folder(
                    round_folder(out_dir, round_no), rolling, clearing, record, formulation
                )
            carry.record(clearing)
            records.append(record)
            if on_round is not None:
                on_round(clearing)
        _remove_unrecorded_rounds(out_dir, len(records))
        summary = _day_summary(rolling, formulation, options, records, carry, times, started)
        _write_day_files(out_dir, rolling, carry, times, records, summary)
    return RoundsRun(ledger_path, summary)


def _remove_unrecorded_rounds(out_dir: Path, n_recorded: int) -> None:
    """Delete round folders a crash left without a ledger row (the ledger is the record).

    Only folders gridmatch wrote (they carry its marker) are removed.
    """
    for folder in round_folders(out_dir):
        round_no = int(folder.name.removeprefix(_ROUND_PREFIX))
        if round_no > n_recorded and (folder / MARKER).is_file():
            shutil.rmtree(folder)


def _write_round_folder(
    folder: Path,
    rolling: RollingScenario,
    clearing: RoundClearing,
    record: StoredRound,
    formulation: str,
) -> None:
    scenario = rolling.scenario
    round_input = clearing.round_input
    manifest = build_manifest(
        scenario.name, scenario.directory, scenario.input_files, formulation, round_input.options
    )
    manifest["round"] = {
        "round_no": round_input.round_no,
        "cleared_at_min": round_input.cleared_at_min,
        "input_sha256": record.input_sha256,
        "trades_sha256": record.trades_sha256,
        "ledger": LEDGER_FILE,
    }
    with atomic_output_dir(folder) as staging:
        (staging / "trades.csv").write_bytes(clearing.trades_csv)
        write_orders(staging / "orders.csv", round_input.book, clearing.result)
        write_json(staging / "summary.json", clearing.summary)
        write_json(staging / "manifest.json", manifest)
        if clearing.security is not None:
            write_grid(staging / "grid.csv", clearing.security.report, clearing.security.binding)


def _round_row(record: StoredRound) -> dict[str, Any]:
    summary = record.summary
    return {
        "round_no": record.round_no,
        "cleared_at_min": record.cleared_at_min,
        "n_orders": summary["n_orders"],
        "n_trades": summary["n_trades"],
        "traded_kwh": summary["traded_kwh"],
        "welfare_eur": summary["welfare_eur"],
        "status": summary["status"],
        "secure": summary["secure"],
        "runtime_s": summary["runtime_s"],
        "input_sha256": record.input_sha256,
        "trades_sha256": record.trades_sha256,
    }


def _prefixed_trades(record: StoredRound) -> list[list[str]]:
    reader = csv.reader(io.StringIO(record.trades_csv.decode("utf-8")))
    next(reader)  # the header
    prefix = [str(record.round_no), str(record.cleared_at_min)]
    return [prefix + row for row in reader]


def _day_summary(
    rolling: RollingScenario,
    formulation: str,
    options: SolveOptions,
    records: list[StoredRound],
    carry: CarryOver,
    times: list[int],
    started: float,
) -> dict[str, Any]:
    rounds = [_round_row(record) for record in records]
    secure = [r["secure"] for r in rounds]
    return {
        "scenario": rolling.scenario.name,
        "formulation": formulation,
        "options": json.loads(options_json(options)),
        "rounds_spec": rolling.rounds.model_dump(mode="json"),
        "n_rounds": len(rounds),
        "n_rounds_planned": len(times),
        # false after an --until stop: later rounds are still to come (--resume)
        "complete": len(rounds) == len(times),
        "n_orders": len(rolling.scenario.book),
        "n_late_orders": int(carry.late(times).sum()),
        "n_trades": sum(r["n_trades"] for r in rounds),
        "traded_kwh": sum(r["traded_kwh"] for r in rounds),
        "welfare_eur": sum(r["welfare_eur"] for r in rounds),
        # null without grid security (or before any round), as in a single clearing's
        "secure": None if not secure or any(s is None for s in secure) else all(secure),
        # this invocation's wall time (a resumed day: only the rounds cleared now)
        "runtime_s": time.perf_counter() - started,
        "ledger": LEDGER_FILE,
        "rounds": rounds,
    }


def _write_day_files(
    out_dir: Path,
    rolling: RollingScenario,
    carry: CarryOver,
    times: list[int],
    records: list[StoredRound],
    summary: dict[str, Any],
) -> None:
    trades = io.StringIO()
    writer = csv.writer(trades, lineterminator="\n")
    writer.writerow(["round_no", "cleared_at_min", *TRADE_COLUMNS])
    for record in records:
        writer.writerows(_prefixed_trades(record))
    write_file_atomically(out_dir / "trades.csv", trades.getvalue())

    orders = io.StringIO()
    writer = csv.writer(orders, lineterminator="\n")
    writer.writerow(
        [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, SUBMITTED_COLUMN, "filled_kwh", "status"]
    )
    filled = carry.traded_kwh
    left_wh = carry.remaining_wh()
    late = carry.late(times)
    not_yet_seen = carry.late(times[: len(records)])  # by the rounds cleared so far
    for k, order in enumerate(rolling.scenario.book.orders):
        if late[k]:
            status = "late"
        elif not_yet_seen[k]:
            status = "pending"  # a round still to come (after an --until stop) will see it
        elif filled[k] <= _FILL_TOLERANCE_KWH:
            status = "unfilled"
        elif left_wh[k] == 0:
            # possibly short of a sub-Wh rest no round can trade (see schedule.py)
            status = "filled"
        else:
            status = "partially_filled"
        writer.writerow(
            [*order_fields(order), rolling.submitted_at_min[k], repr(float(filled[k])), status]
        )
    write_file_atomically(out_dir / "orders.csv", orders.getvalue())
    summary_text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
    write_file_atomically(out_dir / "summary.json", summary_text)
