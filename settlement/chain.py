"""The node a deployment lives on, and what every settlement step reads from it.

Every transaction is signed locally with a key of the deployment's keystore
(:mod:`gridmatch.settlement.keys`) and sent raw, so any EVM node works (``--rpc-url``),
no account is impersonated, and no transaction asks for more than 2^24 gas.

State between commands lives in ``OUT_DIR/settlement/``: ``keys/`` (the encrypted
keystore), ``deployment.json`` (:mod:`gridmatch.settlement.record`), the validators'
working folders, and with the embedded chain ``chain-state.json`` (anvil's state).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from web3 import Web3
from web3.exceptions import Web3Exception
from web3.types import RPCEndpoint

from gridmatch.errors import ChainError
from gridmatch.results_io.layout import SETTLEMENT_DIR
from gridmatch.settlement.abi_calls import ContractAbi, call_view
from gridmatch.settlement.anvil import local_chain
from gridmatch.settlement.artifacts import load
from gridmatch.settlement.receipts import Receipt
from gridmatch.settlement.record import DeploymentRecord, TradeRecord
from gridmatch.settlement.transactions import TX_GAS_CAP, GasCapExceededError, Sender

# The round every deployment opens (one clearing, one round).
ROUND_ID = 1
# Trades in the first chunk of a batch; later chunks fill 2^24 gas as measured.
FIRST_CHUNK = 40
# Settlement.TradeState.Open
OPEN = 1


@contextmanager
def connect(out_dir: Path, rpc_url: str | None) -> Iterator[tuple[Web3, str]]:
    """Yield a connection to the node (``rpc_url``, or a local anvil on the saved state).

    A node that stops answering becomes a :class:`~gridmatch.errors.ChainError`.
    """
    try:
        if rpc_url is not None:
            w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 300}))
            if not w3.is_connected():
                raise ChainError(f"no EVM node answers at {rpc_url}")
            yield w3, rpc_url
            return
        folder = out_dir / SETTLEMENT_DIR
        folder.mkdir(exist_ok=True)
        with local_chain(folder / "chain-state.json") as url:
            yield Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 300})), url
    except (requests.RequestException, Web3Exception) as exc:
        raise ChainError(f"the node failed: {type(exc).__name__}: {exc}") from None


def contract_at(name: str, address: str) -> ContractAbi:
    """Return contract ``name`` (its forge ABI) at ``address``."""
    return ContractAbi(Web3.to_checksum_address(address), tuple(load(name).abi))


def fund_gas(w3: Web3, account: str, wei: int, *, local: bool) -> None:
    """Give ``account`` gas money: anvil's cheat on a dev node, else check it has some."""
    address = Web3.to_checksum_address(account)
    if w3.eth.get_balance(address) >= wei // 1000:
        return
    response = w3.provider.make_request(RPCEndpoint("anvil_setBalance"), [account, hex(wei)])
    if "error" in response or w3.eth.get_balance(address) < wei // 1000:
        where = "the local chain" if local else "this node"
        raise ChainError(
            f"{account} holds no ETH for gas on {where}, and the node does not fund accounts "
            "(anvil_setBalance): send it some, then settle again"
        )


def checked_contracts(w3: Web3, record: DeploymentRecord) -> dict[str, ContractAbi]:
    """Return the record's contracts, checked to exist on the chain ``w3`` talks to."""
    found = {
        "settlement": contract_at("Settlement", record.settlement),
        "energy": contract_at("EnergyToken", record.energy),
        "payment": contract_at("PaymentToken", record.payment),
    }
    for key, contract in found.items():
        if not w3.eth.get_code(Web3.to_checksum_address(contract.address)):
            raise ChainError(
                f"no contract at {contract.address} ({key}) on this chain: settle on this node "
                "first, or give the --rpc-url that settle used"
            )
    return found


def trade_states(w3: Web3, settlement: ContractAbi, trades: list[TradeRecord]) -> list[int]:
    """Return ``Settlement.TradeState`` of each trade (batched view calls)."""
    states: list[int] = []
    for start in range(0, len(trades), 1000):
        ids = [b32(t.trade_id) for t in trades[start : start + 1000]]
        (found,) = call_view(w3, settlement, "tradeStates", ids)
        states += [int(s) for s in found]
    return states


def holdings(
    w3: Web3, contracts: Mapping[str, ContractAbi], record: DeploymentRecord
) -> dict[str, tuple[int, int, dict[int, int]]]:
    """Per participant: free and locked micro-EUR, and energy Wh held per slot start."""
    slots = sorted({t.slot_start for t in record.trades})
    participants = record.participants()
    ids = sorted(participants)
    # Lower-case hex: eth-abi then skips a checksum (a keccak) per address.
    addresses = [participants[p].lower() for p in ids]
    held: list[int] = []
    free: list[int] = []
    locked: list[int] = []
    for start in range(0, len(addresses), 40):
        group = addresses[start : start + 40]
        (found,) = call_view(
            w3,
            contracts["energy"],
            "balanceOfBatch",
            [a for a in group for _ in slots],
            [s for _ in group for s in slots],
        )
        held += [int(v) for v in found]
        group_free, group_locked = call_view(w3, contracts["settlement"], "balancesOf", group)
        free += [int(v) for v in group_free]
        locked += [int(v) for v in group_locked]
    holdings = {}
    for k, participant in enumerate(ids):
        per_slot = dict(zip(slots, held[k * len(slots) : (k + 1) * len(slots)], strict=True))
        holdings[participant] = (free[k], locked[k], {s: wh for s, wh in per_slot.items() if wh})
    return holdings


def in_chunks(
    sender: Sender, contract: ContractAbi, items: list[Any], call: Any
) -> Iterator[tuple[int, Receipt, list[Any]]]:
    """Send ``call(chunk)`` for consecutive chunks of ``items``, each under the gas cap.

    The first chunk's gas is estimated (halving it until it fits 2^24); later chunks are
    sized from the gas it measured per item, to ~75 % of the cap, and sent with that gas
    plus a margin, without another estimate (that would run each chunk twice). Yields
    the index of each chunk's first item, its receipt, and the chunk.
    """
    start, chunk, per_item = 0, FIRST_CHUNK, 0
    while start < len(items):
        part = items[start : start + chunk]
        data = contract.calldata(*call(part))
        if per_item == 0:
            try:
                gas = sender.estimate(contract.address, data, abi=contract.abi)
            except GasCapExceededError:
                if chunk == 1:
                    raise
                chunk = max(chunk // 2, 1)
                continue
        else:
            gas = min(int(per_item * len(part) * 1.3) + 200_000, TX_GAS_CAP)
        receipt = sender.wait([sender.send(contract.address, data, gas=gas)], contract.abi)[0]
        yield start, receipt, part
        start += len(part)
        per_item = max(per_item, receipt.gas_used // len(part), 1)
        chunk = max(min(int(0.75 * TX_GAS_CAP / (per_item * 1.3)), 4 * chunk), 1)


def b32(text: str) -> bytes:
    """Return the bytes of a ``0x`` hex string."""
    return bytes.fromhex(text.removeprefix("0x"))


def advance_clock(w3: Web3, advance_s: int) -> None:
    """Move a local anvil's clock ``advance_s`` seconds forward and mine a block (demos).

    Raises
    ------
    ChainError
        The node cannot move its clock (only a local anvil can).
    """
    if not advance_s:
        return
    for method, params in (("evm_increaseTime", [advance_s]), ("evm_mine", [])):
        response = w3.provider.make_request(RPCEndpoint(method), params)
        if "error" in response:
            raise ChainError(
                f"the node cannot move its clock ({method}: {response['error']}); "
                "only a local anvil can"
            )
