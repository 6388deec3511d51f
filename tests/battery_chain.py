"""A battery reward agreement deployed on a fresh anvil, its periods over: the attack tests' start.

Yields the chain, the operator's sender, the deployment and the three validators' signing
keys, with the chain's clock at the end of the example's last period (and before expiry).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import Web3

from gridmatch.battery_rewards.run import Evaluation
from gridmatch.settlement import battery_rewards as chain
from gridmatch.settlement.anvil import local_chain
from gridmatch.settlement.battery_rewards import Deployment
from gridmatch.settlement.chain import fund_gas
from gridmatch.settlement.keys import Keystore, validator_name
from gridmatch.settlement.transactions import Sender


@dataclass(frozen=True)
class DeployedAgreement:
    """What a test needs to sign and release periods by hand."""

    w3: Web3
    sender: Sender
    deployment: Deployment
    keys: list[Any]


@contextmanager
def deployed_after_last_period(evaluation: Evaluation, work: Path) -> Iterator[DeployedAgreement]:
    """Deploy ``evaluation``'s agreement with three validators; clock at its last period's end."""
    keystore = Keystore.open(work / "keys", create=True)
    operator = keystore.role("operator", create=True)
    with local_chain(work / "state.json") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        fund_gas(w3, operator.address, 10**22, local=True)
        sender = Sender(w3, operator)
        names = [validator_name(k) for k in (1, 2, 3)]
        deployment = chain.deploy_agreement(sender, evaluation, keystore, names)
        agreement = evaluation.agreement
        end = agreement.period_start_s + agreement.periods * agreement.period_seconds
        w3.provider.make_request("evm_setNextBlockTimestamp", [end])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        keys: list[Any] = [keystore.signing_key(n) for n in names]
        yield DeployedAgreement(w3, sender, deployment, keys)
