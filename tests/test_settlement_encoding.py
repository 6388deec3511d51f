"""Our ABI and EIP-712 encoders against eth-abi, and signature recovery against eth-account.

The fast encoders exist only for speed, so they must agree with the reference
libraries byte for byte, on random values of every function our contracts expose.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode as reference_encode
from eth_abi.grammar import ABIType, BasicType, TupleType, parse
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from gridmatch.settlement import eip712
from gridmatch.settlement.abi_encoding import AbiEncodingError, encode
from gridmatch.settlement.artifacts import build, load

CONTRACTS = ("Settlement", "EnergyToken", "PaymentToken", "ValidatorRegistry")


def _input_types(item: dict[str, Any]) -> list[str]:
    def one(arg: dict[str, Any]) -> str:
        if arg["type"].startswith("tuple"):
            inner = ",".join(one(c) for c in arg["components"])
            return f"({inner}){arg['type'][len('tuple') :]}"
        return str(arg["type"])

    return [one(a) for a in item["inputs"]]


def _function_types() -> list[tuple[str, list[str]]]:
    build()
    found = []
    for name in CONTRACTS:
        for item in load(name).abi:
            if item.get("type") in ("function", "constructor") and item["inputs"]:
                found.append((f"{name}.{item.get('name', 'constructor')}", _input_types(item)))
    return found


def _values(abi_type: ABIType) -> st.SearchStrategy[Any]:
    if abi_type.arrlist:
        item = _values(abi_type.item_type)
        size = abi_type.arrlist[-1]
        if size:
            return st.lists(item, min_size=size[0], max_size=size[0])
        return st.lists(item, max_size=3)
    if isinstance(abi_type, TupleType):
        return st.tuples(*(_values(c) for c in abi_type.components))
    assert isinstance(abi_type, BasicType)
    if abi_type.base == "uint":
        assert isinstance(abi_type.sub, int)
        top = (1 << abi_type.sub) - 1
        return st.one_of(st.sampled_from([0, 1, top]), st.integers(0, top))
    if abi_type.base == "bool":
        return st.booleans()
    if abi_type.base == "address":
        raw = st.binary(min_size=20, max_size=20)
        return st.one_of(raw.map(to_checksum_address), raw.map(lambda b: "0x" + b.hex()))
    if abi_type.base == "bytes" and abi_type.sub is None:
        return st.binary(max_size=70)
    if abi_type.base == "bytes":
        assert isinstance(abi_type.sub, int)
        return st.binary(min_size=abi_type.sub, max_size=abi_type.sub)
    if abi_type.base == "string":
        return st.text(max_size=40)
    raise AssertionError(f"no strategy for {abi_type.to_type_str()}")


FUNCTIONS = _function_types()


def test_every_contract_function_is_covered() -> None:
    names = {name for name, _ in FUNCTIONS}
    assert {"Settlement.settleBatch", "Settlement.addTrades", "Settlement.reclaimBatch"} <= names


@pytest.mark.parametrize(("name", "types"), FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_encoding_equals_eth_abi(name: str, types: list[str], data: st.DataObject) -> None:
    values = [data.draw(_values(parse(t)), label=t) for t in types]
    assert encode(types, values) == reference_encode(types, values), name


@pytest.mark.parametrize(
    ("types", "values"),
    [
        (["uint64"], [1 << 64]),
        (["uint64"], [-1]),
        (["uint64"], [True]),
        (["bool"], [1]),
        (["address"], ["0x" + "ab" * 19]),
        (["bytes32"], [b"x" * 33]),
        (["bytes"], ["not bytes"]),
        (["(uint64,bool)"], [(1,)]),
        (["uint64[2]"], [[1]]),
        (["uint64[]"], [5]),
    ],
)
def test_refuses_what_eth_abi_refuses(types: list[str], values: list[Any]) -> None:
    with pytest.raises(AbiEncodingError):
        encode(types, values)
    with pytest.raises(Exception):  # noqa: B017 -- eth-abi's errors vary by type
        reference_encode(types, values)


ADDRESSES = st.binary(min_size=20, max_size=20).map(to_checksum_address)
UINT64 = st.integers(0, (1 << 64) - 1)


@settings(max_examples=200, deadline=None)
@given(
    participant=ADDRESSES,
    is_buy=st.booleans(),
    numbers=st.lists(UINT64, min_size=7, max_size=7),
    meter=ADDRESSES,
    reading=st.lists(UINT64, min_size=4, max_size=4),
    trade_id=st.binary(min_size=32, max_size=32),
    chain_id=st.integers(1, (1 << 64) - 1),
)
def test_struct_hashes_equal_eth_abi(
    participant: str,
    is_buy: bool,
    numbers: list[int],
    meter: str,
    reading: list[int],
    trade_id: bytes,
    chain_id: int,
) -> None:
    order = eip712.Order(participant, is_buy, *numbers)
    assert order.struct_hash() == keccak(
        reference_encode(
            ["bytes32", "address", "bool", *["uint64"] * 7],
            [keccak(text=eip712.ORDER_TYPE), participant, is_buy, *numbers],
        )
    )
    message = eip712.MeterReading(meter, *reading)
    assert message.struct_hash() == keccak(
        reference_encode(
            ["bytes32", "address", *["uint64"] * 4],
            [keccak(text=eip712.READING_TYPE), meter, *reading],
        )
    )
    binding = eip712.MeterBinding(participant, meter)
    assert binding.struct_hash() == keccak(
        reference_encode(
            ["bytes32", "address", "address"],
            [keccak(text=eip712.BINDING_TYPE), participant, meter],
        )
    )
    epoch = numbers[1] >> 32
    vote = eip712.Attestation(trade_id, numbers[0], epoch)
    assert vote.struct_hash() == keccak(
        reference_encode(
            ["bytes32", "bytes32", "uint64", "uint32"],
            [keccak(text=eip712.ATTESTATION_TYPE), trade_id, numbers[0], epoch],
        )
    )
    domain = eip712.Domain(chain_id, meter)
    assert domain.separator == keccak(
        reference_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                keccak(
                    text="EIP712Domain(string name,string version,uint256 chainId,"
                    "address verifyingContract)"
                ),
                keccak(text=eip712.DOMAIN_NAME),
                keccak(text=eip712.DOMAIN_VERSION),
                chain_id,
                meter,
            ],
        )
    )


@settings(max_examples=50, deadline=None)
@given(digest=st.binary(min_size=32, max_size=32), secret=st.integers(1, 2**255))
def test_sign_and_recover_agree_with_eth_account(digest: bytes, secret: int) -> None:
    account = Account.from_key(secret.to_bytes(32, "big"))
    signature = eip712.sign(account, digest)
    assert signature == bytes(account.unsafe_sign_hash(digest).signature)
    assert eip712.signer_of(digest, signature) == account.address
    assert Account._recover_hash(digest, signature=signature) == account.address


def test_signer_of_refuses_what_the_contract_refuses() -> None:
    account = Account.from_key(b"\x01" * 32)
    digest = keccak(b"reading")
    signature = eip712.sign(account, digest)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    # The malleated twin (n - s, other v) recovers the same key off chain but is
    # refused by OpenZeppelin's ECDSA, so it must not count here either.
    twin = r + (order - s).to_bytes(32, "big") + bytes([55 - v])
    assert Account._recover_hash(digest, signature=twin) == account.address
    assert eip712.signer_of(digest, twin) is None
    assert eip712.signer_of(digest, signature[:64] + bytes([29])) is None
    assert eip712.signer_of(digest, signature[:64]) is None
    assert eip712.signer_of(digest, bytes(65)) is None
