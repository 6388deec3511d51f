"""Chain addresses of market participants and validators on a local demo chain.

Addresses are derived from participant ids (``keccak("gridmatch participant:" + id)``),
so a rerun meets the same accounts. They have no private keys: the embedded anvil runs
with ``--auto-impersonate`` and accepts their transactions unsigned. That is for local
demonstration only; a real deployment signs with each participant's own key.
"""

from __future__ import annotations

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

VALIDATORS = ("validator-1", "validator-2", "validator-3")


def address_of(participant_id: str) -> str:
    """Checksummed address of a participant (or validator) id."""
    return to_checksum_address(keccak(f"gridmatch participant:{participant_id}".encode())[-20:])
