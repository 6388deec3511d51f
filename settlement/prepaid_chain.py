"""Publish a prepaid simulation's usage limits, cutoffs and reconnections on chain.

The escrow balance in the settlement contract is the prepaid balance. The grid
operator publishes, through ``PrepaidMeters`` (``contracts/src/PrepaidMeters.sol``),
each usage limit it sends a meter (``UsageLimitSet(account, meter, limitWh, counter)``)
and each cutoff and reconnection (``CutOff`` / ``Reconnected``), so a meter or its
gateway can follow them on chain. The contract checks every publication against the
escrow: a limit must be payable at the highest tariff and carry a counter above the
meter's last (a replayed or stale limit is refused, as OpenPAYGO's counters are); a
cutoff needs the free escrow below a threshold, a reconnection at least another one (a
top-up). It holds and moves no money.

:func:`publish_prepaid_events` takes the records of a simulation (``gridmatch prepaid``'s
events.csv gives them: ``token_issued`` rows are limits with their token counter,
``disconnected`` and ``reconnected`` the switching), checks every one as the contract
would, in order, against the chain's state, and refuses the first bad one naming its
position and field before any transaction; then publishes them in chunks under the gas
cap. The ``PrepaidMeters`` contract is deployed on first use with the given tariff and
thresholds and recorded in ``OUT_DIR/settlement/prepaid.json``; later calls must give
the same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from eth_utils.crypto import keccak
from web3 import Web3

from gridmatch.errors import InputError, UsageError
from gridmatch.results_io.atomic import write_file_atomically
from gridmatch.results_io.layout import SETTLEMENT_DIR
from gridmatch.settlement.abi_calls import ContractAbi, call_view
from gridmatch.settlement.artifacts import build
from gridmatch.settlement.chain import connect, contract_at, fund_gas, in_chunks
from gridmatch.settlement.deploy import deploy_contract
from gridmatch.settlement.fields import Address, Uint64
from gridmatch.settlement.keys import GRID_OPERATOR, OPERATOR, Keystore
from gridmatch.settlement.record import read_record, record_path
from gridmatch.settlement.transactions import Sender
from gridmatch.user_files import RECORD_LIMIT_BYTES, parse_json, read_text, validated

PREPAID_FILE = "prepaid.json"
# PrepaidMeters.KIND_*; the words gridmatch prepaid's events.csv uses map onto them.
KINDS = {
    "limit": 0,
    "token_issued": 0,
    "cutoff": 1,
    "disconnected": 1,
    "reconnect": 2,
    "reconnected": 2,
}
GRID_OPERATOR_GAS_WEI = 10**22
_MAX_METER_ID = 200


@dataclass(frozen=True)
class PrepaidEvent:
    """One record to publish, checked.

    ``limit_wh`` and ``counter`` are used by limits only (a cutoff or reconnection
    publishes no limit).
    """

    meter_id: str
    account: str
    kind: int
    limit_wh: int
    counter: int

    @property
    def meter(self) -> bytes:
        """The meter's key on chain: keccak256 of its id (UTF-8)."""
        return bytes(keccak(text=self.meter_id))

    def as_action(self) -> tuple[object, ...]:
        """Return the record as ``PrepaidMeters.Action`` takes it."""
        limit, counter = (self.limit_wh, self.counter) if self.kind == 0 else (0, 0)
        return (self.kind, self.account, self.meter, limit, counter)


@dataclass(frozen=True)
class PrepaidPublication:
    """What :func:`publish_prepaid_events` put on chain."""

    contract: str
    limits: int
    cutoffs: int
    reconnections: int
    transactions: int
    gas_used: int


class PrepaidDeployment(pydantic.BaseModel):
    """``OUT_DIR/settlement/prepaid.json``: the PrepaidMeters contract and its parameters."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True)

    prepaid_meters: Address
    settlement: Address
    grid_operator: Address
    max_tariff_micro_eur_per_kwh: Uint64
    cut_off_below_micro_eur: int
    reconnect_at_micro_eur: int


def checked_events(
    records: Sequence[tuple[Any, ...]], source: str = "prepaid events"
) -> list[PrepaidEvent]:
    """Return the records as checked events, or refuse the first bad one naming its field.

    Each record is ``(meter_id, account address, kind, limit_wh, counter)``; ``kind`` is
    ``limit``, ``cutoff`` or ``reconnect`` (or events.csv's ``token_issued``,
    ``disconnected``, ``reconnected``).

    Raises
    ------
    InputError
        Naming ``source``, the record's position (``row``, from 1) and the field.
    """
    events = []
    for row, record in enumerate(records, start=1):
        if not isinstance(record, tuple | list) or len(record) != 5:
            raise InputError(
                source, "a record is (meter_id, account, kind, limit_wh, counter)", row=row
            )
        meter_id, account, kind, limit_wh, counter = record
        if (
            not isinstance(meter_id, str)
            or not meter_id
            or len(meter_id) > _MAX_METER_ID
            or not meter_id.isprintable()
        ):
            raise InputError(
                source,
                f"not a meter id (printable, 1 to {_MAX_METER_ID} characters)",
                row=row,
                field="meter_id",
            )
        if not isinstance(account, str) or not Web3.is_address(account) or int(account, 16) == 0:
            raise InputError(
                source, f"{account!r} is not an account address", row=row, field="account"
            )
        if kind not in KINDS:
            raise InputError(
                source, f"{kind!r} is none of {', '.join(KINDS)}", row=row, field="kind"
            )
        for name, value in (("limit_wh", limit_wh), ("counter", counter)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
                raise InputError(
                    source, f"{value!r} is not a whole number in [0, 2^64)", row=row, field=name
                )
        events.append(
            PrepaidEvent(
                meter_id, Web3.to_checksum_address(account), KINDS[kind], limit_wh, counter
            )
        )
    return events


@dataclass
class _Meter:
    account: str
    counter: int
    disconnected: bool


def _check_sequence(
    events: list[PrepaidEvent],
    meters: dict[bytes, _Meter],
    free: dict[str, int],
    deployment: PrepaidDeployment,
    source: str,
) -> None:
    """Apply the contract's rules to the events in order; refuse the first it refuses."""
    tariff = deployment.max_tariff_micro_eur_per_kwh
    for row, event in enumerate(events, start=1):
        state = meters.setdefault(event.meter, _Meter("", 0, False))
        balance = free[event.account.lower()]
        where = f"meter {event.meter_id}"
        if event.kind == 0:
            if state.disconnected:
                raise InputError(
                    source,
                    f"{where} is cut off: reconnect it before a limit",
                    row=row,
                    field="kind",
                )
            if event.counter <= state.counter:
                raise InputError(
                    source,
                    f"{where}: counter {event.counter} is not above its last {state.counter} "
                    "(a replayed or stale limit)",
                    row=row,
                    field="counter",
                )
            cost = -(-event.limit_wh * tariff // 1000)
            if cost > balance:
                raise InputError(
                    source,
                    f"{where}: {event.limit_wh} Wh cost {cost} micro-EUR at the highest tariff "
                    f"({tariff} micro-EUR/kWh); the account's escrow holds {balance} free",
                    row=row,
                    field="limit_wh",
                )
            state.account, state.counter = event.account, event.counter
            continue
        if state.account.lower() != event.account.lower():
            raise InputError(
                source,
                f"{where}'s last limit was for {state.account or 'no account'}, "
                f"not {event.account}",
                row=row,
                field="account",
            )
        if event.kind == 1:
            if state.disconnected:
                raise InputError(source, f"{where} is cut off already", row=row, field="kind")
            if balance >= deployment.cut_off_below_micro_eur:
                raise InputError(
                    source,
                    f"{where}: the account's free escrow {balance} micro-EUR is not below "
                    f"{deployment.cut_off_below_micro_eur}: no cutoff",
                    row=row,
                    field="kind",
                )
            state.disconnected = True
        else:
            if not state.disconnected:
                raise InputError(source, f"{where} is not cut off", row=row, field="kind")
            if balance < deployment.reconnect_at_micro_eur:
                raise InputError(
                    source,
                    f"{where}: the account's free escrow {balance} micro-EUR is below "
                    f"{deployment.reconnect_at_micro_eur}: top up before reconnecting",
                    row=row,
                    field="kind",
                )
            state.disconnected = False


def publish_prepaid_events(
    out_dir: Path,
    records: Sequence[tuple[Any, ...]],
    *,
    max_tariff_micro_eur_per_kwh: int,
    cut_off_below_micro_eur: int,
    reconnect_at_micro_eur: int,
    rpc_url: str | None = None,
    source: str = "prepaid events",
) -> PrepaidPublication:
    """Publish ``records`` on the deployment's chain (see the module docstring).

    Parameters
    ----------
    out_dir
        A settled result folder (``gridmatch settle``): its escrow is the prepaid balance.
    records
        ``(meter_id, account address, kind, limit_wh, counter)`` in the order they happened.
    max_tariff_micro_eur_per_kwh
        The highest price of a kWh of usage: a limit must be payable at it.
    cut_off_below_micro_eur, reconnect_at_micro_eur
        A cutoff needs the free escrow below the first, a reconnection at least the second.
    source
        What the records came from (an events.csv path), for the error messages.

    Raises
    ------
    InputError
        A record is malformed, or the contract would refuse it (its position and field
        named); nothing was published then.
    UsageError
        The parameters are out of range, or differ from the recorded deployment's.
    ChainError
        A transaction was refused, or the node failed.
    """
    if not 0 < max_tariff_micro_eur_per_kwh < 2**64:
        raise UsageError("max_tariff_micro_eur_per_kwh must be in (0, 2^64)")
    if not 0 < cut_off_below_micro_eur <= reconnect_at_micro_eur < 2**128:
        raise UsageError(
            "thresholds must satisfy 0 < cut_off_below_micro_eur <= reconnect_at_micro_eur"
        )
    events = checked_events(records, source)
    record = read_record(record_path(out_dir))
    keystore = Keystore.open(out_dir / SETTLEMENT_DIR / "keys", create=False)
    grid_operator = keystore.role(GRID_OPERATOR)
    url = rpc_url or record.rpc_url
    with connect(out_dir, url) as (w3, _):
        deployment, contract = _deployment(
            w3,
            out_dir,
            record.settlement,
            Sender(w3, keystore.role(OPERATOR)),
            grid_operator.address,
            (max_tariff_micro_eur_per_kwh, cut_off_below_micro_eur, reconnect_at_micro_eur),
        )
        meters = _meter_states(w3, contract, events)
        free = _free_balances(w3, record.settlement, events)
        _check_sequence(events, meters, free, deployment, source)
        fund_gas(w3, grid_operator.address, GRID_OPERATOR_GAS_WEI, local=url is None)
        sender = Sender(w3, grid_operator)
        counts = [0, 0, 0]
        actions = [e.as_action() for e in events]
        for _, receipt, _ in in_chunks(sender, contract, actions, lambda part: ("publish", part)):
            counts[0] += len(contract.decode_logs(receipt.logs, "UsageLimitSet"))
            counts[1] += len(contract.decode_logs(receipt.logs, "CutOff"))
            counts[2] += len(contract.decode_logs(receipt.logs, "Reconnected"))
    return PrepaidPublication(
        contract=contract.address,
        limits=counts[0],
        cutoffs=counts[1],
        reconnections=counts[2],
        transactions=sender.sent,
        gas_used=sender.gas_used,
    )


def _deployment(
    w3: Web3,
    out_dir: Path,
    settlement: str,
    operator: Sender,
    grid_operator: str,
    parameters: tuple[int, int, int],
) -> tuple[PrepaidDeployment, ContractAbi]:
    """Return the recorded PrepaidMeters contract (same parameters), or deploy one now."""
    path = out_dir / SETTLEMENT_DIR / PREPAID_FILE
    tariff, cut_off, reconnect = parameters
    if path.exists():
        document = parse_json(read_text(path, RECORD_LIMIT_BYTES, "prepaid record"), path)
        found = validated(PrepaidDeployment, document, path, "prepaid record")
        if (
            found.max_tariff_micro_eur_per_kwh,
            found.cut_off_below_micro_eur,
            found.reconnect_at_micro_eur,
        ) != parameters:
            raise UsageError(
                f"{path}: PrepaidMeters {found.prepaid_meters} was deployed with tariff "
                f"{found.max_tariff_micro_eur_per_kwh} and thresholds "
                f"{found.cut_off_below_micro_eur}/{found.reconnect_at_micro_eur}; "
                "give the same, or settle a new deployment"
            )
        if found.settlement.lower() != settlement.lower():
            raise InputError(path, "belongs to another settlement deployment", field="settlement")
        contract = contract_at("PrepaidMeters", found.prepaid_meters)
        (on_chain,) = call_view(w3, contract, "settlement")
        if str(on_chain).lower() != settlement.lower():
            raise InputError(
                path, "its contract reads another settlement's escrow", field="prepaid_meters"
            )
        return found, contract
    build()
    deployed = deploy_contract(
        operator,
        "PrepaidMeters",
        ["address", "address", "address", "uint64", "uint256", "uint256"],
        operator.address,
        settlement,
        grid_operator,
        tariff,
        cut_off,
        reconnect,
    )
    found = PrepaidDeployment(
        prepaid_meters=deployed.address,
        settlement=Web3.to_checksum_address(settlement),
        grid_operator=grid_operator,
        max_tariff_micro_eur_per_kwh=tariff,
        cut_off_below_micro_eur=cut_off,
        reconnect_at_micro_eur=reconnect,
    )
    write_file_atomically(path, found.model_dump_json(indent=1) + "\n")
    return found, deployed


def _meter_states(
    w3: Web3, contract: ContractAbi, events: list[PrepaidEvent]
) -> dict[bytes, _Meter]:
    keys = sorted({e.meter for e in events})
    states: dict[bytes, _Meter] = {}
    for start in range(0, len(keys), 500):
        part = keys[start : start + 500]
        (found,) = call_view(w3, contract, "meterStates", part)
        for key, (account, counter, _, disconnected) in zip(part, found, strict=True):
            states[key] = _Meter(
                "" if int(account, 16) == 0 else Web3.to_checksum_address(account),
                int(counter),
                bool(disconnected),
            )
    return states


def _free_balances(w3: Web3, settlement: str, events: list[PrepaidEvent]) -> dict[str, int]:
    accounts = sorted({e.account.lower() for e in events})
    contract = contract_at("Settlement", settlement)
    free: dict[str, int] = {}
    for start in range(0, len(accounts), 500):
        part = accounts[start : start + 500]
        found, _ = call_view(w3, contract, "balancesOf", part)
        free.update({a: int(f) for a, f in zip(part, found, strict=True)})
    return free
