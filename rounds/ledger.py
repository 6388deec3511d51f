"""The round ledger: one SQLite file holding every round's inputs, options, versions and results.

Layout (schema version :data:`SCHEMA_VERSION`, also in ``PRAGMA user_version``; the
file is marked as a gridmatch ledger by ``PRAGMA application_id``):

``meta(key, value)``
    ``schema_version``, ``created_utc``.
``scenario`` (one row)
    ``name``; ``spec_json`` (the validated scenario.yaml); ``network_json``
    (pandapower JSON of the network every round was cleared on) and its
    ``network_sha256``; ``orders_json`` (the day's book with submission times, as the
    first ``rounds run`` was given it: a resumed day may have more orders, and each
    round row holds the book that round saw); ``inputs_json`` (SHA-256 of the source
    files); ``created_utc``.
``rounds`` (one row per round)
    ``round_no``, ``cleared_at_min``, ``input_sha256``, ``orders_json`` (the round's
    book: remaining quantities, time priority), ``background_json`` (earlier rounds'
    injections, see :mod:`gridmatch.rounds.engine`), ``options_json``,
    ``versions_json``, ``formulation``, ``trades_csv`` (the exact bytes of the round's
    trades.csv), ``trades_sha256``, ``summary_json``, ``created_utc``.

``input_sha256`` is the SHA-256 of a canonical JSON document of the scenario's hash
and the round's time, orders, background, options and formulation: everything that
decides the trades, nothing that does not (timings, dates). A round row is written in
one transaction together with the round's result folder, so a crash leaves either
the whole round or none of it.

JSON columns are canonical (sorted keys, no spaces); floats are written with
``repr`` and read back bit for bit.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

import pydantic

from gridmatch.errors import InputError, OutputFolderError
from gridmatch.results_io.layout import LEDGER_FILE
from gridmatch.results_io.locks import acquire_writer_lock
from gridmatch.results_io.summary import RoundSummary
from gridmatch.rounds.engine import RoundClearing, RoundInput
from gridmatch.rounds.hashing import (
    canonical_json,
    current_versions,
    input_sha256,
    sha256_text,
    utc_now,
)
from gridmatch.rounds.ledger_codecs import (
    accounts_from_json,
    background_from_json,
    options_from_json,
    orders_from_json,
    round_input_json,
)
from gridmatch.rounds.ledger_schema import (
    ACCOUNTS_COLUMN_DDL,
    APPLICATION_ID,
    READABLE_VERSIONS,
    ROUND_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
)
from gridmatch.scenario_io.schema import ScenarioSpec
from gridmatch.user_files import parse_json

__all__ = ["LEDGER_FILE", "Ledger", "StoredRound", "StoredScenario"]


@dataclass(frozen=True)
class StoredScenario:
    """The ledger's scenario row."""

    name: str
    spec_json: str
    network_json: str
    network_sha256: str
    orders_json: str
    inputs_json: str
    created_utc: str

    @property
    def sha256(self) -> str:
        """Hex SHA-256 over the spec and the network (shared by every round's inputs)."""
        return sha256_text(canonical_json({"spec": self.spec_json, "network": self.network_sha256}))


@dataclass(frozen=True)
class StoredRound:
    """One row of the ``rounds`` table, as stored."""

    round_no: int
    cleared_at_min: int
    input_sha256: str
    orders_json: str
    background_json: str
    options_json: str
    versions_json: str
    formulation: str
    trades_csv: bytes
    trades_sha256: str
    summary_json: str
    created_utc: str
    accounts_json: str | None = None

    @classmethod
    def from_clearing(cls, clearing: RoundClearing, scenario_sha256: str) -> Self:
        """Build the row for a cleared round, stamped with the running software's versions."""
        data = round_input_json(clearing.round_input)
        return cls(
            round_no=clearing.round_input.round_no,
            cleared_at_min=clearing.round_input.cleared_at_min,
            input_sha256=input_sha256(scenario_sha256, clearing.round_input.cleared_at_min, data),
            orders_json=data["orders"],
            background_json=data["background"],
            options_json=data["options"],
            versions_json=canonical_json(current_versions()),
            formulation=clearing.round_input.formulation,
            trades_csv=clearing.trades_csv,
            trades_sha256=clearing.trades_sha256,
            summary_json=canonical_json(clearing.summary.document()),
            created_utc=utc_now(),
            accounts_json=data.get("accounts"),
        )

    def recomputed_input_sha256(self, scenario_sha256: str) -> str:
        """Recompute the input hash from the stored columns (equal unless altered)."""
        data = {
            "orders": self.orders_json,
            "background": self.background_json,
            "options": self.options_json,
            "formulation": self.formulation,
        }
        if self.accounts_json is not None:
            data["accounts"] = self.accounts_json
        return input_sha256(scenario_sha256, self.cleared_at_min, data)

    def round_input(self, source: Path, formulation: str | None = None) -> RoundInput:
        """Rebuild the round's inputs from the stored columns.

        Parameters
        ----------
        source
            The ledger file (named in errors).
        formulation
            Clear with this formulation instead of the stored one.

        Raises
        ------
        InputError
            If a stored column cannot be read back.
        """
        book, submitted = orders_from_json(self.orders_json, source, self.round_no)
        return RoundInput(
            round_no=self.round_no,
            cleared_at_min=self.cleared_at_min,
            book=book,
            submitted_at_min=submitted,
            background_kwh=background_from_json(self.background_json, source, self.round_no),
            formulation=formulation or self.formulation,
            options=options_from_json(self.options_json, source, self.round_no),
            available_eur=accounts_from_json(self.accounts_json, source, self.round_no),
        )

    @property
    def versions(self) -> dict[str, str | None]:
        """Software versions the round was cleared with."""
        versions: dict[str, str | None] = json.loads(self.versions_json)
        return versions

    def summary(self, source: Path) -> RoundSummary:
        """Return the round's summary.json, as it was written.

        Parameters
        ----------
        source
            The ledger file (named in errors).

        Raises
        ------
        InputError
            If the stored summary is not a round's summary (an altered ledger).
        """
        try:
            return RoundSummary.model_validate_json(self.summary_json)
        except pydantic.ValidationError as exc:
            message = f"round {self.round_no}: stored summary unreadable ({exc.errors()[0]['msg']})"
            raise InputError(source, message, field="summary_json") from None


class Ledger:
    """A round ledger file; use :meth:`create` or :meth:`open`, and close it (or ``with``)."""

    def __init__(
        self, path: Path, connection: sqlite3.Connection, lock: IO[bytes] | None = None
    ) -> None:
        self.path = path
        self._db = connection
        self._lock = lock  # held by writers only (create, open_for_append)
        self._version = SCHEMA_VERSION

    @classmethod
    def create(cls, path: Path, scenario: StoredScenario) -> Self:
        """Create a new ledger holding the scenario row.

        Raises
        ------
        gridmatch.results_io.atomic.OutputFolderError
            If the file exists: a ledger is a record and is never overwritten.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        # The lock first: a --resume racing this run is refused, never reads half a ledger.
        lock = _writer_lock(path)
        staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            _write_new_ledger(staging, scenario)
            try:
                # A hard link appears whole and fails if the name exists: of two runs
                # racing for one folder, one gets the ledger; a killed run leaves none.
                os.link(staging, path)
            except FileExistsError:
                raise OutputFolderError(
                    f"{path}: a round ledger already exists here and is never overwritten; "
                    "continue its day with --resume, or choose another output folder"
                ) from None
            # Autocommit mode: every transaction is opened and closed explicitly.
            db = sqlite3.connect(path, isolation_level=None)
        except BaseException:
            lock.close()
            raise
        finally:
            staging.unlink(missing_ok=True)
        return cls(path, db, lock)

    @classmethod
    def open_for_append(cls, path: Path) -> Self:
        """Open an existing ledger to add rounds to it; one writer at a time.

        Raises
        ------
        InputError
            As for :meth:`open`.
        gridmatch.results_io.atomic.OutputFolderError
            If another process holds the ledger open for writing.
        """
        lock = _writer_lock(path)
        try:
            ledger = cls.open(path)
        except BaseException:
            lock.close()
            raise
        ledger._lock = lock
        if ledger._version == 1:
            ledger._db.execute(ACCOUNTS_COLUMN_DDL)
            ledger._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            ledger._version = SCHEMA_VERSION
        return ledger

    @classmethod
    def open(cls, path: Path) -> Self:
        """Open an existing ledger for reading (nothing here writes to it).

        The connection may write in one case: a process killed mid-round leaves a hot
        journal, which SQLite rolls back on first read, so the half-written round
        vanishes; a read-only connection could not do that and would fail.

        Raises
        ------
        InputError
            If the file is missing, not a gridmatch ledger, or of another schema version.
        """
        if not path.is_file():
            raise InputError(path, "file not found; expected a round ledger (ledger.sqlite)")
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=rw", uri=True)
        try:
            application_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            db.close()
            raise InputError(path, f"not a round ledger: {exc}") from None
        if application_id != APPLICATION_ID:
            db.close()
            raise InputError(path, "not a gridmatch round ledger")
        if version not in READABLE_VERSIONS:
            db.close()
            raise InputError(
                path,
                f"ledger schema version {version}; this gridmatch reads versions "
                f"{', '.join(str(v) for v in READABLE_VERSIONS)}",
            )
        ledger = cls(path, db)
        ledger._version = version
        return ledger

    def close(self) -> None:
        """Close the database connection (and release the writer lock)."""
        self._db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def scenario(self) -> StoredScenario:
        """The scenario row."""
        row = self._db.execute(
            "SELECT name, spec_json, network_json, network_sha256, orders_json, inputs_json, "
            "created_utc FROM scenario WHERE id = 1"
        ).fetchone()
        if row is None:
            raise InputError(self.path, "the ledger holds no scenario")
        return StoredScenario(*row)

    def spec(self) -> ScenarioSpec:
        """Return the stored scenario.yaml, validated again.

        Raises
        ------
        InputError
            If it no longer validates.
        """
        try:
            return ScenarioSpec.model_validate(parse_json(self.scenario.spec_json, self.path))
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise InputError(self.path, f"stored scenario: {exc}", field="spec_json") from None

    def round_numbers(self) -> list[int]:
        """Numbers of the stored rounds, ascending."""
        return [n for (n,) in self._db.execute("SELECT round_no FROM rounds ORDER BY round_no")]

    def read_round(self, round_no: int) -> StoredRound:
        """Return one stored round.

        Raises
        ------
        InputError
            If the ledger has no such round.
        """
        # A version 1 ledger has no accounts column: its rounds had no accounts.
        columns = [
            c if c != "accounts_json" or self._version > 1 else "NULL" for c in ROUND_COLUMNS
        ]
        row = self._db.execute(
            f"SELECT {', '.join(columns)} FROM rounds WHERE round_no = ?", (round_no,)
        ).fetchone()
        if row is None:
            stored = self.round_numbers()
            held = f"rounds {stored[0]}..{stored[-1]}" if stored else "no rounds"
            raise InputError(self.path, f"round {round_no} is not in the ledger (it holds {held})")
        values = list(row)
        values[8] = bytes(values[8])
        return StoredRound(*values)

    @contextmanager
    def append_round(self, record: StoredRound) -> Iterator[None]:
        """Insert a round in a transaction that commits only if the ``with`` block succeeds.

        Whatever else belongs to the round (its result folder) is written inside the
        block; if that fails, the row is rolled back and the ledger is as before.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                f"INSERT INTO rounds ({', '.join(ROUND_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(ROUND_COLUMNS))})",
                tuple(getattr(record, name) for name in ROUND_COLUMNS),
            )
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _write_new_ledger(path: Path, scenario: StoredScenario) -> None:
    """Write a complete new ledger file: schema, marks, meta and the scenario row."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("schema_version", str(SCHEMA_VERSION)), ("created_utc", utc_now())],
        )
        db.execute(
            "INSERT INTO scenario (id, name, spec_json, network_json, network_sha256, "
            "orders_json, inputs_json, created_utc) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
            (
                scenario.name,
                scenario.spec_json,
                scenario.network_json,
                scenario.network_sha256,
                scenario.orders_json,
                scenario.inputs_json,
                scenario.created_utc,
            ),
        )
        db.execute("COMMIT")
    finally:
        db.close()


def _writer_lock(path: Path) -> IO[bytes]:
    # A side file: SQLite's own POSIX locks on the database would be dropped if this
    # process opened and closed another descriptor of that file.
    return acquire_writer_lock(path.with_name(f".{path.name}.lock"), "this ledger")
