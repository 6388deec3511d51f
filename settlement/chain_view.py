"""What a validator reads from the chain itself, instead of from the deployment record.

The record is a file anyone could edit; the chain is not. A validator takes from it
the trades the contract accepted (``TradeAdded`` events: id, buyer, seller, Wh) and the
grid operator (``Settlement.feeRecipient``: it certifies which meter key measures which
connection, and receives the grid fees).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from web3 import Web3
from web3.exceptions import Web3Exception
from web3.types import RPCEndpoint

from gridmatch.errors import ChainError
from gridmatch.settlement.abi_calls import ContractAbi, call_view
from gridmatch.settlement.artifacts import load
from gridmatch.settlement.receipts import Log


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
    """

    chain_id: int
    grid_operator: str
    added: dict[str, AddedTrade]
    epoch: int


def read_chain_view(rpc_url: str, settlement_address: str, validator: str) -> ChainView:
    """Read the accepted trades, the grid operator and ``validator``'s epoch from the node.

    Raises
    ------
    ChainError
        The node fails, or holds no contract at the address.
    """
    try:
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 300}))
        address = Web3.to_checksum_address(settlement_address)
        if not w3.eth.get_code(address):
            raise ChainError(f"no settlement contract at {address} on {rpc_url}")
        settlement = ContractAbi(address, tuple(load("Settlement").abi))
        (grid_operator,) = call_view(w3, settlement, "feeRecipient")
        logs = _logs(w3, address, settlement.event_topic("TradeAdded"))
        added = {
            "0x" + bytes(e["tradeId"]).hex(): AddedTrade(
                Web3.to_checksum_address(e["buyer"]),
                Web3.to_checksum_address(e["seller"]),
                int(e["quantityWh"]),
            )
            for e in settlement.decode_logs(logs, "TradeAdded")
        }
        (registry_address,) = call_view(w3, settlement, "validators")
        registry = ContractAbi(
            Web3.to_checksum_address(registry_address), tuple(load("ValidatorRegistry").abi)
        )
        (epoch,) = call_view(w3, registry, "epochOf", validator)
        return ChainView(
            int(w3.eth.chain_id), Web3.to_checksum_address(grid_operator), added, int(epoch)
        )
    except (requests.RequestException, Web3Exception) as exc:
        raise ChainError(f"the node failed: {type(exc).__name__}: {exc}") from None


def _logs(w3: Web3, address: str, topic: bytes) -> list[Log]:
    query: Any = {"address": address, "topics": ["0x" + topic.hex()], "fromBlock": "0x0"}
    response = w3.provider.make_request(RPCEndpoint("eth_getLogs"), [query])
    if "error" in response:
        raise ChainError(f"the node refused eth_getLogs: {response['error']}")
    return [
        Log(
            address=log["address"],
            topics=tuple(bytes.fromhex(t[2:]) for t in log["topics"]),
            data=bytes.fromhex(log["data"][2:]),
        )
        for log in response["result"]
    ]
