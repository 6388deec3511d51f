"""Settle a clearing on chain: deploy, sign, fund, commit; attest with validator processes.

Every transaction is signed locally with a key of the deployment's keystore
(:mod:`gridmatch.settlement.keys`) and sent raw, so any EVM node works (``--rpc-url``),
no account is impersonated, and no transaction asks for more than 2^24 gas.

State between commands lives in ``OUT_DIR/settlement/``: ``keys/`` (the encrypted
keystore), ``deployment.json`` (:mod:`gridmatch.settlement.record`), the validators'
working folders, and with the embedded chain ``chain-state.json`` (anvil's state).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import Web3Exception
from web3.types import RPCEndpoint

from gridmatch.errors import ChainError, UsageError
from gridmatch.results_io.atomic import write_file_atomically
from gridmatch.results_io.layout import MANIFEST_FILE
from gridmatch.settlement.abi_calls import ContractAbi, call_view
from gridmatch.settlement.anvil import local_chain
from gridmatch.settlement.artifacts import build, load
from gridmatch.settlement.eip712 import Domain, MeterBinding, Order, sign
from gridmatch.settlement.keys import OPERATOR, Keystore, validator_name
from gridmatch.settlement.meters import read_meter_csv, sign_readings, write_signed_readings
from gridmatch.settlement.record import (
    DeploymentRecord,
    DroppedTrade,
    MeterBindingRecord,
    SignedOrder,
    TradeRecord,
    UnsettledTrade,
    read_record,
    record_path,
)
from gridmatch.settlement.round_data import ChainRound, OrderTerms, PlannedTrade, read_round
from gridmatch.settlement.transactions import TX_GAS_CAP, GasCapExceededError, Sender
from gridmatch.settlement.validator import (
    ValidatorJob,
    ValidatorReport,
    prepare_copy,
    run_validator,
)
from gridmatch.units import SECONDS_PER_HOUR, WH_PER_KWH, micro_eur_to_eur

ROUND_ID = 1
DEFAULT_VALIDATORS = 4
# Votes agree within 2 % of a trade's quantity (the contract allows at most 10 %).
DEFAULT_TOLERANCE_PER_MILLE = 20
# An order stays valid this long beyond the round's deadline (room for an extension).
ORDER_GRACE_S = 7 * 24 * SECONDS_PER_HOUR
# Gas for a validator's votes; wei.
VALIDATOR_GAS_WEI = 10**21
OPERATOR_GAS_WEI = 10**24
# Accounts per depositFor transaction.
DEPOSIT_BATCH = 400
# Trades in the first addTrades chunk; later chunks fill 2^24 gas as measured.
FIRST_CHUNK = 40
_OPEN = 1


@dataclass(frozen=True)
class Payout:
    """What one participant's free balance and energy holdings changed by."""

    participant_id: str
    balance_change_eur: float
    energy_received_kwh: float


@dataclass(frozen=True)
class AttestOutcome:
    """What ``attest`` did: per validator process, and who gained what."""

    payouts: list[Payout]
    validators: list[ValidatorReport]

    @property
    def transactions(self) -> int:
        """Vote transactions of all validators."""
        return sum(v.transactions for v in self.validators)

    @property
    def gas_used(self) -> int:
        """Gas of all vote transactions."""
        return sum(v.gas_used for v in self.validators)

    def refused(self) -> list[str]:
        """Return what at least one validator would not vouch for (each reason once)."""
        return sorted({reason for v in self.validators for reason in v.refused})


@contextmanager
def _chain(out_dir: Path, rpc_url: str | None) -> Iterator[tuple[Web3, str]]:
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
        folder = out_dir / "settlement"
        folder.mkdir(exist_ok=True)
        with local_chain(folder / "chain-state.json") as url:
            yield Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 300})), url
    except (requests.RequestException, Web3Exception) as exc:
        raise ChainError(f"the node failed: {type(exc).__name__}: {exc}") from None


def _at(name: str, address: str) -> ContractAbi:
    return ContractAbi(Web3.to_checksum_address(address), tuple(load(name).abi))


def _deploy(sender: Sender, name: str, types: list[str], *args: object) -> ContractAbi:
    from eth_abi.abi import encode

    artifact = load(name)
    data = bytes.fromhex(artifact.bytecode.removeprefix("0x")) + encode(types, list(args))
    receipt = sender.wait([sender.send(None, data, abi=artifact.abi)], artifact.abi)[0]
    if receipt["contractAddress"] is None:
        raise ChainError(f"deploying {name} created no contract")
    return ContractAbi(str(receipt["contractAddress"]), tuple(artifact.abi))


def _fund_gas(w3: Web3, account: str, wei: int, *, local: bool) -> None:
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


def settle(
    out_dir: Path,
    *,
    rpc_url: str | None = None,
    validators: int = DEFAULT_VALIDATORS,
    tolerance_per_mille: int = DEFAULT_TOLERANCE_PER_MILLE,
    deadline_hours: float = 24.0,
    funding: Mapping[str, int] | None = None,
) -> DeploymentRecord:
    """Deploy the contracts, sign every order and meter binding, fund, and commit the round.

    Parameters
    ----------
    validators
        Validator processes (each its own key); the contract's quorum is strictly more
        than two thirds of them.
    funding
        micro-EUR to escrow per participant id; default: exactly each buyer's locks.
        (Less than a buyer's locks drops its trades that do not fit.)

    Raises
    ------
    InputError
        The result folder is unusable.
    UsageError
        The clearing was already committed, or an option is out of range.
    ChainError
        A transaction was refused, or the node failed.
    """
    path = record_path(out_dir)
    if path.exists():
        raise UsageError(f"{path}: this clearing was already committed; attest its meters")
    if not 1 <= validators <= 64:
        raise UsageError("validators must be between 1 and 64")
    chain_round = read_round(out_dir)
    build()
    keystore = Keystore.open(out_dir / "settlement" / "keys", create=True)
    operator = keystore.role(OPERATOR, create=True)
    names = [validator_name(k) for k in range(1, validators + 1)]
    validator_keys = {name: keystore.role(name, create=True) for name in names}
    with _chain(out_dir, rpc_url) as (w3, _):
        _fund_gas(w3, operator.address, OPERATOR_GAS_WEI, local=rpc_url is None)
        sender = Sender(w3, operator)
        contracts = _deploy_all(sender, tolerance_per_mille, validator_keys)
        settlement = contracts["settlement"]
        domain = Domain(w3.eth.chain_id, settlement.address)
        now = int(w3.eth.get_block("latest")["timestamp"])
        deadline = now + max(int(deadline_hours * SECONDS_PER_HOUR), 1)
        orders = _signed_orders(chain_round, keystore, domain, deadline + ORDER_GRACE_S)
        locks = _locks(chain_round.trades)
        _escrow(sender, contracts, keystore, dict(funding) if funding is not None else locks)
        added, dropped = _commit(sender, settlement, chain_round, orders, deadline, out_dir)
    record = DeploymentRecord(
        rpc_url=rpc_url,
        chain_id=domain.chain_id,
        settlement=settlement.address,
        payment=contracts["payment"].address,
        energy=contracts["energy"].address,
        registry=contracts["registry"].address,
        operator=operator.address,
        validators={name: account.address for name, account in validator_keys.items()},
        round_id=ROUND_ID,
        deadline=deadline,
        tolerance_per_mille=tolerance_per_mille,
        trade_losses_share={str(s): v for s, v in sorted(chain_round.trade_losses_share.items())},
        orders=sorted(orders.values(), key=lambda o: o.order_id),
        trades=added,
        meters=_bindings(orders.values(), keystore, domain),
        dropped=dropped,
        unsettled=[
            UnsettledTrade(
                slot=u.slot,
                buy_order_id=u.buy_order_id,
                sell_order_id=u.sell_order_id,
                traded_kwh=u.traded_kwh,
                settled_wh=u.settled_wh,
                unsettled_kwh=u.unsettled_kwh,
                reason=u.reason,
            )
            for u in chain_round.unsettled
        ],
        total_locked_micro_eur=sum(t.lock_micro_eur() for t in added),
        commit_transactions=sender.sent,
        commit_gas=sender.gas_used,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(path, record.model_dump_json(indent=1) + "\n")
    return record


def _deploy_all(
    sender: Sender, tolerance_per_mille: int, validator_keys: Mapping[str, LocalAccount]
) -> dict[str, ContractAbi]:
    """Payment token, validator registry, settlement (which deploys the energy token)."""
    admin = sender.address
    payment = _deploy(sender, "PaymentToken", ["address"], admin)
    registry = _deploy(sender, "ValidatorRegistry", ["address"], admin)
    settlement = _deploy(
        sender,
        "Settlement",
        ["address", "address", "address", "address", "uint64"],
        admin,
        payment.address,
        registry.address,
        admin,
        tolerance_per_mille,
    )
    (energy_address,) = call_view(sender.w3, settlement, "energyToken")
    (operator_role,) = call_view(sender.w3, settlement, "OPERATOR_ROLE")
    sender.transact(settlement, "grantRole", operator_role, admin)
    for account in validator_keys.values():
        sender.transact(registry, "register", account.address)
        sender.wait([sender.send(account.address, b"", value=VALIDATOR_GAS_WEI, gas=21_000)])
    return {
        "payment": payment,
        "registry": registry,
        "settlement": settlement,
        "energy": _at("EnergyToken", str(energy_address)),
    }


def _signed_orders(
    chain_round: ChainRound, keystore: Keystore, domain: Domain, expiry: int
) -> dict[str, SignedOrder]:
    """Every order the round's trades use, signed by its participant (order id -> order)."""
    terms: dict[str, OrderTerms] = {}
    for trade in chain_round.trades:
        terms.setdefault(trade.buy.order_id, trade.buy)
        terms.setdefault(trade.sell.order_id, trade.sell)
    signed = {}
    for order_id, t in terms.items():
        account = keystore.participant(t.participant_id)
        message = Order(
            participant=account.address,
            is_buy=t.is_buy,
            slot_start=t.slot_start,
            slot_end=t.slot_end,
            quantity_wh=t.quantity_wh,
            limit_micro_eur_per_kwh=t.limit_micro_eur_per_kwh,
            # The limit caps price plus fee; the fee cap adds nothing beyond it here.
            max_fee_micro_eur_per_kwh=t.limit_micro_eur_per_kwh if t.is_buy else 0,
            expiry=expiry,
            nonce=t.nonce,
        )
        digest = domain.digest(message.struct_hash())
        signed[order_id] = SignedOrder(
            order_id=order_id,
            participant_id=t.participant_id,
            participant=account.address,
            is_buy=t.is_buy,
            slot_start=t.slot_start,
            slot_end=t.slot_end,
            quantity_wh=t.quantity_wh,
            limit_micro_eur_per_kwh=message.limit_micro_eur_per_kwh,
            max_fee_micro_eur_per_kwh=message.max_fee_micro_eur_per_kwh,
            expiry=expiry,
            nonce=t.nonce,
            digest="0x" + digest.hex(),
            signature="0x" + sign(account, digest).hex(),
        )
    return signed


def _bindings(orders: Any, keystore: Keystore, domain: Domain) -> list[MeterBindingRecord]:
    """Each participant's signed statement of its meter's key."""
    bindings = {}
    for order in orders:
        pid = order.participant_id
        if pid in bindings:
            continue
        participant = keystore.participant(pid)
        meter = keystore.meter(pid)
        digest = domain.digest(MeterBinding(participant.address, meter.address).struct_hash())
        bindings[pid] = MeterBindingRecord(
            participant_id=pid,
            participant=participant.address,
            meter=meter.address,
            signature="0x" + sign(participant, digest).hex(),
        )
    return [bindings[pid] for pid in sorted(bindings)]


def _locks(trades: list[PlannedTrade]) -> dict[str, int]:
    locks: dict[str, int] = {}
    for trade in trades:
        buyer = trade.buy.participant_id
        locks[buyer] = locks.get(buyer, 0) + trade.lock_micro_eur()
    return locks


def _escrow(
    sender: Sender,
    contracts: Mapping[str, ContractAbi],
    keystore: Keystore,
    funding: dict[str, int],
) -> None:
    """Demo funding: the operator mints the test currency and escrows it for the buyers.

    ``depositFor`` credits the buyers' own balances (a retailer topping up its members'
    prepaid accounts); only the buyers' signed orders can lock them.
    """
    items = [
        (keystore.participant(pid).address, amount) for pid, amount in funding.items() if amount > 0
    ]
    total = sum(amount for _, amount in items)
    if total == 0:
        return
    payment, settlement = contracts["payment"], contracts["settlement"]
    sender.transact(payment, "mint", sender.address, total)
    sender.transact(payment, "approve", settlement.address, total)
    for start in range(0, len(items), DEPOSIT_BATCH):
        batch = items[start : start + DEPOSIT_BATCH]
        sender.transact(settlement, "depositFor", [a for a, _ in batch], [m for _, m in batch])


def _commit(
    sender: Sender,
    settlement: ContractAbi,
    chain_round: ChainRound,
    orders: Mapping[str, SignedOrder],
    deadline: int,
    out_dir: Path,
) -> tuple[list[TradeRecord], list[DroppedTrade]]:
    """Open the round, add its trades in chunks that fit 2^24 gas, seal it."""
    manifest = out_dir / MANIFEST_FILE
    input_hash = keccak(manifest.read_bytes()) if manifest.exists() else bytes(32)
    sender.transact(settlement, "openRound", ROUND_ID, input_hash, deadline)
    inputs = [(trade, _trade_input(trade, orders)) for trade in chain_round.trades]
    added: list[TradeRecord] = []
    dropped: list[DroppedTrade] = []
    start, chunk = 0, FIRST_CHUNK
    while start < len(inputs):
        part = inputs[start : start + chunk]
        data = settlement.calldata("addTrades", ROUND_ID, [i for _, i in part])
        try:
            gas = sender.estimate(settlement.address, data, abi=settlement.abi)
        except GasCapExceededError:
            if chunk == 1:
                raise
            chunk = max(chunk // 2, 1)
            continue
        receipt = sender.wait([sender.send(settlement.address, data, gas=gas)], settlement.abi)[0]
        _record_chunk(settlement, receipt, [t for t, _ in part], orders, added, dropped)
        start += len(part)
        # Fill the next chunk to ~80 % of the cap, as this one measured per trade.
        per_trade = max(int(receipt["gasUsed"]) // len(part), 1)
        chunk = max(min(int(0.8 * TX_GAS_CAP / per_trade), 2 * chunk), 1)
    sender.transact(settlement, "sealRound", ROUND_ID)
    return added, dropped


def _trade_input(trade: PlannedTrade, orders: Mapping[str, SignedOrder]) -> tuple[object, ...]:
    buy, sell = orders[trade.buy.order_id], orders[trade.sell.order_id]
    return (
        buy.as_input(),
        bytes.fromhex(buy.signature[2:]),
        sell.as_input(),
        bytes.fromhex(sell.signature[2:]),
        trade.quantity_wh,
        trade.price_micro_eur_per_kwh,
        trade.fee_micro_eur_per_kwh,
    )


def _record_chunk(
    settlement: ContractAbi,
    receipt: Any,
    part: list[PlannedTrade],
    orders: Mapping[str, SignedOrder],
    added: list[TradeRecord],
    dropped: list[DroppedTrade],
) -> None:
    """Sort a chunk's trades into added and dropped, as the contract's events say."""
    accepted = {bytes(e["tradeId"]) for e in settlement.events(receipt, "TradeAdded")}
    refused = {bytes(e["tradeId"]): e for e in settlement.events(receipt, "TradeDropped")}
    for trade in part:
        buy, sell = orders[trade.buy.order_id], orders[trade.sell.order_id]
        trade_id = keccak(
            _encode(
                ["uint64", "bytes32", "bytes32"], [ROUND_ID, _b32(buy.digest), _b32(sell.digest)]
            )
        )
        if trade_id in accepted:
            added.append(
                TradeRecord(
                    trade_id="0x" + trade_id.hex(),
                    slot=trade.slot,
                    buy_order_id=buy.order_id,
                    sell_order_id=sell.order_id,
                    buyer_id=buy.participant_id,
                    seller_id=sell.participant_id,
                    round_id=ROUND_ID,
                    buy_order=buy.digest,
                    sell_order=sell.digest,
                    buyer=buy.participant,
                    seller=sell.participant,
                    slot_start=buy.slot_start,
                    slot_end=buy.slot_end,
                    quantity_wh=trade.quantity_wh,
                    price_micro_eur_per_kwh=trade.price_micro_eur_per_kwh,
                    fee_micro_eur_per_kwh=trade.fee_micro_eur_per_kwh,
                )
            )
        elif trade_id in refused:
            event = refused[trade_id]
            dropped.append(
                DroppedTrade(
                    slot=trade.slot,
                    buy_order_id=buy.order_id,
                    sell_order_id=sell.order_id,
                    buyer_id=buy.participant_id,
                    required_micro_eur=int(event["required"]),
                    available_micro_eur=int(event["available"]),
                )
            )
        else:
            raise ChainError(f"trade {trade.key} neither added nor dropped by the contract")


def _encode(types: list[str], values: list[object]) -> bytes:
    from eth_abi.abi import encode

    return bytes(encode(types, values))


def _b32(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


# ---------------------------------------------------------------- meters and attestation


def sign_meter_file(out_dir: Path, meter_csv: Path, signed_path: Path) -> int:
    """Sign a meter CSV with the deployment's meter keys (the meters' own job); count them."""
    record = read_record(record_path(out_dir))
    keystore = Keystore.open(out_dir / "settlement" / "keys", create=False)
    intervals = {t.slot: (t.slot_start, t.slot_end) for t in record.trades}
    signed = sign_readings(read_meter_csv(meter_csv), keystore, record.domain, intervals)
    write_signed_readings(signed_path, record.domain, signed)
    return len(signed)


def attest(out_dir: Path, readings: Path, *, rpc_url: str | None = None) -> AttestOutcome:
    """Run every validator as a process of its own on the signed readings; quorums settle.

    Each validator gets its own copy of the readings in ``OUT_DIR/settlement/<name>/``.
    """
    path = record_path(out_dir)
    record = read_record(path)
    keys = out_dir / "settlement" / "keys"
    with _chain(out_dir, rpc_url or record.rpc_url) as (w3, url):
        contracts = _checked_contracts(w3, record)
        before = _holdings(w3, contracts, record)
        jobs = [
            ValidatorJob(
                name=name,
                keystore=keys,
                record=path,
                readings=prepare_copy(readings, out_dir / "settlement" / name),
                rpc_url=url,
            )
            for name in sorted(record.validators)
        ]
        # spawn, not fork: each validator starts clean, sharing nothing with this process.
        context = multiprocessing.get_context("spawn")
        with context.Pool(len(jobs)) as pool:
            reports = pool.map(run_validator, jobs)
        after = _holdings(w3, contracts, record)
    return AttestOutcome(_payouts(before, after), reports)


def reclaim_expired(
    out_dir: Path, *, rpc_url: str | None = None, advance_s: int = 0
) -> list[Payout]:
    """Return the lock of every trade still open after the deadline to its buyer.

    ``advance_s`` moves the local chain's clock forward first (anvil only). Anyone may
    trigger a refund (it can only go to the buyer): the operator does.
    """
    record = read_record(record_path(out_dir))
    keystore = Keystore.open(out_dir / "settlement" / "keys", create=False)
    with _chain(out_dir, rpc_url or record.rpc_url) as (w3, _):
        contracts = _checked_contracts(w3, record)
        if advance_s:
            w3.provider.make_request(RPCEndpoint("evm_increaseTime"), [advance_s])
            w3.provider.make_request(RPCEndpoint("evm_mine"), [])
        before = _holdings(w3, contracts, record)
        settlement = contracts["settlement"]
        states = _trade_states(w3, settlement, record.trades)
        open_trades = [t for t, s in zip(record.trades, states, strict=True) if s == _OPEN]
        sender = Sender(w3, keystore.role(OPERATOR))
        for start in range(0, len(open_trades), 200):
            batch = [t.as_tuple() for t in open_trades[start : start + 200]]
            sender.transact(settlement, "reclaimBatch", batch)
        after = _holdings(w3, contracts, record)
    return _payouts(before, after)


def balances(
    out_dir: Path, *, rpc_url: str | None = None
) -> dict[str, tuple[int, int, dict[int, int]]]:
    """Per participant id: free and locked micro-EUR, and energy Wh held per slot start."""
    record = read_record(record_path(out_dir))
    with _chain(out_dir, rpc_url or record.rpc_url) as (w3, _):
        return _holdings(w3, _checked_contracts(w3, record), record)


def _checked_contracts(w3: Web3, record: DeploymentRecord) -> dict[str, ContractAbi]:
    """Return the record's contracts, checked to exist on the chain ``w3`` talks to."""
    found = {
        "settlement": _at("Settlement", record.settlement),
        "energy": _at("EnergyToken", record.energy),
        "payment": _at("PaymentToken", record.payment),
    }
    for key, contract in found.items():
        if not w3.eth.get_code(Web3.to_checksum_address(contract.address)):
            raise ChainError(
                f"no contract at {contract.address} ({key}) on this chain: settle on this node "
                "first, or give the --rpc-url that settle used"
            )
    return found


def _trade_states(w3: Web3, settlement: ContractAbi, trades: list[TradeRecord]) -> list[int]:
    states: list[int] = []
    for start in range(0, len(trades), 1000):
        ids = [_b32(t.trade_id) for t in trades[start : start + 1000]]
        (found,) = call_view(w3, settlement, "tradeStates", ids)
        states += [int(s) for s in found]
    return states


def _holdings(
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
