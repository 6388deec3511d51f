"""Deploy, commit, attest and reclaim on the settlement contracts with web3.py.

State between commands lives in ``OUT_DIR/settlement/``: ``deployment.json`` (contract
addresses, the round, every trade with its Merkle proof) and, with the embedded chain,
``chain-state.json`` (anvil's saved state).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import requests
from eth_abi.abi import decode
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, Web3Exception, Web3RPCError
from web3.types import RPCEndpoint

from gridmatch.errors import ChainError, InputError, UsageError
from gridmatch.settlement.abi_calls import ContractAbi, call_view
from gridmatch.settlement.accounts import VALIDATORS, address_of
from gridmatch.settlement.anvil import local_chain
from gridmatch.settlement.artifacts import build, load
from gridmatch.settlement.merkle import root_and_proofs, trade_leaf
from gridmatch.settlement.meters import read_meters
from gridmatch.settlement.round_data import ChainTrade, locks_by_buyer, read_round
from gridmatch.units import SECONDS_PER_HOUR, WH_PER_KWH, micro_eur_to_eur
from gridmatch.user_files import RECORD_LIMIT_BYTES, read_text

ROUND_ID = 1
# Trades per attestation transaction: the attestation that settles a trade costs up to
# ~250k gas (payment, energy mint and transfer), so 80 stay under a 30M block.
ATTEST_BATCH = 80
# Gas limit of every transaction: anvil's block gas limit.
TX_GAS = 30_000_000
# Entries per view call: anvil refuses very large requests.
HOLDINGS_GROUP = 40
STATES_GROUP = 1000
# Accounts per depositFor transaction: a first credit costs ~27k gas.
DEPOSIT_BATCH = 500
GAS_ETH = 10**20
_OPEN = 0


@dataclass(frozen=True)
class AttestOutcome:
    """What ``attest`` did: who gained what, and what it cost on chain."""

    payouts: list[Payout]
    transactions: int
    gas_used: int


@dataclass(frozen=True)
class Payout:
    """What one participant's free balance and energy holdings changed by."""

    participant_id: str
    balance_change_eur: float
    energy_received_kwh: float


@contextmanager
def _chain(out_dir: Path, rpc_url: str | None) -> Iterator[Web3]:
    """Yield a connection to the node (``rpc_url``, or a local anvil on the saved state).

    A node that stops answering, or answers with an error web3.py does not decode,
    becomes a :class:`~gridmatch.errors.ChainError` (exit 4), not a traceback.
    """
    try:
        if rpc_url is not None:
            w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 120}))
            if not w3.is_connected():
                raise ChainError(f"no EVM node answers at {rpc_url}")
            yield w3
            return
        folder = out_dir / "settlement"
        folder.mkdir(exist_ok=True)
        with local_chain(folder / "chain-state.json") as url:
            yield Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 120}))
    except (requests.RequestException, Web3Exception) as exc:
        raise ChainError(f"the node failed: {type(exc).__name__}: {exc}") from None


def _decode_revert(abi: Any, exc: Exception) -> str:
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        raw = bytes.fromhex(data[2:])
        for item in abi:
            if item["type"] != "error":
                continue
            types = [i["type"] for i in item["inputs"]]
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            if raw[:4] == selector:
                values = decode(types, raw[4:])
                shown = ", ".join(v.hex() if isinstance(v, bytes) else str(v) for v in values)
                return f"{item['name']}({shown})"
    return str(exc)


def _send(w3: Web3, contract: ContractAbi, name: str, args: tuple[Any, ...], sender: str) -> Any:
    """Send ``contract.name(*args)`` from ``sender``; decode a revert.

    Gas limit and price are given, so web3.py asks the node nothing before sending
    (estimating and pricing took ~10 requests per transaction); a transaction that
    reverts is replayed as a call to read its error.
    """
    tx: Any = {
        "from": sender,
        "to": contract.address,
        "data": contract.calldata(name, *args),
        "gas": TX_GAS,
        "gasPrice": _gas_price(w3),
    }
    tx_hash = w3.eth.send_transaction(tx)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.01)
    if receipt["status"] != 1:
        try:
            w3.eth.call(tx, block_identifier=receipt["blockNumber"] - 1)
        except (ContractCustomError, ContractLogicError) as exc:
            raise ChainError(_decode_revert(contract.abi, exc)) from None
        except Web3RPCError as exc:  # e.g. out of gas: no custom error to decode
            raise ChainError(f"transaction {tx_hash.hex()} failed: {exc}") from None
        raise ChainError(f"transaction {tx_hash.hex()} reverted")
    return receipt


def _gas_price(w3: Web3) -> int:
    cached = getattr(w3, "_gridmatch_gas_price", None)
    if cached is None:
        cached = int(w3.eth.gas_price) * 2  # headroom for base-fee growth over a session
        w3._gridmatch_gas_price = cached  # type: ignore[attr-defined]
    return int(cached)


def _deploy(w3: Web3, name: str, *args: object) -> ContractAbi:
    artifact = load(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    admin = w3.eth.accounts[0]
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor(*args).transact({"from": admin})
    )
    address = receipt["contractAddress"]
    if address is None:
        raise ChainError(f"deploying {name} created no contract")
    return _at(name, address)


def _at(name: str, address: str) -> ContractAbi:
    return ContractAbi(address, tuple(load(name).abi))


def _contracts(
    w3: Web3, deployment: dict[str, Any]
) -> tuple[ContractAbi, ContractAbi, ContractAbi]:
    """Return the contracts of a record, checked to exist on the chain ``w3`` talks to."""
    for key in ("payment", "energy", "settlement"):
        if not w3.eth.get_code(deployment[key]):
            raise ChainError(
                f"no contract at {deployment[key]} ({key}) on this chain: settle on this "
                "node first, or give the --rpc-url that settle used"
            )
    return (
        _at("PaymentToken", deployment["payment"]),
        _at("EnergyToken", deployment["energy"]),
        _at("Settlement", deployment["settlement"]),
    )


def _rpc(w3: Web3, method: str, params: list[Any]) -> None:
    """Call an anvil-only RPC method (balances and clock of the local chain)."""
    w3.provider.make_request(RPCEndpoint(method), params)


def settle(
    out_dir: Path,
    *,
    rpc_url: str | None = None,
    quorum: int = 2,
    tolerance_wh: int = 10,
    deadline_hours: float = 24.0,
) -> dict[str, Any]:
    """Deploy the contracts, fund and escrow every buyer, and commit the clearing as a round.

    Returns the deployment record (also written to ``OUT_DIR/settlement/deployment.json``).

    Trades below 1 Wh stay off chain, and fractions of a Wh are not settled (energy
    is settled in whole Wh, rounded down); the record lists both under ``unsettled``.

    Raises
    ------
    InputError
        The result folder's trades.csv is unusable.
    UsageError
        The clearing was already committed, or the quorum is out of range.
    ChainError
        A transaction reverted.
    """
    chain_round = read_round(out_dir, ROUND_ID)
    trades = chain_round.trades
    record_path = out_dir / "settlement" / "deployment.json"
    if record_path.exists():
        raise UsageError(f"{record_path}: this clearing was already committed; attest its meters")
    if not 1 <= quorum <= len(VALIDATORS):
        raise UsageError(f"quorum must be between 1 and {len(VALIDATORS)}")
    build()
    leaves = [trade_leaf(t.as_tuple()) for t in trades]
    root, proofs = root_and_proofs(leaves)
    manifest = out_dir / "manifest.json"
    input_hash = keccak(manifest.read_bytes()) if manifest.exists() else bytes(32)
    with _chain(out_dir, rpc_url) as w3:
        admin = w3.eth.accounts[0]
        payment = _deploy(w3, "PaymentToken", admin)
        energy = _deploy(w3, "EnergyToken", admin)
        settlement = _deploy(w3, "Settlement", admin, payment.address, energy.address, admin)
        (deliverer_role,) = call_view(w3, energy, "DELIVERER_ROLE")
        _send(w3, energy, "grantRole", (deliverer_role, settlement.address), admin)
        (operator_role,) = call_view(w3, settlement, "OPERATOR_ROLE")
        (validator_role,) = call_view(w3, settlement, "VALIDATOR_ROLE")
        _send(w3, settlement, "grantRole", (operator_role, admin), admin)
        for validator in VALIDATORS:
            address = address_of(validator)
            _rpc(w3, "anvil_setBalance", [address, hex(GAS_ETH)])
            _send(w3, settlement, "grantRole", (validator_role, address), admin)
        locks = locks_by_buyer(trades)
        _fund(w3, payment, settlement, admin, locks)
        deadline = int(w3.eth.get_block("latest")["timestamp"]) + int(
            deadline_hours * SECONDS_PER_HOUR
        )
        params = (ROUND_ID, input_hash, root, deadline, tolerance_wh, quorum)
        receipt = _send(w3, settlement, "commitRound", (params, list(locks.items())), admin)
    record = {
        "rpc_url": rpc_url,
        "payment": payment.address,
        "energy": energy.address,
        "settlement": settlement.address,
        "round_id": ROUND_ID,
        "quorum": quorum,
        "tolerance_wh": tolerance_wh,
        "deadline": deadline,
        "commit_gas": int(receipt["gasUsed"]),
        "total_locked_micro_eur": sum(locks.values()),
        "trades": [
            {**t.__dict__, "proof": [p.hex() for p in proof]}
            for t, proof in zip(trades, proofs, strict=True)
        ],
        "unsettled": [{**vars(u), "unsettled_kwh": u.unsettled_kwh} for u in chain_round.unsettled],
    }
    record_path.parent.mkdir(exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _fund(
    w3: Web3, payment: ContractAbi, settlement: ContractAbi, admin: str, locks: dict[str, int]
) -> None:
    """Demo funding: the admin mints what the buyers must prepay and escrows it for them.

    One ``depositFor`` per :data:`DEPOSIT_BATCH` buyers instead of a mint, approve and
    deposit per buyer: 1,000 buyers took ~3,000 transactions (~110 s on anvil) before.
    """
    total = sum(locks.values())
    if total == 0:
        return
    _send(w3, payment, "mint", (admin, total), admin)
    _send(w3, payment, "approve", (settlement.address, total), admin)
    items = [(buyer, amount) for buyer, amount in locks.items() if amount > 0]
    for start in range(0, len(items), DEPOSIT_BATCH):
        batch = items[start : start + DEPOSIT_BATCH]
        accounts = [b for b, _ in batch]
        _send(w3, settlement, "depositFor", (accounts, [a for _, a in batch]), admin)


class _TradeRecord(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)

    round_id: int
    trade_id: int
    buyer: str
    seller: str
    slot: int
    quantity_wh: int
    price_micro_eur_per_kwh: int
    fee_micro_eur_per_kwh: int
    buy_order_id: str
    sell_order_id: str
    buyer_id: str
    seller_id: str
    proof: list[str]


class _DeploymentRecord(pydantic.BaseModel):
    """What ``settle`` wrote into deployment.json (validated again when it is read)."""

    model_config = pydantic.ConfigDict(extra="allow")

    rpc_url: str | None
    payment: str
    energy: str
    settlement: str
    round_id: int
    quorum: int
    trades: list[_TradeRecord]


def _load_record(out_dir: Path) -> tuple[dict[str, Any], list[tuple[ChainTrade, list[bytes]]]]:
    path = out_dir / "settlement" / "deployment.json"
    if not path.exists():
        raise InputError(path, "no settlement here: run `gridmatch settle` first")
    text = read_text(path, RECORD_LIMIT_BYTES, "deployment record")
    try:
        record = _DeploymentRecord.model_validate_json(text)
        trades = [
            (
                ChainTrade(**t.model_dump(exclude={"proof"})),
                [bytes.fromhex(p.removeprefix("0x")) for p in t.proof],
            )
            for t in record.trades
        ]
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise InputError(path, f"not a deployment record: {first['msg']}", field=field) from None
    except ValueError as exc:  # a proof that is not hex
        raise InputError(path, f"not a deployment record: {exc}", field="trades.proof") from None
    return record.model_dump(), trades


def attest(out_dir: Path, meter_csv: Path, *, rpc_url: str | None = None) -> AttestOutcome:
    """Submit every validator's attestation of the metered trades; quorums settle them.

    Each validator sends its attestations in batches of :data:`ATTEST_BATCH` trades.
    Returns per participant what their free balance and energy holdings changed by.
    """
    record, trades = _load_record(out_dir)
    keys = {(t.slot, t.buy_order_id, t.sell_order_id) for t, _ in trades}
    readings = read_meters(meter_csv, keys)
    with _chain(out_dir, rpc_url or record["rpc_url"]) as w3:
        _, energy, settlement = _contracts(w3, record)
        before = _holdings(w3, settlement, energy, trades)
        metered = []
        transactions = gas_used = 0
        for trade, proof in trades:
            reading = readings.get((trade.slot, trade.buy_order_id, trade.sell_order_id))
            if reading is None:
                continue
            metered.append((trade, proof, reading))
        for order, validator in enumerate(VALIDATORS):
            if order >= record["quorum"] and metered:
                # Earlier validators may already have settled these: send only what is open.
                states = _trade_states(w3, settlement, [m[0] for m in metered])
                metered = [m for m, state in zip(metered, states, strict=True) if state == _OPEN]
            for start in range(0, len(metered), ATTEST_BATCH):
                batch = metered[start : start + ATTEST_BATCH]
                args = (
                    [t.as_tuple() for t, _, _ in batch],
                    [p for _, p, _ in batch],
                    [r.sent_wh for _, _, r in batch],
                    [r.received_wh for _, _, r in batch],
                )
                receipt = _send(w3, settlement, "attestBatch", args, address_of(validator))
                transactions += 1
                gas_used += int(receipt["gasUsed"])
        after = _holdings(w3, settlement, energy, trades)
    return AttestOutcome(_payouts(before, after), transactions, gas_used)


def attest_once(
    out_dir: Path,
    slot: int,
    buy_order_id: str,
    sell_order_id: str,
    validator: str,
    sent_wh: int,
    received_wh: int,
    *,
    rpc_url: str | None = None,
) -> None:
    """Submit one validator's attestation of one trade (for operators and tests)."""
    record, trades = _load_record(out_dir)
    trade, proof = next(
        (t, p)
        for t, p in trades
        if (t.slot, t.buy_order_id, t.sell_order_id) == (slot, buy_order_id, sell_order_id)
    )
    with _chain(out_dir, rpc_url or record["rpc_url"]) as w3:
        _, _, settlement = _contracts(w3, record)
        args = (trade.as_tuple(), proof, sent_wh, received_wh)
        _send(w3, settlement, "attest", args, address_of(validator))


def reclaim_expired(
    out_dir: Path, *, rpc_url: str | None = None, advance_s: int = 0
) -> list[Payout]:
    """Return the prepayment of every trade still open after the deadline to its buyer.

    ``advance_s`` moves the local chain's clock forward first (anvil only).
    """
    record, trades = _load_record(out_dir)
    with _chain(out_dir, rpc_url or record["rpc_url"]) as w3:
        _, energy, settlement = _contracts(w3, record)
        if advance_s:
            _rpc(w3, "evm_increaseTime", [advance_s])
            _rpc(w3, "evm_mine", [])
        before = _holdings(w3, settlement, energy, trades)
        states = _trade_states(w3, settlement, [t for t, _ in trades])
        # Anyone may trigger a refund (it can only go to the buyer): the operator does.
        operator = w3.eth.accounts[0]
        for (trade, proof), state in zip(trades, states, strict=True):
            if state == _OPEN:
                _send(w3, settlement, "reclaim", (trade.as_tuple(), proof), operator)
        after = _holdings(w3, settlement, energy, trades)
    return _payouts(before, after)


def balances(
    out_dir: Path, *, rpc_url: str | None = None
) -> dict[str, tuple[int, int, dict[int, int]]]:
    """Per participant id: free and locked micro-EUR, and energy Wh held per slot."""
    record, trades = _load_record(out_dir)
    with _chain(out_dir, rpc_url or record["rpc_url"]) as w3:
        _, energy, settlement = _contracts(w3, record)
        return _holdings(w3, settlement, energy, trades)


def _trade_states(w3: Web3, settlement: ContractAbi, trades: list[ChainTrade]) -> list[int]:
    """Settlement state of each trade, in groups of calls small enough for any node."""
    states: list[int] = []
    for start in range(0, len(trades), STATES_GROUP):
        leaves = [trade_leaf(t.as_tuple()) for t in trades[start : start + STATES_GROUP]]
        (found,) = call_view(w3, settlement, "tradeStates", leaves)
        states += [int(s) for s in found]
    return states


def _participants(trades: list[tuple[ChainTrade, list[bytes]]]) -> list[str]:
    return sorted({t.buyer_id for t, _ in trades} | {t.seller_id for t, _ in trades})


def _holdings(
    w3: Web3,
    settlement: ContractAbi,
    energy: ContractAbi,
    trades: list[tuple[ChainTrade, list[bytes]]],
) -> dict[str, tuple[int, int, dict[int, int]]]:
    """Per participant: free and locked micro-EUR, and energy Wh held per round slot."""
    slots = sorted({t.slot for t, _ in trades})
    participants = _participants(trades)
    # Lower-case hex: eth-abi then skips a checksum (a keccak) per address.
    addresses = [address_of(p).lower() for p in participants]
    held: list[int] = []
    free: list[int] = []
    locked: list[int] = []
    # One call per group of participants for all their slots, not one per pair.
    for start in range(0, len(addresses), HOLDINGS_GROUP):
        group = addresses[start : start + HOLDINGS_GROUP]
        (found,) = call_view(
            w3,
            energy,
            "balanceOfBatch",
            [a for a in group for _ in slots],
            [s for _ in group for s in slots],
        )
        held += [int(v) for v in found]
        group_free, group_locked = call_view(w3, settlement, "balancesOf", group)
        free += [int(v) for v in group_free]
        locked += [int(v) for v in group_locked]
    holdings = {}
    for k, participant in enumerate(participants):
        per_slot = dict(zip(slots, held[k * len(slots) : (k + 1) * len(slots)], strict=True))
        holdings[participant] = (free[k], locked[k], {s: wh for s, wh in per_slot.items() if wh})
    return holdings


def _payouts(
    before: dict[str, tuple[int, int, dict[int, int]]],
    after: dict[str, tuple[int, int, dict[int, int]]],
) -> list[Payout]:
    payouts = []
    for participant in sorted(before):
        free_change = after[participant][0] - before[participant][0]
        wh_change = sum(after[participant][2].values()) - sum(before[participant][2].values())
        if free_change or wh_change:
            payouts.append(
                Payout(participant, micro_eur_to_eur(free_change), wh_change / WH_PER_KWH)
            )
    return payouts
