"""Contract calls encoded from forge's ABI, without web3.py's normalisers.

web3.py's contract layer checksums and re-validates every address and value in Python
before encoding: attesting 1,000 trades spent ~34 of ~46 s there (cProfile), not on the
chain. Arguments are encoded by :mod:`gridmatch.settlement.abi_encoding` (eth-abi's
encoding, tested against it), results and events decoded by eth-abi. The ABI comes
from forge's output; nothing here is written by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

from eth_abi.abi import decode
from eth_typing import ABIFunction
from eth_utils.abi import (
    function_abi_to_4byte_selector,
    get_abi_input_types,
    get_abi_output_types,
)
from eth_utils.crypto import keccak

from gridmatch.settlement.abi_encoding import encode
from gridmatch.settlement.receipts import Log, Receipt


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

    def event_topic(self, name: str) -> bytes:
        """``topic0`` of event ``name``: the keccak of its signature."""
        event = self._event(name)
        types = ",".join(i["type"] for i in event["inputs"])
        return bytes(keccak(text=f"{name}({types})"))

    def events(self, receipt: Receipt, name: str) -> list[dict[str, Any]]:
        """Every ``name`` event this contract logged in ``receipt``, decoded by field name."""
        return self.decode_logs(receipt.logs, name)

    def decode_logs(self, logs: Iterable[Log], name: str) -> list[dict[str, Any]]:
        """Every ``name`` event of this contract among ``logs``, decoded by field name."""
        event = self._event(name)
        topic = self.event_topic(name)
        indexed = [i for i in event["inputs"] if i["indexed"]]
        plain = [i for i in event["inputs"] if not i["indexed"]]
        found = []
        own = self.address.lower()
        for log in logs:
            topics = log.topics
            if not topics or topics[0] != topic or log.address.lower() != own:
                continue
            values = {
                i["name"]: decode([i["type"]], t)[0]
                for i, t in zip(indexed, topics[1:], strict=True)
            }
            data = decode([i["type"] for i in plain], log.data)
            values.update({i["name"]: v for i, v in zip(plain, data, strict=True)})
            found.append(values)
        return found

    def _event(self, name: str) -> dict[str, Any]:
        for item in self.abi:
            if item.get("type") == "event" and item["name"] == name:
                return item
        raise KeyError(f"no event {name}")


def call_view(w3: Any, contract: ContractAbi, name: str, *args: object) -> tuple[Any, ...]:
    """Run a view function with ``eth_call`` and decode what it returned."""
    data = w3.eth.call({"to": contract.address, "data": contract.calldata(name, *args)})
    return contract.decode_output(name, bytes(data))
