"""The round ledger's SQLite schema: tables, columns, version and the file's mark."""

from __future__ import annotations

# Version 2 added the rounds' prepaid balances (accounts_json); version 1 ledgers are read
# as days without accounts and gain the column when a day is continued.
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
# "gmlg": tells a gridmatch ledger from any other SQLite file.
APPLICATION_ID = 0x676D6C67

SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE scenario (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    network_json TEXT NOT NULL,
    network_sha256 TEXT NOT NULL,
    orders_json TEXT NOT NULL,
    inputs_json TEXT NOT NULL,
    created_utc TEXT NOT NULL
);
CREATE TABLE rounds (
    round_no INTEGER PRIMARY KEY CHECK (round_no >= 1),
    cleared_at_min INTEGER NOT NULL CHECK (cleared_at_min >= 0),
    input_sha256 TEXT NOT NULL,
    orders_json TEXT NOT NULL,
    background_json TEXT NOT NULL,
    options_json TEXT NOT NULL,
    versions_json TEXT NOT NULL,
    formulation TEXT NOT NULL,
    trades_csv BLOB NOT NULL,
    trades_sha256 TEXT NOT NULL,
    summary_json TEXT NOT NULL,
    created_utc TEXT NOT NULL,
    accounts_json TEXT
);
"""
# Added by schema version 2 (NULL: the round had no prepaid accounts).
ACCOUNTS_COLUMN_DDL = "ALTER TABLE rounds ADD COLUMN accounts_json TEXT"
ROUND_COLUMNS = (
    "round_no",
    "cleared_at_min",
    "input_sha256",
    "orders_json",
    "background_json",
    "options_json",
    "versions_json",
    "formulation",
    "trades_csv",
    "trades_sha256",
    "summary_json",
    "created_utc",
    "accounts_json",
)
