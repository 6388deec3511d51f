"""Rolling clearing rounds with an SQLite round ledger: run, rerun and diff (issue #5)."""
