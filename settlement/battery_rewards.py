"""Battery reward agreements on chain: deploy, attest each period, release, check.

``BatteryRewards.sol`` (contracts/src/) holds a sponsor's funds for one battery and
releases, per period and condition met, a fixed amount split by the participants'
shares. It evaluates the conditions itself on a period summary that more than two
thirds of the validators of a ``ValidatorRegistry`` signed (EIP-712
``BatterySummary``, under each validator's current epoch); a period is attested once.

:func:`release_on_chain` runs a demonstration deployment: the keystore's operator
deploys a payment token, a registry with the validators of the keystore and the
rewards contract, funds the agreement as its sponsor, has every validator sign each
summarised period and submits the releases. It then reads every participant's token
balance and refuses (:class:`BatteryRewardsMismatchError`) unless each equals the
Python evaluation to the last micro-EUR. On the embedded anvil the chain's clock is
moved to the end of the last period first (the example's periods may lie ahead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eth_abi.abi import encode as abi_encode
from eth_typing import ABIFunction
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types
from eth_utils.crypto import keccak
from web3 import Web3
from web3.types import RPCEndpoint

from gridmatch.battery_rewards.conditions import Thresholds
from gridmatch.battery_rewards.run import Evaluation
from gridmatch.battery_rewards.summary import Summary
from gridmatch.errors import ChainError
from gridmatch.results_io.layout import SETTLEMENT_DIR
from gridmatch.settlement.abi_calls import ContractAbi, call_view
from gridmatch.settlement.artifacts import build
from gridmatch.settlement.chain import connect, fund_gas
from gridmatch.settlement.deploy import deploy_contract
from gridmatch.settlement.eip712 import address_word, keccak256, sign, uint_word
from gridmatch.settlement.keys import OPERATOR, Keystore, validator_name
from gridmatch.settlement.receipts import Receipt
from gridmatch.settlement.transactions import Sender

DOMAIN_NAME = "gridmatch BatteryRewards"
DOMAIN_VERSION = "1"
SUMMARY_TYPE = (
    "BatterySummary(uint256 agreementId,uint32 period,uint16 socMinBps,uint16 socMaxBps,"
    "uint16 maxDodBps,uint32 maxCRateMilli,int32 tempMinDeciC,int32 tempMaxDeciC,"
    "uint32 cyclesPerDayMilli,uint16 sohBps,uint32 epoch)"
)
_DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
_SUMMARY_TYPEHASH = keccak256(SUMMARY_TYPE.encode())
_SUMMARY_BITS = (16, 16, 16, 32, -32, -32, 32, 16)  # negative: a signed intN
OPERATOR_GAS_WEI = 10**22
DEFAULT_VALIDATORS = 3


class BatteryRewardsMismatchError(ChainError):
    """What the chain paid differs from the Python evaluation."""


def _calldata(contract: ContractAbi, name: str, *args: object) -> bytes:
    """Calldata of ``contract.name(*args)`` encoded by eth-abi (the house encoder has no intN)."""
    (item,) = [i for i in contract.abi if i.get("type") == "function" and i["name"] == name]
    function = cast(ABIFunction, item)
    return bytes(function_abi_to_4byte_selector(function)) + abi_encode(
        get_abi_input_types(function), list(args)
    )


def _transact(sender: Sender, contract: ContractAbi, name: str, *args: object) -> Receipt:
    data = _calldata(contract, name, *args)
    return sender.wait([sender.send(contract.address, data, abi=contract.abi)], contract.abi)[0]


def summary_hash_on_chain(
    w3: Web3, deployment: Deployment, period: int, summary: Summary, epoch: int
) -> bytes:
    """Return the contract's own ``summaryHash`` (to check :func:`summary_digest` by)."""
    rewards = deployment.rewards
    data = _calldata(
        rewards, "summaryHash", deployment.agreement_id, period, summary.as_tuple(), epoch
    )
    (found,) = rewards.decode_output(
        "summaryHash", bytes(w3.eth.call({"to": rewards.address, "data": data}))
    )
    return bytes(found)


def _word(value: int, bits: int) -> bytes:
    if bits < 0:
        if not -(1 << (-bits - 1)) <= value < 1 << (-bits - 1):
            raise ValueError(f"{value} is not an int{-bits}")
        return (value % (1 << 256)).to_bytes(32, "big")
    return uint_word(value, bits)


def summary_digest(
    chain_id: int, contract: str, agreement_id: int, period: int, summary: Summary, epoch: int
) -> bytes:
    """Return the EIP-712 digest a validator registered under ``epoch`` signs for ``summary``.

    Computed here from the type string, apart from the contract's ``summaryHash``.
    """
    separator = keccak256(
        keccak256(_DOMAIN_TYPE.encode())
        + keccak256(DOMAIN_NAME.encode())
        + keccak256(DOMAIN_VERSION.encode())
        + uint_word(chain_id, 256)
        + address_word(contract)
    )
    fields = b"".join(_word(v, b) for v, b in zip(summary.as_tuple(), _SUMMARY_BITS, strict=True))
    struct_hash = keccak256(
        _SUMMARY_TYPEHASH
        + uint_word(agreement_id, 256)
        + uint_word(period, 32)
        + fields
        + uint_word(epoch, 32)
    )
    return keccak256(b"\x19\x01" + separator + struct_hash)


@dataclass(frozen=True)
class Deployment:
    """A demonstration deployment and its agreement."""

    payment: ContractAbi
    registry: ContractAbi
    rewards: ContractAbi
    agreement_id: int
    participants: dict[str, str]  # participant id -> address
    chain_id: int


def deploy_agreement(
    sender: Sender, evaluation: Evaluation, keystore: Keystore, validators: int
) -> Deployment:
    """Deploy token, registry (``validators`` keys registered) and rewards; fund the agreement."""
    build()
    admin = sender.address
    payment = deploy_contract(sender, "PaymentToken", ["address"], admin)
    registry = deploy_contract(sender, "ValidatorRegistry", ["address"], admin)
    rewards = deploy_contract(
        sender, "BatteryRewards", ["address", "address"], payment.address, registry.address
    )
    for k in range(1, validators + 1):
        sender.transact(registry, "register", keystore.role(validator_name(k), create=True).address)
    agreement = evaluation.agreement
    participants = {p: keystore.participant(p).address for p, _ in agreement.participants}
    funded = evaluation.funded_micro_eur
    sender.transact(payment, "mint", admin, funded)
    sender.transact(payment, "approve", rewards.address, funded)
    terms = (
        keccak(text=agreement.battery_id),
        agreement.period_start_s,
        agreement.period_seconds,
        agreement.periods,
        agreement.expiry_s,
        Thresholds.of(agreement.conditions).as_tuple(),
        list(agreement.amounts_micro_eur),
        list(participants.values()),
        [share for _, share in agreement.participants],
    )
    receipt = _transact(sender, rewards, "create", terms)
    (created,) = rewards.events(receipt, "AgreementCreated")
    return Deployment(
        payment, registry, rewards, int(created["id"]), participants, sender.w3.eth.chain_id
    )


def signatures(
    w3: Web3, deployment: Deployment, keys: list[Any], period: int, summary: Summary
) -> list[tuple[str, int, bytes]]:
    """``BatteryRewards.SignedSummary`` of each key, under its current epoch."""
    out = []
    for key in keys:
        (epoch,) = call_view(w3, deployment.registry, "epochOf", key.address)
        digest = summary_digest(
            deployment.chain_id,
            deployment.rewards.address,
            deployment.agreement_id,
            period,
            summary,
            int(epoch),
        )
        out.append((key.address, int(epoch), sign(key, digest)))
    return out


def release_period(
    sender: Sender,
    deployment: Deployment,
    period: int,
    summary: Summary,
    signed: list[tuple[str, int, bytes]],
) -> int:
    """Submit one period's signed summary; return the micro-EUR the contract released."""
    receipt = _transact(
        sender,
        deployment.rewards,
        "release",
        deployment.agreement_id,
        period,
        summary.as_tuple(),
        signed,
    )
    (attested,) = deployment.rewards.events(receipt, "PeriodAttested")
    return int(attested["released"])


def _move_clock(w3: Web3, to_s: int) -> None:
    """On anvil: the next blocks are at least at ``to_s`` (no-op if the chain is later)."""
    latest = int(w3.eth.get_block("latest")["timestamp"])
    if latest >= to_s:
        return
    response = w3.provider.make_request(RPCEndpoint("evm_setNextBlockTimestamp"), [to_s])
    if "error" in response:
        raise ChainError(
            f"the chain's time {latest} is before the last period ends ({to_s}) and the node "
            "cannot move its clock (evm_setNextBlockTimestamp): release later"
        )
    w3.provider.make_request(RPCEndpoint("evm_mine"), [])


def release_on_chain(
    evaluation: Evaluation,
    out_dir: Path,
    *,
    rpc_url: str | None = None,
    validators: int = DEFAULT_VALIDATORS,
) -> dict[str, object]:
    """Deploy, fund, attest and release every summarised period; check against Python.

    Returns the record written into summary.json's ``chain``.

    Raises
    ------
    BatteryRewardsMismatchError
        A period's release or a participant's balance differs from the evaluation.
    ChainError
        A transaction was refused, or the node failed.
    """
    keystore = Keystore.open(out_dir / SETTLEMENT_DIR / "keys", create=True)
    operator = keystore.role(OPERATOR, create=True)
    with connect(out_dir, rpc_url) as (w3, _):
        fund_gas(w3, operator.address, OPERATOR_GAS_WEI, local=rpc_url is None)
        sender = Sender(w3, operator)
        deployment = deploy_agreement(sender, evaluation, keystore, validators)
        keys = [keystore.signing_key(validator_name(k)) for k in range(1, validators + 1)]
        agreement = evaluation.agreement
        _move_clock(w3, agreement.period_start_s + agreement.periods * agreement.period_seconds)
        released = []
        for period in evaluation.periods:
            if period.summary is None:
                released.append(0)
                continue
            signed = signatures(w3, deployment, keys, period.period, period.summary)
            released.append(
                release_period(sender, deployment, period.period, period.summary, signed)
            )
        balances = {
            p: int(call_view(w3, deployment.payment, "balanceOf", address)[0])
            for p, address in deployment.participants.items()
        }
        funded, total, held, _ = call_view(
            w3, deployment.rewards, "balancesOf", deployment.agreement_id
        )
    if tuple(released) != evaluation.released_micro_eur:
        raise BatteryRewardsMismatchError(
            f"released per period on chain {released} != evaluated "
            f"{list(evaluation.released_micro_eur)}"
        )
    if balances != evaluation.payouts_micro_eur:
        raise BatteryRewardsMismatchError(
            f"participants' balances on chain {balances} != evaluated "
            f"{evaluation.payouts_micro_eur}"
        )
    return {
        "rewards_contract": deployment.rewards.address,
        "agreement_id": deployment.agreement_id,
        "funded_micro_eur": int(funded),
        "released_micro_eur": int(total),
        "held_micro_eur": int(held),
        "participants": deployment.participants,
        "balances_micro_eur": balances,
        "transactions": sender.sent,
        "gas_used": sender.gas_used,
        "matches_evaluation": True,
    }
