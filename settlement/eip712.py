"""EIP-712 typed data of settlement: signed orders, meter readings, bindings and votes.

Digests are computed here exactly as the contract computes them (the type strings are
the contract's; the tests compare with eth-abi, with eth-account's general EIP-712
encoder and with ``Settlement.orderHash`` on chain). Every message is signed under the
domain of one deployed settlement contract on one chain, so a signature cannot be
replayed on another deployment.

Every field of these structs is a static 32-byte word, so the encoding is written out
here instead of going through eth-abi: a validator hashes every order, reading and vote
of a round, and eth-abi's general encoder was most of its time. Signing and recovery go
straight to libsecp256k1 (coincurve) for the same reason.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

import coincurve
from Crypto.Hash import keccak as _keccak
from eth_utils.address import to_checksum_address

DOMAIN_NAME = "gridmatch Settlement"
DOMAIN_VERSION = "2"
ORDER_TYPE = (
    "Order(address participant,bool isBuy,uint64 slotStart,uint64 slotEnd,uint64 quantityWh,"
    "uint64 limitMicroEurPerKwh,uint64 maxFeeMicroEurPerKwh,uint64 expiry,uint64 nonce)"
)
READING_TYPE = (
    "MeterReading(address meter,uint64 intervalStart,uint64 intervalEnd,uint64 exportedWh,"
    "uint64 importedWh)"
)
BINDING_TYPE = "MeterBinding(address participant,address meter)"
ATTESTATION_TYPE = "Attestation(bytes32 tradeId,uint64 deliveredWh,uint32 epoch)"
_DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"

# secp256k1's group order; OpenZeppelin's ECDSA refuses s above half of it (malleability).
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_ORDER = CURVE_ORDER // 2


def keccak256(data: bytes) -> bytes:
    """Return the Keccak-256 hash of ``data`` (Ethereum's ``keccak256``)."""
    return _keccak.new(digest_bits=256, data=data).digest()


def uint_word(value: int, bits: int = 64) -> bytes:
    """Return ``value`` ABI-encoded as a ``uint<bits>`` word.

    Raises
    ------
    ValueError
        ``value`` is not an integer in ``[0, 2**bits)``.
    """
    if type(value) is not int or not 0 <= value < 1 << bits:
        raise ValueError(f"{value!r} is not a uint{bits}")
    return value.to_bytes(32, "big")


def address_word(address: str) -> bytes:
    """Return a ``0x``-prefixed 20-byte hex address ABI-encoded as a word."""
    raw = bytes.fromhex(address.removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"{address!r} is not an address")
    return bytes(12) + raw


def bytes32_word(value: bytes) -> bytes:
    """Return 32 bytes as a word (checked)."""
    if len(value) != 32:
        raise ValueError("not 32 bytes")
    return bytes(value)


_ORDER_TYPEHASH = keccak256(ORDER_TYPE.encode())
_READING_TYPEHASH = keccak256(READING_TYPE.encode())
_BINDING_TYPEHASH = keccak256(BINDING_TYPE.encode())
_ATTESTATION_TYPEHASH = keccak256(ATTESTATION_TYPE.encode())


@dataclass(frozen=True)
class Domain:
    """The signing domain: one settlement contract on one chain."""

    chain_id: int
    contract: str

    @property
    def separator(self) -> bytes:
        """The EIP-712 domain separator."""
        return _separator(self.chain_id, self.contract)

    def digest(self, struct_hash: bytes) -> bytes:
        """Return the digest a key signs for a message with ``struct_hash``."""
        return keccak256(b"\x19\x01" + self.separator + struct_hash)


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

    def as_tuple(self) -> tuple[str, bool, int, int, int, int, int, int, int]:
        """Return the fields in contract order."""
        return (
            self.participant,
            self.is_buy,
            self.slot_start,
            self.slot_end,
            self.quantity_wh,
            self.limit_micro_eur_per_kwh,
            self.max_fee_micro_eur_per_kwh,
            self.expiry,
            self.nonce,
        )

    def struct_hash(self) -> bytes:
        """Return the EIP-712 struct hash."""
        numbers = self.as_tuple()[2:]
        return keccak256(
            _ORDER_TYPEHASH
            + address_word(self.participant)
            + uint_word(int(self.is_buy), 8)
            + b"".join(uint_word(n) for n in numbers)
        )


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
        return keccak256(
            _READING_TYPEHASH
            + address_word(self.meter)
            + uint_word(self.interval_start)
            + uint_word(self.interval_end)
            + uint_word(self.exported_wh)
            + uint_word(self.imported_wh)
        )


@dataclass(frozen=True)
class MeterBinding:
    """A participant's statement that a meter key is its meter."""

    participant: str
    meter: str

    def struct_hash(self) -> bytes:
        """Return the EIP-712 struct hash."""
        return keccak256(
            _BINDING_TYPEHASH + address_word(self.participant) + address_word(self.meter)
        )


@dataclass(frozen=True)
class Attestation:
    """A validator's vote: the Wh a trade delivered, under its registration ``epoch``."""

    trade_id: bytes
    delivered_wh: int
    epoch: int

    def struct_hash(self) -> bytes:
        """Return the EIP-712 struct hash."""
        return keccak256(
            _ATTESTATION_TYPEHASH
            + bytes32_word(self.trade_id)
            + uint_word(self.delivered_wh)
            + uint_word(self.epoch, 32)
        )


def trade_id_of(round_id: int, buy_digest: bytes, sell_digest: bytes) -> bytes:
    """Return ``Settlement.tradeIdOf``: a trade's id from its round and its orders' digests."""
    return keccak256(uint_word(round_id) + bytes32_word(buy_digest) + bytes32_word(sell_digest))


class SigningKey(Protocol):
    """Anything holding a secp256k1 secret: an eth-account account or a derived key."""

    @property
    def key(self) -> bytes:
        """The 32-byte secret."""
        ...


def sign(account: SigningKey, digest: bytes) -> bytes:
    """Return a 65-byte signature (r, s, v) of ``digest``, as OpenZeppelin's ECDSA takes it.

    libsecp256k1 always produces the low-s form the contract requires.
    """
    signed = _private_key(bytes(account.key)).sign_recoverable(digest, hasher=None)
    return signed[:64] + bytes([signed[64] + 27])


def signer_of(digest: bytes, signature: bytes) -> str | None:
    """Return the checksummed address that signed ``digest``, or ``None``.

    ``None`` for anything the contract's ECDSA would refuse too: a length other than 65,
    ``v`` other than 27/28, a high ``s`` (a malleated copy) or no recoverable key.
    """
    if len(signature) != 65 or signature[64] not in (27, 28):
        return None
    s = int.from_bytes(signature[32:64], "big")
    if not 0 < s <= _HALF_ORDER:
        return None
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([signature[64] - 27]), digest, hasher=None
        )
    except ValueError:
        return None
    return _checksummed(keccak256(public.format(compressed=False)[1:])[12:])


@functools.lru_cache(maxsize=64)
def _separator(chain_id: int, contract: str) -> bytes:
    return keccak256(
        keccak256(_DOMAIN_TYPE.encode())
        + keccak256(DOMAIN_NAME.encode())
        + keccak256(DOMAIN_VERSION.encode())
        + uint_word(chain_id, 256)
        + address_word(contract)
    )


@functools.lru_cache(maxsize=4096)
def _private_key(secret: bytes) -> coincurve.PrivateKey:
    return coincurve.PrivateKey(secret)


@functools.lru_cache(maxsize=65536)
def _checksummed(raw: bytes) -> str:
    return to_checksum_address(raw)
