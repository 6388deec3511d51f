"""Merkle leaves and proofs of a round's trades, as ``Settlement.sol`` verifies them.

A leaf is ``keccak256(keccak256(abi.encode(trade)))`` (OpenZeppelin's StandardMerkleTree
leaf); inner nodes hash their two children in sorted order, and a node without a sibling
moves up unchanged, so OpenZeppelin's ``MerkleProof`` verifies the proofs.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi.abi import encode
from eth_utils.crypto import keccak

TRADE_TYPES = ("uint64", "uint64", "address", "address", "uint64", "uint64", "uint64", "uint64")


def trade_leaf(trade: Sequence[object]) -> bytes:
    """Leaf of one trade tuple (fields in ``Settlement.Trade`` order)."""
    return keccak(keccak(encode(list(TRADE_TYPES), list(trade))))


def _pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


def root_and_proofs(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """Root of the tree over ``leaves`` and each leaf's proof (sibling hashes, bottom up)."""
    if not leaves:
        raise ValueError("a round needs at least one trade")
    proofs: list[list[bytes]] = [[] for _ in leaves]
    positions = list(range(len(leaves)))  # each leaf's index on the current level
    level = list(leaves)
    while len(level) > 1:
        for k, index in enumerate(positions):
            sibling = index ^ 1
            if sibling < len(level):
                proofs[k].append(level[sibling])
            positions[k] = index // 2
        level = [
            _pair(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return level[0], proofs
