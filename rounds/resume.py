"""Continue a day whose ledger already holds rounds: after a crash, or with new orders.

The ledger is the record: a round it holds is never cleared again. To continue, the
carry-over (what each order has left, the grid background) is rebuilt from the stored
rounds, and the scenario folder as it is now must give every stored round exactly
the inputs that round was cleared with (the same ``input_sha256``). So:

* ``scenario.yaml`` and the network must be the ones the day started with;
* formulation and solver options must be the stored ones;
* orders may be added to the orders file if they are submitted after the last stored
  round (no cleared round could have seen them); an order a stored round saw cannot
  change, and no order may be slipped in before a round that has cleared.

Trades are read back from the stored trades.csv bytes in their stored order, and
their quantities were written with ``repr``, so the rebuilt carry-over holds the same
floats as an uninterrupted run's: the continued day is byte-identical to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridmatch.errors import InputError, UsageError
from gridmatch.matching.solution import SolveOptions
from gridmatch.results_io.folder import parse_trades
from gridmatch.rounds.engine import RoundInput
from gridmatch.rounds.hashing import canonical_json, input_sha256
from gridmatch.rounds.ledger import Ledger, StoredRound, StoredScenario
from gridmatch.rounds.ledger_codecs import options_from_json, options_json, round_input_json
from gridmatch.rounds.order_book import SUBMITTED_COLUMN, RollingScenario
from gridmatch.rounds.replay import check_integrity, check_scenario_integrity
from gridmatch.rounds.schedule import CarryOver
from gridmatch.scenario_io.loader import SCENARIO_FILE
from gridmatch.scenario_io.schema import ScenarioSpec


class LedgerMismatchError(UsageError):
    """The run's options are not the ones the ledger's rounds were cleared with."""


def restore_rounds(
    ledger: Ledger,
    rolling: RollingScenario,
    scenario: StoredScenario,
    carry: CarryOver,
    round_times_min: list[int],
    formulation: str,
    options: SolveOptions,
    on_stored: Callable[[StoredRound, RoundInput], None] | None = None,
) -> list[StoredRound]:
    """Check a ledger against the scenario as it is now and replay its rounds into ``carry``.

    Parameters
    ----------
    ledger
        The day's ledger, open for appending.
    rolling
        The scenario folder as it is now.
    scenario
        The scenario row this run would write (spec, network) for comparison.
    carry
        A fresh carry-over of ``rolling``'s book; on return it holds every stored
        round's trades, as if those rounds had just been cleared.
    round_times_min
        The day's round times.
    formulation, options
        What this run clears with.
    on_stored
        Called with each stored round and its checked input (the orders as they stood
        before it), in order: to rebuild a round folder that is gone.

    Returns
    -------
    list of StoredRound
        The stored rounds, in order.

    Raises
    ------
    InputError
        The scenario folder no longer gives a stored round its inputs (names the file,
        and the order's row and field where one order is to blame), or the ledger was
        altered.
    LedgerMismatchError
        Other formulation or options than the stored rounds'.
    """
    stored_scenario = ledger.scenario
    check_scenario_integrity(ledger.path, stored_scenario)
    _check_same_scenario(rolling, stored_scenario, ledger.spec(), scenario)
    numbers = ledger.round_numbers()
    if numbers != list(range(1, len(numbers) + 1)) or len(numbers) > len(round_times_min):
        raise InputError(ledger.path, f"the ledger's rounds {numbers} are not this day's rounds")
    stored_rounds = [ledger.read_round(n) for n in numbers]
    for stored in stored_rounds:
        check_integrity(ledger.path, stored, stored_scenario.sha256)
    for stored in stored_rounds:
        _check_same_options(ledger.path, stored, formulation, options)

    for stored, at_min in zip(stored_rounds, round_times_min, strict=False):
        round_input = carry.round_input(stored.round_no, at_min, formulation, options)
        # The options as the round stored them (equal, checked above; a ledger written
        # before an option existed stores them without it).
        data = {**round_input_json(round_input), "options": stored.options_json}
        if input_sha256(stored_scenario.sha256, at_min, data) != stored.input_sha256:
            _explain_changed_round(rolling, stored, data["orders"], ledger.path)
        if on_stored is not None:
            on_stored(stored, round_input)
        carry.record_trades(
            (
                t.slot,
                t.buy_order_id,
                t.sell_order_id,
                t.quantity_kwh,
                t.quantity_kwh * (t.price_eur_per_kwh + t.fee_eur_per_kwh),
            )
            for t in parse_trades(stored.trades_csv, ledger.path)
        )
    return stored_rounds


def _check_same_scenario(
    rolling: RollingScenario, stored: StoredScenario, stored_spec: ScenarioSpec, now: StoredScenario
) -> None:
    scenario_file = rolling.scenario.directory / SCENARIO_FILE
    # Compared as this gridmatch reads them: a key added to the schema since the day
    # began is stored without its default, which changes nothing.
    stored_spec_json = canonical_json(stored_spec.model_dump(mode="json"))
    if stored_spec_json != now.spec_json:
        before, after = json.loads(stored_spec_json), json.loads(now.spec_json)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        raise InputError(
            scenario_file,
            "differs from the scenario.yaml this ledger's day started with; "
            "a day continues on the same settings",
            field=changed[0] if changed else None,
        )
    if stored.network_sha256 != now.network_sha256:
        raise InputError(
            scenario_file,
            "the network differs from the one this ledger's rounds were cleared on",
            field="network",
        )


def _check_same_options(
    ledger_path: Path, stored: StoredRound, formulation: str, options: SolveOptions
) -> None:
    stored_options = options_from_json(stored.options_json, ledger_path, stored.round_no)
    if stored.formulation != formulation or stored_options != options:
        raise LedgerMismatchError(
            f"the ledger's round {stored.round_no} was cleared with formulation "
            f"{stored.formulation} and options {options_json(stored_options)}; this run asks "
            f"for {formulation} and {options_json(options)}. A day continues with the "
            "options it started with"
        )


def _explain_changed_round(
    rolling: RollingScenario, stored: StoredRound, orders_now_json: str, ledger_path: Path
) -> None:
    """Raise an error naming the order that changes a stored round's inputs."""
    scenario = rolling.scenario
    orders_file = (scenario.directory / scenario.spec.orders).resolve()
    book_rows = zip(scenario.book.orders, scenario.order_rows, strict=True)
    rows = {order.order_id: row for order, row in book_rows}
    when = f"round {stored.round_no} (cleared at {stored.cleared_at_min} min)"
    before = {o["order_id"]: o for o in json.loads(stored.orders_json)}
    after = {o["order_id"]: o for o in json.loads(orders_now_json)}
    for order_id, order in after.items():
        if order_id not in before:
            raise InputError(
                orders_file,
                f"order {order_id} (submitted at {order[SUBMITTED_COLUMN]} min) would have "
                f"been in {when}, which the ledger holds without it; orders added to a "
                "running day must be submitted after its last cleared round",
                row=rows.get(order_id),
                field=SUBMITTED_COLUMN,
            )
        field = _first_changed_field(before[order_id], order)
        if field is not None:
            raise InputError(
                orders_file,
                f"order {order_id} differs from what {when} saw (stored in the ledger); "
                "a cleared round cannot change",
                row=rows.get(order_id),
                field=field,
            )
    if before.keys() == after.keys() and list(before) != list(after):
        # Same orders, another sequence: rows moved in the file (the tie-break of equal
        # submission times is the file row).
        moved = next(b for b, a in zip(before, after, strict=True) if b != a)
        raise InputError(
            orders_file,
            f"order {moved} sits elsewhere in the book than when {when} cleared (time "
            "priority: submission time, then file row); rows of a running day cannot "
            "be reordered",
            row=rows.get(moved),
        )
    for order_id in before.keys() - after.keys():
        raise InputError(
            orders_file,
            f"order {order_id} was in {when} (stored in the ledger) and is missing or "
            "changed now; a cleared round cannot change",
            row=rows.get(order_id),
        )
    raise InputError(
        ledger_path,
        f"{when}: its inputs rebuilt from the scenario folder differ from the stored ones "
        "(grid background or order of the book); the day cannot be continued",
    )


def _first_changed_field(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    for name in before:
        if before[name] != after.get(name):
            return name
    return None
