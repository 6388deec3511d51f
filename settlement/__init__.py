"""Settle cleared trades on the Solidity contracts of ``contracts/`` (issue #4)."""
