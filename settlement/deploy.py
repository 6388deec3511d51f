"""``gridmatch settle``: deploy, register, sign every order and meter certificate, escrow, commit.

The round is committed in chunks under the 2^24 gas cap (open, add trades, seal); a
buyer short of escrow loses its trades (the contract's ``TradeDropped``), not the round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3

from gridmatch.errors import ChainError, UsageError
from gridmatch.results_io.atomic import write_file_atomically
from gridmatch.results_io.folder import read_budgets
from gridmatch.results_io.layout import MANIFEST_FILE, SETTLEMENT_DIR
from gridmatch.settlement.abi_calls import ContractAbi, call_view
from gridmatch.settlement.artifacts import build, load
from gridmatch.settlement.chain import ROUND_ID, b32, connect, contract_at, fund_gas, in_chunks
from gridmatch.settlement.eip712 import Domain, MeterBinding, Order, sign, trade_id_of
from gridmatch.settlement.keys import GRID_OPERATOR, OPERATOR, Keystore, validator_name
from gridmatch.settlement.receipts import Receipt
from gridmatch.settlement.record import (
    DeploymentRecord,
    DroppedTrade,
    MeterBindingRecord,
    SignedOrder,
    TradeRecord,
    UnsettledTrade,
    record_path,
)
from gridmatch.settlement.round_data import (
    ChainRound,
    OrderTerms,
    PlannedTrade,
    read_round,
    round_deadline,
)
from gridmatch.settlement.transactions import Sender
from gridmatch.units import MICRO_EUR_PER_EUR, SECONDS_PER_HOUR

DEFAULT_VALIDATORS = 4
# Votes agree within this per-mille of a trade's quantity (at most 100 on chain).
DEFAULT_TOLERANCE_PER_MILLE = 20
# An order stays valid this long beyond the round's deadline (room for an extension).
ORDER_GRACE_S = 7 * 24 * SECONDS_PER_HOUR
OPERATOR_GAS_WEI = 10**24
# Accounts per depositFor transaction.
DEPOSIT_BATCH = 400


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
    deadline_hours
        The voting window: the round's deadline lies this long after the end of its
        last slot (or after now, for a clearing delivered already). Votes count from
        each trade's slot end on; after the deadline unsettled locks go back to the
        buyers. At least one hour for every trade's slot (the contract's
        ``MIN_VOTING_WINDOW_S``).
    funding
        micro-EUR to escrow per participant id; default: a prepaid account's balance
        (budgets.csv of a clearing with accounts: the escrow *is* the prepaid balance),
        else exactly each buyer's locks. (Less than a buyer's locks drops its trades
        that do not fit.)

    Raises
    ------
    InputError
        The result folder is unusable, or a trade's slot ends too late for the deadline
        (less than an hour before it, or the deadline more than 30 days ahead).
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
    keystore = Keystore.open(out_dir / SETTLEMENT_DIR / "keys", create=True)
    operator = keystore.role(OPERATOR, create=True)
    grid_operator = keystore.role(GRID_OPERATOR, create=True)
    names = [validator_name(k) for k in range(1, validators + 1)]
    validator_keys = {name: keystore.role(name, create=True) for name in names}
    window_s = max(int(deadline_hours * SECONDS_PER_HOUR), 1)
    with connect(out_dir, rpc_url) as (w3, _):
        # Every trade is checked against the deadline before any transaction; the clock
        # only moves on, and a later start gives a later deadline that passes too.
        round_deadline(out_dir, chain_round, _chain_time(w3), window_s)
        fund_gas(w3, operator.address, OPERATOR_GAS_WEI, local=rpc_url is None)
        sender = Sender(w3, operator)
        contracts = _deploy_all(sender, tolerance_per_mille, grid_operator, validator_keys)
        settlement = contracts["settlement"]
        domain = Domain(w3.eth.chain_id, settlement.address)
        deadline = round_deadline(out_dir, chain_round, _chain_time(w3), window_s)
        orders = _signed_orders(chain_round, keystore, domain, deadline + ORDER_GRACE_S)
        locks = _locks(chain_round.trades)
        default = {**locks, **prepaid_funding(out_dir)}
        _escrow(sender, contracts, keystore, dict(funding) if funding is not None else default)
        added, dropped = _commit(sender, settlement, chain_round, orders, deadline, out_dir)
    record = DeploymentRecord(
        rpc_url=rpc_url,
        chain_id=domain.chain_id,
        settlement=settlement.address,
        payment=contracts["payment"].address,
        energy=contracts["energy"].address,
        registry=contracts["registry"].address,
        certificates=contracts["certificates"].address,
        operator=operator.address,
        validators={name: account.address for name, account in validator_keys.items()},
        round_id=ROUND_ID,
        deadline=deadline,
        tolerance_per_mille=tolerance_per_mille,
        trade_losses_share={str(s): v for s, v in sorted(chain_round.trade_losses_share.items())},
        orders=sorted(orders.values(), key=lambda o: o.order_id),
        trades=added,
        meters=_certificates(orders.values(), keystore, grid_operator, domain),
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


def _chain_time(w3: Web3) -> int:
    """Return the chain's clock: the latest block's time (the contract's block.timestamp)."""
    return int(w3.eth.get_block("latest")["timestamp"])


def deploy_contract(sender: Sender, name: str, types: list[str], *args: object) -> ContractAbi:
    """Deploy contract ``name`` (forge's artifact) with constructor ``args`` of ``types``."""
    from eth_abi.abi import encode

    artifact = load(name)
    data = bytes.fromhex(artifact.bytecode.removeprefix("0x")) + encode(types, list(args))
    receipt = sender.wait([sender.send(None, data, abi=artifact.abi)], artifact.abi)[0]
    if receipt.contract_address is None:
        raise ChainError(f"deploying {name} created no contract")
    return ContractAbi(Web3.to_checksum_address(receipt.contract_address), tuple(artifact.abi))


def _deploy_all(
    sender: Sender,
    tolerance_per_mille: int,
    grid_operator: LocalAccount,
    validator_keys: Mapping[str, LocalAccount],
) -> dict[str, ContractAbi]:
    """Deploy the contracts and register the validators.

    The settlement contract deploys the energy token and the energy certificates itself
    (it is their only minter and issuer); grid fees go to the grid operator, who also
    certifies the meters (validators read it from the contract).
    """
    admin = sender.address
    payment = deploy_contract(sender, "PaymentToken", ["address"], admin)
    registry = deploy_contract(sender, "ValidatorRegistry", ["address"], admin)
    settlement = deploy_contract(
        sender,
        "Settlement",
        ["address", "address", "address", "address", "uint64"],
        admin,
        payment.address,
        registry.address,
        grid_operator.address,
        tolerance_per_mille,
    )
    (energy_address,) = call_view(sender.w3, settlement, "energyToken")
    (certificates_address,) = call_view(sender.w3, settlement, "certificates")
    (operator_role,) = call_view(sender.w3, settlement, "OPERATOR_ROLE")
    sender.transact(settlement, "grantRole", operator_role, admin)
    # Validators only sign; they never send a transaction, so they hold no gas.
    for account in validator_keys.values():
        sender.transact(registry, "register", account.address)
    return {
        "payment": payment,
        "registry": registry,
        "settlement": settlement,
        "energy": contract_at("EnergyToken", str(energy_address)),
        "certificates": contract_at("EnergyCertificates", str(certificates_address)),
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
            max_fee_micro_eur_per_kwh=t.max_fee_micro_eur_per_kwh,
            expiry=expiry,
            nonce=t.nonce,
        )
        digest = domain.digest(message.struct_hash())
        signed[order_id] = SignedOrder(
            order_id=order_id,
            participant_id=t.participant_id,
            digest="0x" + digest.hex(),
            signature="0x" + sign(account, digest).hex(),
            **asdict(message),
        )
    return signed


def _certificates(
    orders: Any, keystore: Keystore, grid_operator: LocalAccount, domain: Domain
) -> list[MeterBindingRecord]:
    """Return the grid operator's certificate of each participant's meter key.

    In the demonstration the grid operator (who installs and owns the meters) signs a
    ``MeterBinding`` per participant; validators accept no other.
    """
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
            signature="0x" + sign(grid_operator, digest).hex(),
        )
    return [bindings[pid] for pid in sorted(bindings)]


def prepaid_funding(out_dir: Path) -> dict[str, int]:
    """Return what each prepaid account escrows: balance plus emergency credit, in µEUR.

    Read from the clearing's budgets.csv (none: no prepaid accounts). The balance is
    rounded down to a micro-EUR; a negative one (a debt) escrows nothing.
    """
    rows = read_budgets(out_dir)
    if rows is None:
        return {}
    return {
        r.participant_id: max(math.floor(r.opening_eur * MICRO_EUR_PER_EUR + 1e-6), 0) for r in rows
    }


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
    inputs = [_trade_input(trade, orders) for trade in chain_round.trades]
    added: list[TradeRecord] = []
    dropped: list[DroppedTrade] = []
    for first, receipt, part in in_chunks(
        sender, settlement, inputs, lambda part: ("addTrades", ROUND_ID, part)
    ):
        trades = chain_round.trades[first : first + len(part)]
        _record_chunk(settlement, receipt, trades, orders, added, dropped)
    sender.transact(settlement, "sealRound", ROUND_ID)
    return added, dropped


def _dropped(
    trade: PlannedTrade,
    buy: SignedOrder,
    sell: SignedOrder,
    short: Mapping[str, Any] | None,
    withdrawn: Mapping[str, Any] | None,
) -> DroppedTrade:
    """Record a trade the contract dropped (``short``) or withdrew (``withdrawn``)."""
    reason: Literal["escrow", "order_cancelled", "hour_certified"] = "escrow"
    participant_id = buy.participant_id
    if withdrawn is not None:
        reason = _WITHDRAW_REASONS[int(withdrawn["reason"])]
        if str(withdrawn["participant"]).lower() != str(buy.participant).lower():
            participant_id = sell.participant_id
    return DroppedTrade(
        slot=trade.slot,
        buy_order_id=buy.order_id,
        sell_order_id=sell.order_id,
        buyer_id=buy.participant_id,
        required_micro_eur=int(short["required"]) if short is not None else 0,
        available_micro_eur=int(short["available"]) if short is not None else 0,
        reason=reason,
        participant_id=participant_id,
    )


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


# Settlement.WithdrawReason, in its order.
_WITHDRAW_REASONS: tuple[Literal["order_cancelled", "hour_certified"], ...] = (
    "order_cancelled",
    "hour_certified",
)


def _record_chunk(
    settlement: ContractAbi,
    receipt: Receipt,
    part: list[PlannedTrade],
    orders: Mapping[str, SignedOrder],
    added: list[TradeRecord],
    dropped: list[DroppedTrade],
) -> None:
    """Sort a chunk's trades into added and dropped, as the contract's events say."""
    accepted = {bytes(e["tradeId"]) for e in settlement.events(receipt, "TradeAdded")}
    refused = {bytes(e["tradeId"]): e for e in settlement.events(receipt, "TradeDropped")}
    withdrawn = {bytes(e["tradeId"]): e for e in settlement.events(receipt, "TradeWithdrawn")}
    for trade in part:
        buy, sell = orders[trade.buy.order_id], orders[trade.sell.order_id]
        trade_id = trade_id_of(ROUND_ID, b32(buy.digest), b32(sell.digest))
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
        elif trade_id in refused or trade_id in withdrawn:
            dropped.append(
                _dropped(trade, buy, sell, refused.get(trade_id), withdrawn.get(trade_id))
            )
        else:
            raise ChainError(f"trade {trade.key} neither added nor dropped by the contract")
