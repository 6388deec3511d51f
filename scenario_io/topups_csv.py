"""Parse ``topups.csv``: money paid into prepaid accounts during a day of rolling rounds.

Columns (header = row 1)::

    participant_id, at_min, amount_eur

* ``participant_id``: an account of accounts.csv;
* ``at_min``: when the money arrives, whole minutes from the start of the day (>= 0);
  a round clearing at or after that minute can spend it;
* ``amount_eur``: > 0, at most six decimals (whole micro-EUR).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gridmatch.errors import InputError
from gridmatch.scenario_io.csv_cells import read_table
from gridmatch.user_files import parse_int

REQUIRED_COLUMNS = ("participant_id", "at_min", "amount_eur")
# A week of minutes, as long as a day of rounds may run.
MAX_AT_MIN = 7 * 24 * 60


@dataclass(frozen=True)
class TopUp:
    """One validated row of topups.csv."""

    participant_id: str
    at_min: int
    amount_micro_eur: int
    row: int


def read_topups(path: Path, accounts: set[str]) -> tuple[TopUp, ...]:
    """Read and validate a top-ups file, in file order.

    Parameters
    ----------
    accounts
        Participant ids of accounts.csv: a top-up of anyone else is refused.

    Raises
    ------
    InputError
        On the first problem, naming the file, row and column.
    """
    table = read_table(path, "top-ups file", REQUIRED_COLUMNS, ())
    topups = []
    for cells in table.cells():
        participant = cells.identifier("participant_id")
        if participant not in accounts:
            raise cells.fail("participant_id", f"'{participant}' has no account in accounts.csv")
        text = cells.text("at_min")
        try:
            at_min = parse_int(text)
        except ValueError:
            at_min = -1
        if not 0 <= at_min <= MAX_AT_MIN:
            raise cells.fail(
                "at_min", f"'{text}' is not a whole number of minutes in [0, {MAX_AT_MIN}]"
            )
        amount = cells.micro_eur("amount_eur", minimum_eur=0.0, positive=True)
        topups.append(TopUp(participant, at_min, amount, cells.line))
    if not topups:
        raise InputError(path, "no top-ups: the file has a header and no rows")
    return tuple(topups)
