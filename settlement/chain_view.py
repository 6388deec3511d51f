"""What a validator reads from the chain itself, instead of from the deployment record.

The record is a file anyone could edit; the chain is not. A validator takes from it
the trades the contract accepted (``TradeAdded`` events: id, buyer, seller, Wh), the
grid operator (``Settlement.feeRecipient``: it certifies which meter key measures which
connection, and receives the grid fees) and the chain's clock (the latest block's time:
a slot is delivered, and its readings final, only once the chain's clock has passed
its end; the contract counts no vote before).

It asks the node over plain JSON-RPC (``requests``, as web3.py's HTTP provider does)
rather than through web3.py: importing web3.py took ~0.8 s of CPU in every validator
process, and every attest starts four of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from eth_utils.address import to_checksum_address

from gridmatch.errors import ChainError
from gridmatch.settlement.abi_calls import ContractAbi
from gridmatch.settlement.artifacts import load
from gridmatch.settlement.receipts import Log

# As long as the other connections to the node wait (chain.connect).
RPC_TIMEOUT_S = 300


@dataclass(frozen=True)
class AddedTrade:
    """A trade as the contract accepted it."""

    buyer: str
    seller: str
    quantity_wh: int


@dataclass(frozen=True)
class ChainView:
    """What the validator checked on chain.

    Attributes
    ----------
    added
        Trade id (``0x`` hex) -> the trade, for every trade the contract accepted.
    epoch
        The validator's current registration in the registry (0: not registered).
    timestamp
        The latest block's time (Unix seconds): the contract's ``block.timestamp``.
    """

    chain_id: int
    grid_operator: str
    added: dict[str, AddedTrade]
    epoch: int
    timestamp: int


def read_chain_view(rpc_url: str, settlement_address: str, validator: str) -> ChainView:
    """Read the accepted trades, the grid operator, ``validator``'s epoch and the clock.

    Raises
    ------
    ChainError
        The node fails, or holds no contract at the address.
    """
    try:
        with requests.Session() as session:
            node = _Node(rpc_url, session)
            address = to_checksum_address(settlement_address)
            if not _hex_bytes(node.request("eth_getCode", [address, "latest"]), "eth_getCode"):
                raise ChainError(f"no settlement contract at {address} on {rpc_url}")
            settlement = ContractAbi(address, tuple(load("Settlement").abi))
            (grid_operator,) = node.call_view(settlement, "feeRecipient")
            logs = _logs(node, address, settlement.event_topic("TradeAdded"))
            added = {
                "0x" + bytes(e["tradeId"]).hex(): AddedTrade(
                    to_checksum_address(e["buyer"]),
                    to_checksum_address(e["seller"]),
                    int(e["quantityWh"]),
                )
                for e in settlement.decode_logs(logs, "TradeAdded")
            }
            (registry_address,) = node.call_view(settlement, "validators")
            registry = ContractAbi(
                to_checksum_address(registry_address), tuple(load("ValidatorRegistry").abi)
            )
            (epoch,) = node.call_view(registry, "epochOf", validator)
            chain_id = _quantity(node.request("eth_chainId", []), "eth_chainId")
            block = node.request("eth_getBlockByNumber", ["latest", False])
            if not isinstance(block, dict):
                raise ChainError(f"the node answered eth_getBlockByNumber with {block!r}")
            timestamp = _quantity(block.get("timestamp"), "eth_getBlockByNumber")
            return ChainView(
                chain_id, to_checksum_address(grid_operator), added, int(epoch), timestamp
            )
    except requests.RequestException as exc:
        raise ChainError(f"the node failed: {type(exc).__name__}: {exc}") from None


@dataclass
class _Node:
    """One node's JSON-RPC over HTTP: the few requests a validator makes."""

    url: str
    session: requests.Session
    _id: int = 0

    def request(self, method: str, params: list[Any]) -> Any:
        """Return the ``result`` of one request; an ``error`` becomes a ChainError."""
        self._id += 1
        response = self.session.post(
            self.url,
            json={"jsonrpc": "2.0", "id": self._id, "method": method, "params": params},
            timeout=RPC_TIMEOUT_S,
        )
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict) or "error" in body or "result" not in body:
            error = body.get("error", body) if isinstance(body, dict) else body
            raise ChainError(f"the node refused {method}: {error}")
        return body["result"]

    def call_view(self, contract: ContractAbi, name: str, *args: object) -> tuple[Any, ...]:
        """Run a view function with ``eth_call`` on the latest block and decode its result."""
        call = {"to": contract.address, "data": "0x" + contract.calldata(name, *args).hex()}
        result = self.request("eth_call", [call, "latest"])
        return contract.decode_output(name, _hex_bytes(result, "eth_call"))


def utc_text(unix_s: int) -> str:
    """Return a Unix time (a block's clock, a slot's end) as ISO 8601 UTC text."""
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _logs(node: _Node, address: str, topic: bytes) -> list[Log]:
    query = {"address": address, "topics": ["0x" + topic.hex()], "fromBlock": "0x0"}
    found = node.request("eth_getLogs", [query])
    if not isinstance(found, list):
        raise ChainError(f"the node answered eth_getLogs with {type(found).__name__}")
    try:
        return [
            Log(
                address=log["address"],
                topics=tuple(_hex_bytes(t, "eth_getLogs") for t in log["topics"]),
                data=_hex_bytes(log["data"], "eth_getLogs"),
            )
            for log in found
        ]
    except (KeyError, TypeError):
        raise ChainError("the node answered eth_getLogs with a malformed log") from None


def _hex_bytes(value: Any, method: str) -> bytes:
    """Return the bytes of a ``0x`` hex string the node returned."""
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise ChainError(f"the node answered {method} with {value!r}, not 0x hex data")


def _quantity(value: Any, method: str) -> int:
    """Return the number of a ``0x`` hex quantity the node returned."""
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return int(value[2:], 16)
        except ValueError:
            pass
    raise ChainError(f"the node answered {method} with {value!r}, not a 0x hex quantity")
