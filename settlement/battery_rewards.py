"""Battery reward agreements on chain: deploy, attest each period, release, check.

``BatteryRewards.sol`` (contracts/src/) holds a sponsor's funds for one battery and
releases, per period and condition met, a fixed amount split by the participants'
shares. It evaluates the conditions itself on a period summary that more than two
thirds of the validators of a ``ValidatorRegistry`` signed (EIP-712
``BatterySummary``, under each validator's current epoch); a period is attested once.

:func:`release_on_chain` deploys the rewards contract and funds the agreement. On its
own (the default) the keystore's operator first deploys a payment token and a registry
with the validators of the keystore; with ``settlement_dir`` (a result folder of
``gridmatch settle``) it reuses that deployment's registry and payment token, read from
its ``settlement/deployment.json``, on the node it used (its embedded anvil, or
``rpc_url``), and the settlement's keystore: its operator sponsors, its registered
validators sign. Every validator signs each summarised, covered period and the operator
submits the releases; periods the telemetry does not cover well enough are not
submitted (the contract would refuse them). A release credits the participants
(pull payments: no token moves); the operator then reads each participant's credit
(``owedOf``), claims it for the participant (``claim``: the tokens go to the participant
only) and reads what each participant's token balance gained, and refuses
(:class:`BatteryRewardsMismatchError`) unless both the credits and the gains equal the
Python evaluation to the last micro-EUR. The chain's clock is moved to the
end of the last period first where the node allows it (the example's periods may lie
ahead). :func:`reclaim_on_chain` is the sponsor's reclaim after expiry, from the
output folder's ``chain.json``: the contract credits the sponsor what was not released
(pull, as the releases), and the sponsor then withdraws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eth_abi.abi import encode as abi_encode
from eth_typing import ABIFunction
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types
from eth_utils.crypto import keccak
from web3 import Web3
from web3.types import RPCEndpoint

from gridmatch.battery_rewards.conditions import covered, thresholds_of
from gridmatch.battery_rewards.run import Evaluation
from gridmatch.battery_rewards.summary import PeriodSummary, Summary
from gridmatch.errors import ChainError, UsageError
from gridmatch.results_io.battery_rewards import (
    CHAIN_FILE,
    ChainRecord,
    ClaimRecord,
    PeriodRelease,
    ReclaimRecord,
    read_chain_record,
    write_chain_record,
)
from gridmatch.results_io.layout import SETTLEMENT_DIR
from gridmatch.settlement.abi_calls import ContractAbi, call_view
from gridmatch.settlement.artifacts import build
from gridmatch.settlement.chain import advance_clock, connect, contract_at, fund_gas
from gridmatch.settlement.deploy import deploy_contract
from gridmatch.settlement.eip712 import address_word, bytes32_word, keccak256, sign, uint_word
from gridmatch.settlement.keys import OPERATOR, Keystore, validator_name
from gridmatch.settlement.receipts import Receipt
from gridmatch.settlement.record import read_record, record_path
from gridmatch.settlement.transactions import Sender

DOMAIN_NAME = "gridmatch BatteryRewards"
DOMAIN_VERSION = "1"
# The summary is bound to its agreement, battery and schedule (and, by the domain, to
# the chain and the contract): a quorum's word on one battery's period is not one on another's.
SUMMARY_TYPE = (
    "BatterySummary(uint256 agreementId,bytes32 batteryId,uint64 periodStart,uint32 periodSeconds,"
    "uint32 period,uint16 socMinBps,uint16 socMaxBps,"
    "uint16 maxDodBps,uint32 maxCRateMilli,int32 tempMinDeciC,int32 tempMaxDeciC,"
    "uint32 cyclesPerDayMilli,uint16 sohBps,uint16 coverageBps,uint32 maxGapSeconds,uint32 epoch)"
)
_DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
_SUMMARY_TYPEHASH = keccak256(SUMMARY_TYPE.encode())
_SUMMARY_BITS = (16, 16, 16, 32, -32, -32, 32, 16, 16, 32)  # negative: a signed intN
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
    return _send(sender, contract, name, *args)[0]


def _send(sender: Sender, contract: ContractAbi, name: str, *args: object) -> tuple[Receipt, str]:
    """Send ``contract.name(*args)``, wait; return the receipt and the transaction's hash."""
    data = _calldata(contract, name, *args)
    tx_hash = sender.send(contract.address, data, abi=contract.abi)
    return sender.wait([tx_hash], contract.abi)[0], "0x" + tx_hash.hex()


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


@dataclass(frozen=True)
class SummaryScope:
    """What a signed summary is bound to besides its period.

    The chain and the contract (the EIP-712 domain), the agreement, its battery and its
    schedule (the ``BatterySummary`` struct).
    """

    chain_id: int
    contract: str
    agreement_id: int
    battery_id: bytes  # bytes32: keccak256 of the agreement's battery id
    period_start_s: int
    period_seconds: int


def battery_word(battery_id: str) -> bytes:
    """Return the agreement's ``batteryId`` on chain: keccak256 of the id's UTF-8 text."""
    return bytes(keccak(text=battery_id))


def summary_digest(scope: SummaryScope, period: int, summary: Summary, epoch: int) -> bytes:
    """Return the EIP-712 digest a validator registered under ``epoch`` signs for ``summary``.

    Computed here from the type string, apart from the contract's ``summaryHash``.
    """
    separator = keccak256(
        keccak256(_DOMAIN_TYPE.encode())
        + keccak256(DOMAIN_NAME.encode())
        + keccak256(DOMAIN_VERSION.encode())
        + uint_word(scope.chain_id, 256)
        + address_word(scope.contract)
    )
    fields = b"".join(_word(v, b) for v, b in zip(summary.as_tuple(), _SUMMARY_BITS, strict=True))
    struct_hash = keccak256(
        _SUMMARY_TYPEHASH
        + uint_word(scope.agreement_id, 256)
        + bytes32_word(scope.battery_id)
        + uint_word(scope.period_start_s, 64)
        + uint_word(scope.period_seconds, 32)
        + uint_word(period, 32)
        + fields
        + uint_word(epoch, 32)
    )
    return keccak256(b"\x19\x01" + separator + struct_hash)


@dataclass(frozen=True)
class Deployment:
    """The contracts an agreement lives in, and the agreement."""

    payment: ContractAbi
    registry: ContractAbi
    rewards: ContractAbi
    agreement_id: int
    participants: dict[str, str]  # participant id -> address
    chain_id: int
    create_tx_hash: str = ""
    battery_id: bytes = bytes(32)  # the agreement's batteryId (bytes32)
    period_start_s: int = 0
    period_seconds: int = 0

    @property
    def scope(self) -> SummaryScope:
        """What this agreement's signed summaries are bound to."""
        return SummaryScope(
            self.chain_id,
            self.rewards.address,
            self.agreement_id,
            self.battery_id,
            self.period_start_s,
            self.period_seconds,
        )


def deploy_agreement(
    sender: Sender,
    evaluation: Evaluation,
    keystore: Keystore,
    validators: Sequence[str],
    existing: tuple[ContractAbi, ContractAbi] | None = None,
) -> Deployment:
    """Deploy the rewards contract and fund the agreement (the sender is its sponsor).

    Parameters
    ----------
    validators
        Keystore names of the validators. Without ``existing`` a payment token and a
        registry are deployed first and these validators registered in it; with it they
        must already be registered there.
    existing
        ``(payment token, validator registry)`` of a settlement to reuse.
    """
    build()
    admin = sender.address
    if existing is None:
        payment = deploy_contract(sender, "PaymentToken", ["address"], admin)
        registry = deploy_contract(sender, "ValidatorRegistry", ["address"], admin)
        for name in validators:
            sender.transact(registry, "register", keystore.role(name, create=True).address)
    else:
        payment, registry = existing
    rewards = deploy_contract(
        sender, "BatteryRewards", ["address", "address"], payment.address, registry.address
    )
    agreement = evaluation.agreement
    participants = {p: keystore.participant(p).address for p, _ in agreement.participants}
    funded = evaluation.funded_micro_eur
    # A sponsor that already holds test EUR (a reused settlement's operator) mints only
    # the shortfall; a token whose minter it is not refuses, naming the role.
    (held,) = call_view(sender.w3, payment, "balanceOf", admin)
    if int(held) < funded:
        sender.transact(payment, "mint", admin, funded - int(held))
    sender.transact(payment, "approve", rewards.address, funded)
    terms = (
        battery_word(agreement.battery_id),
        agreement.period_start_s,
        agreement.period_seconds,
        agreement.periods,
        agreement.expiry_s,
        thresholds_of(agreement).as_tuple(),
        list(agreement.amounts_micro_eur),
        list(participants.values()),
        [share for _, share in agreement.participants],
    )
    receipt, tx_hash = _send(sender, rewards, "create", terms)
    (created,) = rewards.events(receipt, "AgreementCreated")
    return Deployment(
        payment,
        registry,
        rewards,
        int(created["id"]),
        participants,
        sender.w3.eth.chain_id,
        tx_hash,
        battery_word(agreement.battery_id),
        agreement.period_start_s,
        agreement.period_seconds,
    )


def signatures(
    w3: Web3, deployment: Deployment, keys: list[Any], period: int, summary: Summary
) -> list[tuple[str, int, bytes]]:
    """``BatteryRewards.SignedSummary`` of each key, under its current epoch."""
    out = []
    for key in keys:
        (epoch,) = call_view(w3, deployment.registry, "epochOf", key.address)
        digest = summary_digest(deployment.scope, period, summary, int(epoch))
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
    return _release(sender, deployment, period, summary, signed)[0].released_micro_eur


def _release(
    sender: Sender,
    deployment: Deployment,
    period: int,
    summary: Summary,
    signed: list[tuple[str, int, bytes]],
) -> tuple[PeriodRelease, Receipt]:
    receipt, tx_hash = _send(
        sender,
        deployment.rewards,
        "release",
        deployment.agreement_id,
        period,
        summary.as_tuple(),
        signed,
    )
    (attested,) = deployment.rewards.events(receipt, "PeriodAttested")
    release = PeriodRelease(
        period=period,
        submitted=True,
        released_micro_eur=int(attested["released"]),
        tx_hash=tx_hash,
        gas_used=receipt.gas_used,
    )
    return release, receipt


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


def _require_code(w3: Web3, contracts: dict[str, ContractAbi], where: str) -> None:
    for key, contract in contracts.items():
        if not w3.eth.get_code(Web3.to_checksum_address(contract.address)):
            raise ChainError(f"no contract at {contract.address} ({key}) on this chain: {where}")


def _token_balances(w3: Web3, payment: ContractAbi, accounts: dict[str, str]) -> dict[str, int]:
    return {p: int(call_view(w3, payment, "balanceOf", a)[0]) for p, a in accounts.items()}


def credits(w3: Web3, deployment: Deployment) -> dict[str, int]:
    """Return what each participant is owed by the rewards contract (not withdrawn yet)."""
    return {
        p: int(call_view(w3, deployment.rewards, "owedOf", a)[0])
        for p, a in deployment.participants.items()
    }


def claim_credits(sender: Sender, deployment: Deployment) -> list[ClaimRecord]:
    """Claim every participant's credit for it; skip participants owed nothing.

    ``BatteryRewards.claim``: anyone may send it, the tokens go to the participant only.
    """
    claims = []
    for participant, owed in credits(sender.w3, deployment).items():
        if owed == 0:
            continue
        address = deployment.participants[participant]
        receipt, tx_hash = _send(sender, deployment.rewards, "claim", address)
        (withdrawn,) = deployment.rewards.events(receipt, "Withdrawn")
        claims.append(
            ClaimRecord(
                participant=participant,
                address=address,
                claimed_micro_eur=int(withdrawn["amount"]),
                tx_hash=tx_hash,
                gas_used=receipt.gas_used,
            )
        )
    return claims


def _not_submitted(period: PeriodSummary) -> PeriodRelease:
    """Record a period not submitted, and why: no summary, or telemetry not covering it."""
    if period.summary is None:
        note = "too few samples"
    else:
        note = (
            f"telemetry coverage {period.summary.coverage_bps} bps, longest gap "
            f"{period.summary.max_gap_seconds} s: below the agreement's rule (the contract "
            "refuses such a summary)"
        )
    return PeriodRelease(period=period.period, submitted=False, released_micro_eur=0, note=note)


def release_on_chain(
    evaluation: Evaluation,
    out_dir: Path,
    *,
    rpc_url: str | None = None,
    validators: int = DEFAULT_VALIDATORS,
    settlement_dir: Path | None = None,
) -> ChainRecord:
    """Deploy, fund, attest and release every summarised period; check against Python.

    Parameters
    ----------
    validators
        Validators of an own deployment (ignored with ``settlement_dir``: the
        settlement's registered validators sign).
    settlement_dir
        A result folder of ``gridmatch settle`` whose registry and payment token to
        reuse, on its node (``rpc_url`` overrides the one its record names).

    Returns the record for ``OUT/chain.json``.

    Raises
    ------
    BatteryRewardsMismatchError
        A period's release or a participant's balance differs from the evaluation.
    InputError
        ``settlement_dir`` holds no deployment record or keystore.
    ChainError
        A transaction was refused, the settlement's contracts are not on the node, or
        the node failed.
    """
    existing_record = None
    if settlement_dir is None:
        chain_dir = out_dir
        keystore = Keystore.open(out_dir / SETTLEMENT_DIR / "keys", create=True)
        operator = keystore.role(OPERATOR, create=True)
        names = [validator_name(k) for k in range(1, validators + 1)]
        node = rpc_url
    else:
        existing_record = read_record(record_path(settlement_dir))
        chain_dir = settlement_dir
        keystore = Keystore.open(settlement_dir / SETTLEMENT_DIR / "keys", create=False)
        operator = keystore.role(OPERATOR)
        names = list(existing_record.validators)
        node = rpc_url or existing_record.rpc_url
    with connect(chain_dir, node) as (w3, _):
        fund_gas(w3, operator.address, OPERATOR_GAS_WEI, local=node is None)
        sender = Sender(w3, operator)
        existing = None
        if existing_record is not None:
            if w3.eth.chain_id != existing_record.chain_id:
                raise ChainError(
                    f"the node's chain id {w3.eth.chain_id} is not the settlement's "
                    f"({existing_record.chain_id}): give the --rpc-url that settle used"
                )
            existing = (
                contract_at("PaymentToken", existing_record.payment),
                contract_at("ValidatorRegistry", existing_record.registry),
            )
            _require_code(
                w3,
                {"payment": existing[0], "registry": existing[1]},
                "give the --rpc-url that settle used",
            )
        deployment = deploy_agreement(sender, evaluation, keystore, names, existing)
        keys = [keystore.signing_key(name) for name in names]
        agreement = evaluation.agreement
        _move_clock(w3, agreement.period_start_s + agreement.periods * agreement.period_seconds)
        before = _token_balances(w3, deployment.payment, deployment.participants)
        releases = []
        thresholds = thresholds_of(agreement)
        for period in evaluation.periods:
            summary = period.summary
            if summary is None or not covered(thresholds, summary):
                releases.append(_not_submitted(period))
                continue
            signed = signatures(w3, deployment, keys, period.period, summary)
            releases.append(_release(sender, deployment, period.period, summary, signed)[0])
        # Pull payments: the releases credited the participants; claim for each.
        credited = credits(w3, deployment)
        claims = claim_credits(sender, deployment)
        left = credits(w3, deployment)
        after = _token_balances(w3, deployment.payment, deployment.participants)
        funded, total, held, _ = call_view(
            w3, deployment.rewards, "balancesOf", deployment.agreement_id
        )
    released = [r.released_micro_eur for r in releases]
    gains = {p: after[p] - before[p] for p in after}
    if tuple(released) != evaluation.released_micro_eur:
        raise BatteryRewardsMismatchError(
            f"released per period on chain {released} != evaluated "
            f"{list(evaluation.released_micro_eur)}"
        )
    if credited != evaluation.payouts_micro_eur:
        raise BatteryRewardsMismatchError(
            f"participants credited on chain {credited} != evaluated {evaluation.payouts_micro_eur}"
        )
    if any(left.values()):
        raise BatteryRewardsMismatchError(f"credits left unclaimed on chain: {left}")
    if gains != evaluation.payouts_micro_eur:
        raise BatteryRewardsMismatchError(
            f"participants' balances on chain gained {gains} != evaluated "
            f"{evaluation.payouts_micro_eur}"
        )
    return ChainRecord(
        rpc_url=node,
        chain_dir=str(chain_dir.resolve()),
        reused_settlement=str(settlement_dir.resolve()) if settlement_dir is not None else None,
        chain_id=deployment.chain_id,
        payment=deployment.payment.address,
        registry=deployment.registry.address,
        rewards_contract=deployment.rewards.address,
        agreement_id=deployment.agreement_id,
        sponsor=operator.address,
        validators={name: key.address for name, key in zip(names, keys, strict=True)},
        participants=deployment.participants,
        create_tx_hash=deployment.create_tx_hash,
        funded_micro_eur=int(funded),
        released_micro_eur=int(total),
        held_micro_eur=int(held),
        balances_micro_eur=gains,
        releases=releases,
        credited_micro_eur=credited,
        claims=claims,
        owed_micro_eur=left,
        transactions=sender.sent,
        gas_used=sender.gas_used,
        matches_evaluation=True,
    )


def reclaim_on_chain(
    evaluation: Evaluation, out_dir: Path, *, rpc_url: str | None = None, advance_s: int = 0
) -> ChainRecord:
    """After expiry, the sponsor takes back what the agreement did not release.

    Reads ``out_dir/chain.json`` (written by :func:`release_on_chain`), sends
    ``BatteryRewards.reclaim`` with the sponsor's key (it credits the sponsor), then
    ``withdraw`` to the sponsor's address, and checks that the sponsor's token balance
    gained exactly funded - released, as the chain's ``balancesOf`` and the Python
    evaluation both give it. ``advance_s`` moves a local anvil's clock first.
    The contract alone refuses a reclaim before expiry or a second one. After a reclaim
    whose withdraw failed (``chain.json`` records it without ``withdraw_tx_hash``, the
    sponsor still owed on chain), only the withdraw is sent.

    Returns the record with its ``reclaim`` filled in (for ``chain.json``).

    Raises
    ------
    UsageError
        The output folder has no chain record.
    BatteryRewardsMismatchError
        The sponsor's gain differs from funded - released.
    ChainError
        The contract refused (not expired, already reclaimed), or the node failed; a
        withdrawal that failed after the reclaim is written to ``chain.json`` first.
    """
    record = read_chain_record(out_dir)
    if record is None:
        raise UsageError(
            f"{out_dir / CHAIN_FILE}: no on-chain run here; release first with "
            "`gridmatch battery-rewards FOLDER -o OUT --chain`"
        )
    chain_dir = Path(record.chain_dir)
    keystore = Keystore.open(chain_dir / SETTLEMENT_DIR / "keys", create=False)
    sponsor = keystore.role(OPERATOR)
    if sponsor.address != record.sponsor:
        raise ChainError(
            f"the keystore in {chain_dir / SETTLEMENT_DIR} holds {sponsor.address}, not the "
            f"agreement's sponsor {record.sponsor}"
        )
    node = rpc_url or record.rpc_url
    rewards = contract_at("BatteryRewards", record.rewards_contract)
    payment = contract_at("PaymentToken", record.payment)
    with connect(chain_dir, node) as (w3, _):
        _require_code(w3, {"rewards": rewards}, "give the --rpc-url the release used")
        if advance_s:
            advance_clock(w3, advance_s)
        sender = Sender(w3, sponsor)
        earlier = record.reclaim
        (owed,) = call_view(w3, rewards, "owedOf", sponsor.address)
        if earlier is not None and not earlier.withdraw_tx_hash and int(owed) != 0:
            # An earlier --reclaim reclaimed (final) and its withdraw failed: withdraw only.
            return _withdraw_reclaimed(out_dir, record, earlier, sender, rewards, payment)
        funded, released, _, _ = call_view(w3, rewards, "balancesOf", record.agreement_id)
        expected = evaluation.funded_micro_eur - evaluation.total_released_micro_eur
        if int(funded) - int(released) != expected:
            # A reclaim cannot be undone: refused before it is sent, not regretted after.
            raise BatteryRewardsMismatchError(
                f"not reclaimed: the chain holds funded - released "
                f"{int(funded) - int(released)} micro-EUR for the agreement, the evaluation "
                f"of this folder {expected} (other telemetry or agreement than the release's?)"
            )
        (before,) = call_view(w3, payment, "balanceOf", sponsor.address)
        receipt, tx_hash = _send(sender, rewards, "reclaim", record.agreement_id)
        (event,) = rewards.events(receipt, "Reclaimed")
        timestamp = int(w3.eth.get_block(receipt.block_number)["timestamp"])
        reclaim = ReclaimRecord(
            tx_hash=tx_hash,
            reclaimed_micro_eur=int(event["amount"]),
            sponsor_gain_micro_eur=0,
            gas_used=receipt.gas_used,
            block_timestamp=timestamp,
        )
        if int(event["amount"]) != 0:
            # The reclaim credited the sponsor (pull): withdraw it to the sponsor's address.
            try:
                paid, withdraw_hash = _send(sender, rewards, "withdraw", sponsor.address)
            except ChainError:
                # Reclaimed and final, the credit still owed: the record says so first
                # (the next --reclaim then only withdraws).
                write_chain_record(
                    out_dir, record.model_copy(update={"reclaim": reclaim, "held_micro_eur": 0})
                )
                raise
            reclaim = reclaim.model_copy(
                update={"withdraw_tx_hash": withdraw_hash, "withdraw_gas_used": paid.gas_used}
            )
        (after,) = call_view(w3, payment, "balanceOf", sponsor.address)
    gain = int(after) - int(before)
    reclaim = reclaim.model_copy(update={"sponsor_gain_micro_eur": gain})
    reclaimed = record.model_copy(update={"reclaim": reclaim, "held_micro_eur": 0})
    if not gain == int(event["amount"]) == int(funded) - int(released) == expected:
        # Sent and final: the record says so before the mismatch is reported.
        write_chain_record(out_dir, reclaimed)
        raise BatteryRewardsMismatchError(
            f"the sponsor gained {gain} micro-EUR (event {int(event['amount'])}, chain "
            f"funded - released {int(funded) - int(released)}), evaluated {expected}"
        )
    return reclaimed


def _withdraw_reclaimed(
    out_dir: Path,
    record: ChainRecord,
    earlier: ReclaimRecord,
    sender: Sender,
    rewards: ContractAbi,
    payment: ContractAbi,
) -> ChainRecord:
    """Withdraw the credit of a reclaim whose withdraw failed; check the sponsor's gain.

    Raises
    ------
    BatteryRewardsMismatchError
        The sponsor gained other than the earlier reclaim credited (written first).
    """
    sponsor = sender.address
    (before,) = call_view(sender.w3, payment, "balanceOf", sponsor)
    paid, withdraw_hash = _send(sender, rewards, "withdraw", sponsor)
    (after,) = call_view(sender.w3, payment, "balanceOf", sponsor)
    gain = int(after) - int(before)
    reclaim = earlier.model_copy(
        update={
            "withdraw_tx_hash": withdraw_hash,
            "withdraw_gas_used": paid.gas_used,
            "sponsor_gain_micro_eur": gain,
        }
    )
    withdrawn = record.model_copy(update={"reclaim": reclaim})
    if gain != earlier.reclaimed_micro_eur:
        write_chain_record(out_dir, withdrawn)
        raise BatteryRewardsMismatchError(
            f"the sponsor's withdraw gained {gain} micro-EUR, its reclaim credited "
            f"{earlier.reclaimed_micro_eur}"
        )
    return withdrawn
