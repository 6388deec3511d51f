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
* connected with credit: a new limit (:func:`limit_wh`: the Wh the available credit buys
  at the **cheapest** band price, plus what ``n_bands - 1`` micro-EUR of rounding buy,
  rounded up to a token) when the meter's limit may run out before the credit does: at
  commissioning, after a top-up (the credit rose above what the limit was bought for),
  when the meter's limit is not the last one the server sent (a keypad token, a refused
  one), and when the credit buys more than one token carries and half of it is used.
  Between two limits the credit only falls, by at least the cheapest price of each Wh
  supplied (bills round down per band, hence the margin), so the meter's own backstop
  reaches its limit only once the available credit is spent: it never cuts off a
  customer the server would keep connected; the exact money rule is the server's;
* disconnected: reconnection (a limit token of the grant) once the balance is above the
  clearance threshold, after a cutoff for lack of credit (the server's command, or the
  meter's backstop once the credit was spent: the balance only rises by top-ups, so that
  takes a top-up); a meter that cut itself off while the account still had credit (it
  could not hear of a top-up) is reconnected at the first contact at which the account
  has available credit, as the server would have kept it on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gridmatch.prepaid.meter import MeterReport
from gridmatch.prepaid.tokens import MAX_UNITS, IssuedToken, TokenChain, TokenIssuer
from gridmatch.results_io.prepaid import ControlState, CreditStatus
from gridmatch.scenario_io.prepaid_input import PrepaidPolicy, Tariff
from gridmatch.units import WH_PER_KWH, energy_cost_micro_eur, standing_charge_micro_eur


def tariff_cost_micro_eur(tariff: Tariff, registers_wh: Sequence[int]) -> int:
    """Tariff cost of cumulative per-band registers, each band rounded down."""
    return sum(
        energy_cost_micro_eur(wh, price)
        for wh, price in zip(registers_wh, tariff.micro_eur_per_kwh, strict=True)
    )


def limit_wh(available_micro_eur: int, tariff: Tariff) -> int | None:
    """Wh a limit must allow so that the meter stops only once the credit is spent.

    What the available credit buys at the cheapest band, plus what ``n_bands - 1``
    micro-EUR buy there: a bill rounds each band down, so ``u`` Wh supplied over several
    bands may cost up to ``n_bands - 1`` micro-EUR less than ``u`` at the cheapest price
    (one band: nothing). ``None`` if a band is free (the credit buys unlimited energy);
    0 if there is no credit.
    """
    if available_micro_eur <= 0:
        return 0
    cheapest = min(tariff.micro_eur_per_kwh)
    if cheapest == 0:
        return None
    margin = tariff.n_bands - 1
    return -(-(available_micro_eur + margin) * WH_PER_KWH // cheapest)


def grant_units(available_micro_eur: int, tariff: Tariff, unit_wh: int) -> int:
    """Token units of :func:`limit_wh`, rounded up, at most what one token carries."""
    wh = limit_wh(available_micro_eur, tariff)
    if wh is None:
        return MAX_UNITS
    return min(MAX_UNITS, -(-wh // unit_wh))


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
        chain: TokenChain | None = None,
    ) -> None:
        self.policy = policy
        self.current_credit_amount_micro_eur = balance_micro_eur
        self.emergency_credit_limit_micro_eur = emergency_credit_micro_eur
        self.billed_registers_wh = [0] * policy.tariff.n_bands
        self.billed_energy_micro_eur = 0
        self.billed_standing_micro_eur = 0
        self.topups_micro_eur = 0
        self.last_seq = 0
        self.issuer = TokenIssuer(key_hex, chain)
        self._deferred = False
        # The register total at which the last limit the server sent stops the meter
        # (None: no limit sent yet), and whether credit was added since.
        self._sent_limit_total_wh: int | None = None
        self._topped_up = False
        # The credit was spent (available <= 0 after a charge) since the meter was last
        # seen connected with credit: a disconnection then is a cutoff for lack of credit.
        self._spent = self.available_credit_micro_eur <= 0

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
        self._spent |= self.available_credit_micro_eur <= 0
        return charge

    def accrue_standing(self, instant: int) -> int:
        """Charge the standing charge accrued up to report instant ``instant``."""
        minutes = instant * self.policy.report_interval_min
        due = standing_charge_micro_eur(minutes, self.policy.standing_charge_micro_eur_per_day)
        charge = due - self.billed_standing_micro_eur
        self.billed_standing_micro_eur = due
        self.current_credit_amount_micro_eur -= charge
        self._spent |= self.available_credit_micro_eur <= 0
        return charge

    def top_up(self, amount_micro_eur: int) -> None:
        """Credit a top-up."""
        self.topups_micro_eur += amount_micro_eur
        self.current_credit_amount_micro_eur += amount_micro_eur
        self._topped_up = True

    # --- the reply to a report ----------------------------------------------------------

    def decide(self, report: MeterReport, friendly: bool) -> Decision:
        """Decide what goes back with the reply to the meter's current report."""
        policy = self.policy
        available = self.available_credit_micro_eur
        grant = grant_units(available, policy.tariff, policy.token_unit_wh)
        # The meter says which counter it took last: a token it took from its keypad
        # with a later counter than ours would make it refuse ours as used.
        self.issuer.count = max(self.issuer.count, report.token_count)
        if report.control_state is ControlState.CONNECTED:
            if available <= 0:
                self._spent = True
                if friendly:
                    first = not self._deferred
                    self._deferred = True
                    return Decision(None, "", deferred=first)
                self._deferred = False
                return self._send(report, 0, "cutoff command")
            self._deferred = False
            self._spent = False
            if self._needs_limit(report, grant):
                return self._send(report, grant, "limit")
            return Decision(None, "")
        self._deferred = False
        solvent = available > 0 and not self._spent
        if grant > 0 and (
            self.current_credit_amount_micro_eur > policy.reconnect_threshold_micro_eur or solvent
        ):
            self._spent = False
            return self._send(report, grant, "reconnection")
        return Decision(None, "")

    def _needs_limit(self, report: MeterReport, grant: int) -> bool:
        """Whether the connected meter's limit may run out before the credit does."""
        meter_limit = sum(report.registers_wh) + report.remaining_wh
        if meter_limit != self._sent_limit_total_wh:
            return True  # none sent yet, or the meter took another (its keypad)
        unit_wh = self.policy.token_unit_wh
        if grant >= MAX_UNITS:
            # More than one token carries: send the next one when half of it is used.
            return 2 * report.remaining_wh < MAX_UNITS * unit_wh
        topped_up, self._topped_up = self._topped_up, False
        # Otherwise the credit only fell since the last limit, by at least the cheapest
        # price of each Wh supplied less the rounding the margin covers: only a top-up
        # can leave the meter with less than the credit buys.
        return topped_up and report.remaining_wh < grant * unit_wh

    def _send(self, report: MeterReport, units: int, purpose: str) -> Decision:
        token = self.issuer.issue_limit(units)
        self._sent_limit_total_wh = sum(report.registers_wh) + token.units * (
            self.policy.token_unit_wh
        )
        self._topped_up = False
        return Decision(token, purpose)
