"""Run a day of rolling rounds: clear, record in the ledger, write each round's folder.

``OUT/`` after a run::

    ledger.sqlite      every round's inputs, options, versions and results
    round-001/ ...     per round: trades.csv, orders.csv (the round's book and its
                       fills), summary.json, manifest.json, grid.csv (with security)
    trades.csv         every round's trades, with round_no and cleared_at_min first
    orders.csv         every order of the day: submitted_at_min, filled_kwh over all
                       rounds, status (filled, partially_filled, unfilled, late)
    summary.json       one row per round and the day's totals

Each round's ledger row and folder are written together (the row commits only after
the folder is in place), so a crash leaves whole rounds. The three day files are
written when the last round is done; a ledger is never overwritten.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridmatch.matching.backends.registry import get_backend
from gridmatch.matching.solution import SolveOptions
from gridmatch.pipeline import RunSettings, resolve_settings
from gridmatch.results_io.atomic import (
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
from gridmatch.rounds.schedule import CarryOver, round_times_min
from gridmatch.scenario_io.errors import InputError
from gridmatch.scenario_io.loader import SCENARIO_FILE
from gridmatch.scenario_io.orders_csv import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from gridmatch.scenario_io.schema import ScenarioSpec

_FILL_TOLERANCE_KWH = 1e-6


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
    return out_dir / f"round-{round_no:03d}"


def run_rounds(
    scenario_dir: Path,
    out_dir: Path,
    settings: RunSettings,
    *,
    on_round: Callable[[RoundClearing], None] | None = None,
) -> RoundsRun:
    """Clear a scenario in rolling rounds, recording every round in ``OUT/ledger.sqlite``.

    Parameters
    ----------
    settings
        As for ``gridmatch clear``; ``time_limit_s`` is each round's budget.
    on_round
        Called after each round is recorded (progress output).

    Raises
    ------
    InputError
        Bad input; nothing is written.
    gridmatch.results_io.atomic.OutputFolderError
        ``OUT`` already holds a ledger, or is not a new or empty folder.
    gridmatch.matching.backends.registry.UnknownFormulationError
        Unknown formulation; nothing is written.
    """
    started = time.perf_counter()
    ledger_path = out_dir / LEDGER_FILE
    if ledger_path.exists():
        raise OutputFolderError(
            f"{ledger_path}: a round ledger already exists here and is never overwritten; "
            "choose another output folder"
        )
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
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
    rounds: list[dict[str, Any]] = []
    day_trades: list[list[str]] = []
    with Ledger.create(ledger_path, stored_scenario) as ledger:
        for round_no, at_min in enumerate(times, start=1):
            clearing = clear_round(
                market, carry.round_input(round_no, at_min, formulation, options)
            )
            record = StoredRound.from_clearing(clearing, stored_scenario.sha256)
            with ledger.append_round(record):
                _write_round_folder(
                    round_folder(out_dir, round_no), rolling, clearing, record, formulation
                )
            carry.record(clearing)
            rounds.append(_round_row(clearing, record))
            day_trades.extend(_prefixed_trades(clearing))
            if on_round is not None:
                on_round(clearing)

    summary = _day_summary(rolling, formulation, options, rounds, carry, times, started)
    _write_day_files(out_dir, rolling, carry, times, day_trades, summary)
    return RoundsRun(ledger_path, summary)


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


def _round_row(clearing: RoundClearing, record: StoredRound) -> dict[str, Any]:
    summary = clearing.summary
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


def _prefixed_trades(clearing: RoundClearing) -> list[list[str]]:
    reader = csv.reader(io.StringIO(clearing.trades_csv.decode("utf-8")))
    next(reader)  # the header
    prefix = [str(clearing.round_input.round_no), str(clearing.round_input.cleared_at_min)]
    return [prefix + row for row in reader]


def _day_summary(
    rolling: RollingScenario,
    formulation: str,
    options: SolveOptions,
    rounds: list[dict[str, Any]],
    carry: CarryOver,
    times: list[int],
    started: float,
) -> dict[str, Any]:
    secure = [r["secure"] for r in rounds]
    return {
        "scenario": rolling.scenario.name,
        "formulation": formulation,
        "options": json.loads(options_json(options)),
        "rounds_spec": rolling.rounds.model_dump(mode="json"),
        "n_rounds": len(rounds),
        "n_orders": len(rolling.scenario.book),
        "n_late_orders": int(carry.late(times).sum()),
        "n_trades": sum(r["n_trades"] for r in rounds),
        "traded_kwh": sum(r["traded_kwh"] for r in rounds),
        "welfare_eur": sum(r["welfare_eur"] for r in rounds),
        # null without grid security, as in a single clearing's summary
        "secure": None if any(s is None for s in secure) else all(secure),
        "runtime_s": time.perf_counter() - started,
        "ledger": LEDGER_FILE,
        "rounds": rounds,
    }


def _write_day_files(
    out_dir: Path,
    rolling: RollingScenario,
    carry: CarryOver,
    times: list[int],
    day_trades: list[list[str]],
    summary: dict[str, Any],
) -> None:
    trades = io.StringIO()
    writer = csv.writer(trades, lineterminator="\n")
    writer.writerow(["round_no", "cleared_at_min", *TRADE_COLUMNS])
    writer.writerows(day_trades)
    write_file_atomically(out_dir / "trades.csv", trades.getvalue())

    orders = io.StringIO()
    writer = csv.writer(orders, lineterminator="\n")
    writer.writerow(
        [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, SUBMITTED_COLUMN, "filled_kwh", "status"]
    )
    filled = carry.traded_kwh
    left_wh = carry.remaining_wh()
    late = carry.late(times)
    for k, order in enumerate(rolling.scenario.book.orders):
        if late[k]:
            status = "late"
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
