"""The server's side of the loop: one prepaid account per meter, billed from its reports.

Money is whole micro-EUR. Field names follow DLMS/COSEM's Account (class 111) and Credit
(class 112) objects (``current_credit_amount``, ``available_credit``,
``amount_to_clear``, ``low_credit_threshold``, ``clearance_threshold``): naming only.

**Billing.** A report carries the meter's cumulative register per tariff band. The
energy billed so far for a band is always the tariff cost of its billed register, rounded
down (:func:`gridmatch.units.energy_cost_micro_eur`), and a report is charged the
difference. So the charges add up to the cost of the registers however the readings were
grouped: a lost or late report leaves usage unbilled only until the next report, and the
closing read bills everything. A report older than one already billed is stale and
ignored. The standing charge accrues with time, not with reports, also while
disconnected: ``floor(minutes since start * daily charge / 1440)`` billed so far.

**Decisions** (only when the meter's current report arrived: that is contact, and the
reply goes back with it):

* connected and ``available_credit = balance + emergency credit <= 0``: a cutoff
  command (a limit token of 0 units), unless the instant is in friendly-credit hours,
  then nothing (``cutoff_deferred``) until the first contact outside them;
* connected with credit: a new limit when the meter's remaining limit is below half of
  the grant, the Wh the available credit buys at the **cheapest** band price (rounded up
  to whole units, at most 995). At the cheapest price the limit never runs out before
  the credit does, so the meter's own backstop never cuts off a customer the server
  would keep connected; the exact money rule is the server's;
* disconnected: reconnection (a limit token of the grant) once the balance is above the
  clearance threshold; the balance only rises by top-ups, so after a cutoff for lack of
  credit that takes a top-up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gridmatch.prepaid.meter import MeterReport
from gridmatch.prepaid.tokens import MAX_UNITS, IssuedToken, TokenIssuer
from gridmatch.results_io.prepaid import ControlState, CreditStatus
from gridmatch.scenario_io.prepaid_input import PrepaidPolicy, Tariff
from gridmatch.units import WH_PER_KWH, energy_cost_micro_eur, standing_charge_micro_eur


def tariff_cost_micro_eur(tariff: Tariff, registers_wh: Sequence[int]) -> int:
    """Tariff cost of cumulative per-band registers, each band rounded down."""
    return sum(
        energy_cost_micro_eur(wh, price)
        for wh, price in zip(registers_wh, tariff.micro_eur_per_kwh, strict=True)
    )


def grant_units(available_micro_eur: int, tariff: Tariff, unit_wh: int) -> int:
    """Token units the available credit buys at the cheapest band, rounded up, capped at 995."""
    if available_micro_eur <= 0:
        return 0
    cheapest = min(tariff.micro_eur_per_kwh)
    if cheapest == 0:
        return MAX_UNITS
    wh = math.ceil(available_micro_eur * WH_PER_KWH / cheapest)
    return min(MAX_UNITS, math.ceil(wh / unit_wh))


@dataclass(frozen=True)
class Decision:
    """What the server sends back at a contact: a token (with its purpose), or nothing."""

    token: IssuedToken | None
    purpose: str
    deferred: bool = False


class Account:
    """One meter's prepaid account on the server."""

    def __init__(
        self,
        policy: PrepaidPolicy,
        balance_micro_eur: int,
        emergency_credit_micro_eur: int,
        key_hex: str,
    ) -> None:
        self.policy = policy
        self.current_credit_amount_micro_eur = balance_micro_eur
        self.emergency_credit_limit_micro_eur = emergency_credit_micro_eur
        self.billed_registers_wh = [0] * policy.tariff.n_bands
        self.billed_energy_micro_eur = 0
        self.billed_standing_micro_eur = 0
        self.topups_micro_eur = 0
        self.last_seq = 0
        self.issuer = TokenIssuer(key_hex)
        self._deferred = False

    # --- the DLMS-named views -----------------------------------------------------------

    @property
    def balance_micro_eur(self) -> int:
        """The prepaid balance (negative: emergency credit in use, or debt)."""
        return self.current_credit_amount_micro_eur

    @property
    def available_credit_micro_eur(self) -> int:
        """Balance plus the emergency credit allowance: the meter is cut off at or below 0."""
        return self.current_credit_amount_micro_eur + self.emergency_credit_limit_micro_eur

    @property
    def emergency_credit_micro_eur(self) -> int:
        """Emergency credit left to use."""
        used = max(0, -self.current_credit_amount_micro_eur)
        return max(0, self.emergency_credit_limit_micro_eur - used)

    @property
    def amount_to_clear_micro_eur(self) -> int:
        """What a top-up must pay before the balance is above zero again."""
        return max(0, -self.current_credit_amount_micro_eur)

    @property
    def credit_status(self) -> CreditStatus:
        """Status of the token credit (the balance)."""
        return (
            CreditStatus.IN_USE
            if self.current_credit_amount_micro_eur > 0
            else CreditStatus.EXHAUSTED
        )

    @property
    def emergency_credit_status(self) -> CreditStatus:
        """Status of the emergency credit."""
        if self.current_credit_amount_micro_eur > 0:
            return CreditStatus.SELECTABLE
        if self.available_credit_micro_eur > 0:
            return CreditStatus.IN_USE
        return CreditStatus.EXHAUSTED

    # --- money in and out ---------------------------------------------------------------

    def bill(self, report: MeterReport) -> int | None:
        """Charge a report's registers; the charge, or ``None`` for a stale report."""
        if report.seq <= self.last_seq:
            return None
        self.last_seq = report.seq
        self.billed_registers_wh = list(report.registers_wh)
        billed = tariff_cost_micro_eur(self.policy.tariff, report.registers_wh)
        charge = billed - self.billed_energy_micro_eur
        self.billed_energy_micro_eur = billed
        self.current_credit_amount_micro_eur -= charge
        return charge

    def accrue_standing(self, instant: int) -> int:
        """Charge the standing charge accrued up to report instant ``instant``."""
        minutes = instant * self.policy.report_interval_min
        due = standing_charge_micro_eur(minutes, self.policy.standing_charge_micro_eur_per_day)
        charge = due - self.billed_standing_micro_eur
        self.billed_standing_micro_eur = due
        self.current_credit_amount_micro_eur -= charge
        return charge

    def top_up(self, amount_micro_eur: int) -> None:
        """Credit a top-up."""
        self.topups_micro_eur += amount_micro_eur
        self.current_credit_amount_micro_eur += amount_micro_eur

    # --- the reply to a report ----------------------------------------------------------

    def decide(self, report: MeterReport, friendly: bool) -> Decision:
        """Decide what goes back with the reply to the meter's current report."""
        policy = self.policy
        available = self.available_credit_micro_eur
        grant = grant_units(available, policy.tariff, policy.token_unit_wh)
        if report.control_state is ControlState.CONNECTED:
            if available <= 0:
                if friendly:
                    first = not self._deferred
                    self._deferred = True
                    return Decision(None, "", deferred=first)
                self._deferred = False
                return Decision(self.issuer.issue_limit(0), "cutoff command")
            self._deferred = False
            # Half the grant, compared in Wh without rounding: 2 * remaining < grant.
            if 2 * report.remaining_wh < grant * policy.token_unit_wh:
                return Decision(self.issuer.issue_limit(grant), "limit")
            return Decision(None, "")
        self._deferred = False
        if (
            self.current_credit_amount_micro_eur > policy.reconnect_threshold_micro_eur
            and grant > 0
        ):
            return Decision(self.issuer.issue_limit(grant), "reconnection")
        return Decision(None, "")
