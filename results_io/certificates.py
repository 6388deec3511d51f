"""The certificates snapshot of a settled result folder, as ``gridmatch report`` reads it.

``gridmatch certificates list`` keeps the chain's latest holdings and retirements in
``settlement/certificates.json`` (EnergyTag field names, see
:mod:`gridmatch.settlement.certificates`); the report reads them from there, never
from the chain. Only the fields the report shows are checked.
"""

from __future__ import annotations

from pathlib import Path

import pydantic

from gridmatch.results_io.folder import read_model
from gridmatch.results_io.layout import CERTIFICATES_SNAPSHOT_FILE


class _Bundle(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow", frozen=True)

    certificate_id: int
    device_name: str
    production_starting_interval: str
    production_ending_interval: str
    certificate_bundle_status: str
    certificate_bundle_id_range_start: int
    certificate_bundle_id_range_end: int
    bundle_quantity: int


class ActiveBundle(_Bundle):
    """A certificate's unretired Wh and who holds them."""

    holdings: dict[str, int]


class ClaimedBundle(_Bundle):
    """One retirement: final, for a named beneficiary and purpose."""

    beneficiary: str
    claim_purpose: str
    account_name: str


class CertificatesSnapshot(pydantic.BaseModel):
    """The content of ``settlement/certificates.json``."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    certificates_contract: str
    chain_id: int
    issued_wh: int
    active: tuple[ActiveBundle, ...]
    claimed: tuple[ClaimedBundle, ...]


def read_certificates_snapshot(folder: Path) -> CertificatesSnapshot | None:
    """Read the snapshot; ``None`` if the folder has none (not settled, or never listed)."""
    path = folder / CERTIFICATES_SNAPSHOT_FILE
    return read_model(path, CertificatesSnapshot) if path.exists() else None
