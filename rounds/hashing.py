"""Canonical JSON and hashes of the round ledger: one text per value, and what decides a round."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import UTC, datetime

from gridmatch.results_io.manifest import package_versions, source_fingerprint


def canonical_json(document: object) -> str:
    """JSON with sorted keys and no whitespace: one text per value, for hashing."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def input_sha256(scenario_sha256: str, cleared_at_min: int, data: dict[str, str]) -> str:
    """Hash of everything that decides a round's trades (see the module docstring)."""
    return sha256_text(
        canonical_json({"scenario": scenario_sha256, "cleared_at_min": cleared_at_min, **data})
    )


def current_versions() -> dict[str, str | None]:
    """Python, platform, the package versions that can change a result, and our own code.

    ``gridmatch_source_sha256`` tells changed code from an unchanged version number.
    """
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **package_versions(),
        "gridmatch_source_sha256": source_fingerprint(),
    }


def utc_now() -> str:
    """Return the current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
