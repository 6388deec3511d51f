"""EIP-712 typed data of settlement: signed orders, meter readings and meter bindings.

Digests are computed here with eth-abi exactly as the contract computes them (the type
strings are the contract's; the tests compare with ``Settlement.orderHash`` on chain and
with eth-account's general EIP-712 encoder). Every message is signed under the domain
of one deployed settlement contract on one chain, so a signature cannot be replayed on
another deployment.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

from eth_abi.abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import Hash32
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

DOMAIN_NAME = "gridmatch Settlement"
DOMAIN_VERSION = "2"
_DOMAIN_TYPE = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
ORDER_TYPE = (
    "Order(address participant,bool isBuy,uint64 slotStart,uint64 slotEnd,uint64 quantityWh,"
    "uint64 limitMicroEurPerKwh,uint64 maxFeeMicroEurPerKwh,uint64 expiry,uint64 nonce)"
)
READING_TYPE = (
    "MeterReading(address meter,uint64 intervalStart,uint64 intervalEnd,uint64 exportedWh,"
    "uint64 importedWh)"
)
BINDING_TYPE = "MeterBinding(address participant,address meter)"


@dataclass(frozen=True)
class Domain:
    """The signing domain: one settlement contract on one chain."""

    chain_id: int
    contract: str

    @property
    def separator(self) -> bytes:
        """The EIP-712 domain separator."""
        return keccak(
            encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [
                    _DOMAIN_TYPE,
                    keccak(text=DOMAIN_NAME),
                    keccak(text=DOMAIN_VERSION),
                    self.chain_id,
                    self.contract,
                ],
            )
        )

    def digest(self, struct_hash: bytes) -> bytes:
        """Return the digest a key signs for a message with ``struct_hash``."""
        return keccak(b"\x19\x01" + self.separator + struct_hash)


@dataclass(frozen=True)
class Order:
    """A participant's order as ``Settlement.Order`` (Wh, micro-EUR per kWh, Unix s)."""

    participant: str
    is_buy: bool
    slot_start: int
    slot_end: int
    quantity_wh: int
    limit_micro_eur_per_kwh: int
    max_fee_micro_eur_per_kwh: int
    expiry: int
    nonce: int

    def struct_hash(self) -> bytes:
        """Return the EIP-712 struct hash."""
        return keccak(
            encode(
                ["bytes32", "address", "bool", *["uint64"] * 7],
                [keccak(text=ORDER_TYPE), *astuple(self)],
            )
        )

    def as_tuple(self) -> tuple[object, ...]:
        """Fields in contract order."""
        return astuple(self)


@dataclass(frozen=True)
class MeterReading:
    """What a meter measured over an interval, as the meter signs it."""

    meter: str
    interval_start: int
    interval_end: int
    exported_wh: int
    imported_wh: int

    def struct_hash(self) -> bytes:
        """Return the EIP-712 struct hash."""
        return keccak(
            encode(
                ["bytes32", "address", "uint64", "uint64", "uint64", "uint64"],
                [keccak(text=READING_TYPE), *astuple(self)],
            )
        )


@dataclass(frozen=True)
class MeterBinding:
    """A participant's statement that a meter key is its meter."""

    participant: str
    meter: str

    def struct_hash(self) -> bytes:
        """Return the EIP-712 struct hash."""
        return keccak(
            encode(["bytes32", "address", "address"], [keccak(text=BINDING_TYPE), *astuple(self)])
        )


def sign(account: LocalAccount, digest: bytes) -> bytes:
    """Return a 65-byte signature (r, s, v) of ``digest``, as OpenZeppelin's ECDSA takes it."""
    return bytes(account.unsafe_sign_hash(Hash32(digest)).signature)


def signer_of(digest: bytes, signature: bytes) -> str | None:
    """Return the checksummed address that signed ``digest``, or ``None`` for a bad signature."""
    try:
        return to_checksum_address(Account._recover_hash(digest, signature=signature))
    except (ValueError, TypeError):
        return None
