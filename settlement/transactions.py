"""Transactions signed locally and sent raw: works against any EVM node.

No account on the node is used or impersonated. Each sender keeps its own nonce; gas
is estimated for every transaction and never asked above :data:`TX_GAS_CAP` (EIP-7825
caps one transaction at 2^24 gas; nodes that enforce it refuse more). A transaction
that would revert is refused while estimating, and its custom error decoded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import decode
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError
from web3.types import RPCEndpoint

from gridmatch.errors import ChainError
from gridmatch.settlement.abi_calls import ContractAbi
from gridmatch.settlement.receipts import Receipt

# EIP-7825: the most gas one transaction may use.
TX_GAS_CAP = 2**24
# Headroom over the estimate: state may move a little between estimate and inclusion.
_GAS_MARGIN = 1.1
_GAS_EXTRA = 20_000
# How long to wait for a receipt, and how often to ask.
RECEIPT_TIMEOUT_S = 300.0
_RECEIPT_POLL_S = 0.01


class GasCapExceededError(ChainError):
    """A transaction would need more gas than one transaction may use."""

    def __init__(self, estimate: int) -> None:
        self.estimate = estimate
        super().__init__(
            f"needs {estimate} gas, more than the {TX_GAS_CAP} one transaction may use"
        )


@dataclass
class Sender:
    """One account sending signed transactions to one node."""

    w3: Web3
    account: LocalAccount
    _nonce: int = -1
    _gas_price: int = 0
    _chain_id: int = 0
    sent: int = 0
    gas_used: int = 0
    _pending: list[bytes] = field(default_factory=list)

    @property
    def address(self) -> str:
        """The sender's address."""
        return str(self.account.address)

    def _prepare(self) -> None:
        if self._nonce < 0:
            self._nonce = self.w3.eth.get_transaction_count(self.account.address, "pending")
            self._chain_id = self.w3.eth.chain_id
            # Twice the node's price: room for the base fee to grow over a session.
            self._gas_price = int(self.w3.eth.gas_price) * 2 + 1

    def estimate(self, to: str | None, data: bytes, value: int = 0, abi: Any = ()) -> int:
        """Gas the transaction needs (with margin), at most :data:`TX_GAS_CAP`.

        Raises
        ------
        GasCapExceededError
            If it needs more.
        ChainError
            If it would revert (its custom error decoded against ``abi``).
        """
        call: Any = {"from": self.account.address, "data": data, "value": value}
        if to is not None:
            call["to"] = to
        try:
            estimate = int(self.w3.eth.estimate_gas(call))
        except (ContractCustomError, ContractLogicError) as exc:
            raise ChainError(decode_revert(abi, exc)) from None
        except Web3RPCError as exc:
            if "gas" in str(exc).lower() and "exceed" in str(exc).lower():
                raise GasCapExceededError(TX_GAS_CAP + 1) from None
            raise ChainError(f"the node refused the transaction: {exc}") from None
        if estimate > TX_GAS_CAP:
            raise GasCapExceededError(estimate)
        return min(int(estimate * _GAS_MARGIN) + _GAS_EXTRA, TX_GAS_CAP)

    def send(
        self, to: str | None, data: bytes, value: int = 0, abi: Any = (), gas: int = 0
    ) -> bytes:
        """Sign and send one transaction without waiting; returns its hash."""
        self._prepare()
        gas = gas or self.estimate(to, data, value, abi)
        tx: Any = {
            "nonce": self._nonce,
            "gas": gas,
            "gasPrice": self._gas_price,
            "chainId": self._chain_id,
            "data": data,
            "value": value,
        }
        if to is not None:
            tx["to"] = to
        signed = self.account.sign_transaction(tx)
        try:
            tx_hash = bytes(self.w3.eth.send_raw_transaction(signed.raw_transaction))
        except Web3RPCError as exc:
            raise ChainError(f"the node refused the transaction: {exc}") from None
        self._nonce += 1
        self.sent += 1
        return tx_hash

    def wait(self, tx_hashes: Sequence[bytes], abi: Any = ()) -> list[Receipt]:
        """Wait for the receipts; a reverted transaction is replayed as a call to decode why."""
        receipts = []
        for tx_hash in tx_hashes:
            receipt = self._receipt(tx_hash)
            self.gas_used += receipt.gas_used
            if receipt.status != 1:
                raise ChainError(self._why(tx_hash, receipt, abi))
            receipts.append(receipt)
        return receipts

    def _receipt(self, tx_hash: bytes) -> Receipt:
        deadline = time.monotonic() + RECEIPT_TIMEOUT_S
        while True:
            response = self.w3.provider.make_request(
                RPCEndpoint("eth_getTransactionReceipt"), ["0x" + tx_hash.hex()]
            )
            if "error" in response:
                raise ChainError(f"the node failed to give a receipt: {response['error']}")
            if response.get("result"):
                return Receipt.from_json(response["result"])
            if time.monotonic() > deadline:
                raise ChainError(
                    f"transaction 0x{tx_hash.hex()} not mined within {RECEIPT_TIMEOUT_S:.0f} s"
                )
            time.sleep(_RECEIPT_POLL_S)

    def transact(self, contract: ContractAbi, name: str, *args: object, value: int = 0) -> Receipt:
        """Call ``contract.name(*args)`` in a transaction and wait for it."""
        data = contract.calldata(name, *args)
        return self.wait([self.send(contract.address, data, value, contract.abi)], contract.abi)[0]

    def _why(self, tx_hash: bytes, receipt: Receipt, abi: Any) -> str:
        tx = self.w3.eth.get_transaction(HexBytes(tx_hash))
        call: Any = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"]}
        try:
            self.w3.eth.call(call, block_identifier=receipt.block_number - 1)
        except (ContractCustomError, ContractLogicError) as exc:
            return decode_revert(abi, exc)
        except Web3RPCError as exc:
            return f"transaction {tx_hash.hex()} failed: {exc}"
        return f"transaction {tx_hash.hex()} reverted (out of gas?)"


def decode_revert(abi: Any, exc: Exception) -> str:
    """Return a revert's custom error as ``Name(args)``, decoded against the contract's ABI."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        raw = bytes.fromhex(data[2:])
        for item in abi:
            if item.get("type") != "error":
                continue
            types = [i["type"] for i in item["inputs"]]
            if raw[:4] == keccak(text=f"{item['name']}({','.join(types)})")[:4]:
                values = decode(types, raw[4:])
                shown = ", ".join(v.hex() if isinstance(v, bytes) else str(v) for v in values)
                return f"{item['name']}({shown})"
    return str(exc)
