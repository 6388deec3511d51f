r"""Prepaid budgets in matching: a buyer's trades cost at most what its account holds.

A buyer with an account (``accounts.csv``) pays for each kWh it buys its trade's price
plus the grid fee. Per slot and account the model gets one row

.. math::

    \sum_{p \in \text{pairs of the account's buys}} c_p\, \mathrm{kWh}_p \le \mathrm{cap},

linear because each pair's cost :math:`c_p` is fixed by the pricing rule before the
solve: midpoint, pay-as-bid and pay-as-offer set the price from the two limits and the
fee. Under the uniform rule the price is the slot's pool price, known only after the
integer decisions; the row then charges every kWh the most the buyer can pay, its limit
price (price plus fee never exceed it), so the budget holds whatever the pool price
turns out to be, at the cost of leaving money unused.

Money is spent in delivery order, as a prepaid meter spends it: slots are cleared in
order, and slot :math:`s` may spend what is left after the trades of the slots before
it (:func:`gridmatch.matching.clearing.solve_within_budgets`). Buyers without an account
have no row; sellers are never limited. This module holds the rows and their check;
:mod:`gridmatch.matching.budget_cut` makes any allocation keep them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from gridmatch.matching.market_rules import MarketRules, PricingRule
from gridmatch.units import MICRO_EUR_PER_EUR

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# The model's rows keep this much below each cap per pair they hold (and once more), so
# that neither a solver's feasibility tolerance (HiGHS: 1e-7 on a row) nor settlement's
# rounding (each trade's lock is rounded up to a micro-EUR) spends more than the account
# holds: on chain the escrow is the prepaid balance.
MODEL_SLACK_EUR = 1e-6

# What a check lets pass above a cap: float noise in summing the costs, far below 1 µEUR.
CHECK_TOLERANCE_EUR = 1e-9


@dataclass(frozen=True)
class BudgetRows:
    """The budget rows of one slot.

    Attributes
    ----------
    account
        Participant ids of the accounts that pay for at least one pair of the slot.
    pair_account
        Per pair, the row of the account paying for it (``-1``: the buyer has none).
    cost_eur_per_kwh
        Per pair, what the buyer pays per kWh: price plus fee (the limit price under
        the uniform rule).
    opening_eur
        Per account, what it held when the clearing began (before any slot).
    available_eur
        Per account, what it holds when the slot is cleared (after earlier slots).
    cap_eur
        Per account, what the slot may spend: ``available_eur`` when the slot is solved;
        afterwards the spend of the accepted answer, so that re-solving the slot (the
        security loop) cannot spend what later slots were promised.
    """

    account: tuple[str, ...]
    pair_account: IntArray
    cost_eur_per_kwh: FloatArray
    opening_eur: FloatArray
    available_eur: FloatArray
    cap_eur: FloatArray

    @property
    def n_rows(self) -> int:
        """Number of accounts (rows)."""
        return len(self.account)

    def spend_eur(self, pair_kwh: FloatArray) -> FloatArray:
        """Return what each account spends on an allocation (kWh per pair)."""
        paid = self.pair_account >= 0
        return np.bincount(
            self.pair_account[paid],
            weights=pair_kwh[paid] * self.cost_eur_per_kwh[paid],
            minlength=self.n_rows,
        ).astype(np.float64)

    def holds(self, pair_kwh: FloatArray) -> bool:
        """Whether no account spends more than its cap."""
        return bool(np.all(self.spend_eur(pair_kwh) <= self.cap_eur + CHECK_TOLERANCE_EUR))

    def model_cap_eur(self) -> FloatArray:
        """Return the caps the models state: each cap less the slack for its pairs."""
        pairs = np.bincount(self.pair_account[self.pair_account >= 0], minlength=self.n_rows)
        return np.maximum(self.cap_eur - MODEL_SLACK_EUR * (1 + pairs), 0.0)

    def subset(self, pairs: IntArray) -> BudgetRows:
        """Return the rows over a subset of the pairs (given by index, in order)."""
        return replace(
            self,
            pair_account=self.pair_account[pairs],
            cost_eur_per_kwh=self.cost_eur_per_kwh[pairs],
        )

    def with_caps(self, cap_eur: FloatArray, available_eur: FloatArray | None = None) -> BudgetRows:
        """Return the rows with new caps (and, if given, new available amounts)."""
        available = self.available_eur if available_eur is None else available_eur
        return replace(self, cap_eur=np.asarray(cap_eur, float), available_eur=available)


def pair_cost_eur_per_kwh(
    rules: MarketRules,
    buy_limit_eur_per_kwh: FloatArray,
    sell_limit_eur_per_kwh: FloatArray,
    fee_eur_per_kwh: FloatArray,
) -> FloatArray:
    """Return what a buyer pays per kWh on each pair: price plus fee (module docstring)."""
    if rules.pricing is PricingRule.UNIFORM:
        return np.asarray(buy_limit_eur_per_kwh, dtype=float)
    price = rules.price_eur_per_kwh(buy_limit_eur_per_kwh, sell_limit_eur_per_kwh, fee_eur_per_kwh)
    # As settlement will charge it: price and fee in whole micro-EUR per kWh (nearest),
    # never below the float cost.
    chain = (np.rint(price * MICRO_EUR_PER_EUR) + np.rint(fee_eur_per_kwh * MICRO_EUR_PER_EUR)) / (
        MICRO_EUR_PER_EUR
    )
    cost: FloatArray = np.maximum(np.asarray(price + fee_eur_per_kwh, dtype=float), chain)
    return cost


def budget_rows(
    buyer_participant: list[str],
    pair_buy: IntArray,
    pair_cost: FloatArray,
    available_eur: Mapping[str, float],
) -> BudgetRows | None:
    """Rows for the pairs whose buyer has an account (``None``: no such pair).

    Parameters
    ----------
    buyer_participant
        Participant id of each buy order of the slot (local buy order).
    available_eur
        What each account holds; participants missing here have no budget.
    """
    names = sorted({p for p in buyer_participant if p in available_eur})
    if not names:
        return None
    row_of = {name: k for k, name in enumerate(names)}
    buy_row = np.array([row_of.get(p, -1) for p in buyer_participant], dtype=np.int64)
    pair_account = buy_row[pair_buy] if pair_buy.size else np.zeros(0, dtype=np.int64)
    if not np.any(pair_account >= 0):
        return None
    available = np.array([max(float(available_eur[n]), 0.0) for n in names])
    return BudgetRows(
        tuple(names), pair_account, pair_cost, available, available.copy(), available.copy()
    )
