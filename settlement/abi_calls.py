"""Contract calls encoded with eth-abi from forge's ABI, without web3.py's normalisers.

web3.py's contract layer checksums and re-validates every address and value in Python
before encoding: attesting 1,000 trades spent ~34 of ~46 s there (cProfile), not on the
chain. eth-abi, the encoder web3.py itself ends in, does the same encoding directly. The
ABI still comes from forge's output; nothing here is written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

from eth_abi.abi import decode, encode
from eth_typing import ABIFunction
from eth_utils.abi import (
    function_abi_to_4byte_selector,
    get_abi_input_types,
    get_abi_output_types,
)


@dataclass(frozen=True)
class ContractAbi:
    """A deployed contract's address and its ABI, with calldata encoding by function name."""

    address: str
    abi: tuple[dict[str, Any], ...]

    @cached_property
    def _functions(self) -> dict[str, ABIFunction]:
        functions: dict[str, ABIFunction] = {}
        for item in self.abi:
            if item.get("type") == "function":
                if item["name"] in functions:
                    raise ValueError(f"overloaded function {item['name']} needs a signature")
                functions[item["name"]] = cast(ABIFunction, item)
        return functions

    def calldata(self, name: str, *args: object) -> bytes:
        """Selector and ABI-encoded arguments of a call to function ``name``."""
        function = self._functions[name]
        return bytes(function_abi_to_4byte_selector(function)) + encode(
            get_abi_input_types(function), args
        )

    def decode_output(self, name: str, data: bytes) -> tuple[Any, ...]:
        """Decode what function ``name`` returned in ``data``."""
        return tuple(decode(get_abi_output_types(self._functions[name]), data))


def call_view(w3: Any, contract: ContractAbi, name: str, *args: object) -> tuple[Any, ...]:
    """Run a view function with ``eth_call`` and decode what it returned."""
    data = w3.eth.call({"to": contract.address, "data": contract.calldata(name, *args)})
    return contract.decode_output(name, bytes(data))
