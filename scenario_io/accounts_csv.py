"""Parse ``accounts.csv``: the prepaid balance of each participant (and its meter).

Columns (header = row 1)::

    participant_id, balance_eur [, meter_id] [, emergency_credit_eur]

* ``participant_id``: an id as in orders.csv (printable, at most 200 characters), unique;
* ``balance_eur``: the prepaid balance in EUR, at most six decimals (whole micro-EUR);
  negative is a debt the participant starts with, down to -1,000,000;
* ``meter_id``: the participant's meter (letters, digits, ``.``, ``_``, ``-``), unique;
  the prepaid meter loop (``gridmatch prepaid``) requires it, a clearing does not;
* ``emergency_credit_eur``: credit the meter may run into below zero before it is cut
  off, >= 0; without the column every account takes the default of whoever reads it.

One parser for both readers: the prepaid meter loop and budgets in matching.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gridmatch.errors import InputError
from gridmatch.scenario_io.csv_cells import MAX_ABS_EUR, read_table

ACCOUNTS_FILE = "accounts.csv"
REQUIRED_COLUMNS = ("participant_id", "balance_eur")
OPTIONAL_COLUMNS = ("meter_id", "emergency_credit_eur")


@dataclass(frozen=True)
class Account:
    """One validated row of accounts.csv.

    Attributes
    ----------
    meter_id
        ``None`` if the file has no ``meter_id`` column.
    emergency_credit_micro_eur
        ``None`` if the file has no ``emergency_credit_eur`` column (the reader's default).
    row
        The file line of the account (header = row 1), for errors found later.
    """

    participant_id: str
    balance_micro_eur: int
    meter_id: str | None
    emergency_credit_micro_eur: int | None
    row: int


@dataclass(frozen=True)
class AccountTable:
    """A validated accounts file, accounts in file order."""

    path: Path
    accounts: tuple[Account, ...]

    def by_participant(self) -> dict[str, Account]:
        """Return the accounts by participant id."""
        return {account.participant_id: account for account in self.accounts}


def read_accounts(path: Path, *, require_meter: bool = False) -> AccountTable:
    """Read and validate an accounts file.

    Parameters
    ----------
    require_meter
        Refuse a file without a ``meter_id`` column (the prepaid meter loop needs one).

    Raises
    ------
    InputError
        On the first problem, naming the file, row and column: a duplicate participant or
        meter, an amount finer than 1 micro-EUR, a negative emergency credit, no accounts.
    """
    table = read_table(path, "accounts file", REQUIRED_COLUMNS, OPTIONAL_COLUMNS)
    if require_meter and "meter_id" not in table.header:
        raise InputError(path, "missing column: meter_id (each account's meter)", row=1)
    accounts: list[Account] = []
    participants: dict[str, int] = {}
    meters: dict[str, int] = {}
    for cells in table.cells():
        participant = cells.identifier("participant_id")
        if participant in participants:
            raise cells.fail(
                "participant_id",
                f"duplicate participant_id '{participant}' (first on row "
                f"{participants[participant]})",
            )
        participants[participant] = cells.line
        meter = None
        if cells.has("meter_id"):
            meter = cells.meter_id("meter_id")
            # Meter ids name output files: two that differ only in case would be one
            # file on a case-insensitive file system.
            folded = meter.casefold()
            if folded in meters:
                raise cells.fail(
                    "meter_id",
                    f"meter '{meter}' is given twice (first on row {meters[folded]}; "
                    "ids that differ only in case count as the same)",
                )
            meters[folded] = cells.line
        emergency = None
        if cells.has("emergency_credit_eur"):
            emergency = cells.micro_eur("emergency_credit_eur", minimum_eur=0.0)
        balance = cells.micro_eur("balance_eur", minimum_eur=-MAX_ABS_EUR)
        accounts.append(Account(participant, balance, meter, emergency, cells.line))
    if not accounts:
        raise InputError(path, "no accounts: the file has a header and no rows")
    return AccountTable(path, tuple(accounts))
