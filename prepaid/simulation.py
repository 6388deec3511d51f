"""The meter/server loop over a simulated period, one meter at a time.

At each report instant ``k`` (1 to ``n_reports``; the last is the closing read), in
this order:

1. the meter supplies the demand of the interval that ends at ``k`` if it is connected
   (else the demand is unserved and never billed: usage data are what customers
   *demanded*; a disconnected meter supplies nothing) and makes report ``k``;
2. the server receives the reports that reach it at ``k`` (report ``k`` unless comms.csv
   loses or delays it, and delayed earlier ones), in order, and bills them; a stale one
   (older than one billed) is ignored;
3. the standing charge up to ``k`` is billed, top-ups due at ``k`` are credited, and
   crossings of the low-credit threshold, of zero (emergency credit in use) and of the
   emergency credit (credit exhausted) become events;
4. keypad tokens due at ``k`` (tokens.csv) are entered at the meter and verified;
5. if report ``k`` reached the server at ``k`` (contact), the server's reply
   (:meth:`~gridmatch.prepaid.account.Account.decide`) goes to the meter: a cutoff
   command, a new limit, a reconnection, or nothing;
6. the meter switches itself off if its limit is reached, unless ``k`` is in
   friendly-credit hours.

Instant 0 is the commissioning: top-ups due then, and the server's first reply.

With contact at every instant the cutoff is exactly the server's rule: at the end of the
first report interval whose cumulative charges reach the balance plus the emergency
credit (that interval's usage is supplied and billed: the overshoot is debt), or at the
first instant after it that is not in friendly-credit hours. Without contact the meter's
own limit cuts off, never earlier than the server would have (see ``account.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gridmatch.errors import GridmatchError
from gridmatch.prepaid.account import Account, tariff_cost_micro_eur
from gridmatch.prepaid.meter import Meter, MeterReport
from gridmatch.prepaid.tokens import IssuedToken, TokenChain, TokenCheck, meter_key_hex
from gridmatch.results_io.prepaid import (
    EventKind,
    EventRow,
    MeterState,
    MeterTotals,
    ReportStatus,
    TimelineRow,
)
from gridmatch.scenario_io.prepaid_input import MeterInput, PrepaidPolicy


class ConservationError(GridmatchError):
    """A meter's money or energy does not add up: a bug in the simulation."""

    label = "internal error"


@dataclass(frozen=True)
class MeterRun:
    """One meter's simulated period: its timeline, its events and its totals."""

    timeline: tuple[TimelineRow, ...]
    events: tuple[EventRow, ...]
    totals: MeterTotals
    issued_tokens: tuple[tuple[int, IssuedToken], ...]


@dataclass
class _Tally:
    disconnections: int = 0
    reconnections: int = 0
    minutes_disconnected: int = 0
    warnings: int = 0
    tokens_issued: int = 0
    tokens_refused: int = 0
    reports_lost: int = 0
    reports_late: int = 0
    reports_stale: int = 0
    billed_micro_eur: int = 0
    issued: list[tuple[int, IssuedToken]] = field(default_factory=list)


class _Loop:
    """The state of one meter's simulation (meter, account, flags) and its output rows."""

    def __init__(self, policy: PrepaidPolicy, meter_input: MeterInput) -> None:
        self.policy = policy
        self.input = meter_input
        key = meter_key_hex(policy.key_seed, meter_input.meter_id)
        # One cache of the key's OpenPAYGO chains for both sides: a pure function of the
        # key, so sharing it changes no token and no verdict, only the time taken.
        chain = TokenChain(key)
        self.meter = Meter(
            meter_input.meter_id, key, policy.tariff.n_bands, policy.token_unit_wh, chain
        )
        self.account = Account(
            policy,
            meter_input.balance_micro_eur,
            meter_input.emergency_credit_micro_eur,
            key,
            chain,
        )
        self.events: list[EventRow] = []
        self.timeline: list[TimelineRow] = []
        self.tally = _Tally()
        self.pending: dict[int, list[MeterReport]] = {}
        self.topups: dict[int, list[int]] = {}
        for instant, amount in meter_input.topups:
            self.topups.setdefault(instant, []).append(amount)
        self.keypad: dict[int, list[str]] = {}
        for instant, token in meter_input.keypad_tokens:
            self.keypad.setdefault(instant, []).append(token)
        # Flags for events on crossings (set while below the line).
        self.warned = self.in_emergency = self.exhausted = False

    def event(
        self,
        k: int,
        kind: EventKind,
        *,
        amount_micro_eur: int = 0,
        token: IssuedToken | None = None,
        check: TokenCheck | None = None,
        token_text: str = "",
        detail: str = "",
    ) -> None:
        count = token.count if token is not None else (check.count if check else 0)
        self.events.append(
            EventRow(
                time=self.policy.report_time(k).isoformat(),
                meter_id=self.input.meter_id,
                event=kind,
                balance_micro_eur=self.account.balance_micro_eur,
                amount_micro_eur=amount_micro_eur,
                limit_wh=self.meter.remaining_wh,
                token=token.token if token is not None else token_text,
                token_count=count,
                detail=detail,
            )
        )

    def run(self) -> MeterRun:
        """Simulate instants 0 to ``n_reports``."""
        policy = self.policy
        self.instant(0, [0] * policy.tariff.n_bands)
        for k in range(1, policy.n_reports + 1):
            self.instant(k, [int(wh) for wh in self.input.demand_wh[k]])
        return MeterRun(
            tuple(self.timeline), tuple(self.events), self.totals(), tuple(self.tally.issued)
        )

    def instant(self, k: int, demand_wh: Sequence[int]) -> None:
        policy, meter, account = self.policy, self.meter, self.account
        was_connected = meter.connected
        cost_before = tariff_cost_micro_eur(policy.tariff, meter.registers_wh)
        supplied = meter.supply(demand_wh)
        cost = tariff_cost_micro_eur(policy.tariff, meter.registers_wh) - cost_before
        if k and not was_connected:
            self.tally.minutes_disconnected += policy.report_interval_min

        # 1-2. The report and what reaches the server now.
        report = meter.report(k)
        status, contact = self.send(k, report)
        billed = 0
        for arrived in sorted(self.pending.pop(k, []), key=lambda r: r.seq):
            charge = account.bill(arrived)
            if charge is None:
                self.tally.reports_stale += 1
                self.event(
                    k,
                    EventKind.REPORT_STALE,
                    detail=f"report of {policy.report_time(arrived.seq).isoformat()} arrived "
                    "after a newer one: ignored",
                )
            else:
                billed += charge

        # 3. Standing charge, top-ups, crossings.
        billed += account.accrue_standing(k)
        topped = 0
        for amount in self.topups.get(k, []):
            account.top_up(amount)
            topped += amount
            self.event(k, EventKind.TOPUP, amount_micro_eur=amount)
        self.tally.billed_micro_eur += billed
        self.crossings(k)

        # 4. Keypad tokens.
        cutoff_now = False
        for text in self.keypad.get(k, []):
            cutoff_now |= self.enter(k, text, "keypad")

        # 5. The server's reply.
        if contact:
            friendly = policy.is_friendly(k)
            decision = account.decide(report, friendly)
            if decision.deferred:
                self.event(
                    k,
                    EventKind.CUTOFF_DEFERRED,
                    detail="credit exhausted in friendly-credit hours: no cutoff until after them",
                )
            if decision.token is not None:
                self.tally.tokens_issued += 1
                self.tally.issued.append((k, decision.token))
                self.event(k, EventKind.TOKEN_ISSUED, token=decision.token, detail=decision.purpose)
                cutoff_now |= self.enter(k, decision.token.token, decision.purpose)

        # 6. The meter's own limit.
        if meter.enforce_limit(policy.is_friendly(k)):
            self.tally.disconnections += 1
            reason = (
                "cutoff command"
                if cutoff_now
                else "limit reached without a new limit from the server"
            )
            self.event(k, EventKind.DISCONNECTED, detail=reason)

        self.timeline.append(self.row(k, status, demand_wh, supplied, cost, billed, topped))

    def send(self, k: int, report: MeterReport) -> tuple[ReportStatus, bool]:
        """Route report ``k``: on time, late or lost; whether it is contact now."""
        policy = self.policy
        if k == 0:
            return ReportStatus.COMMISSIONING, True
        if k == policy.n_reports:
            self.pending.setdefault(k, []).append(report)
            return ReportStatus.CLOSING, True
        arrives = self.input.arrival.get(k, k)
        if arrives is None or arrives > policy.n_reports:
            self.tally.reports_lost += 1
            self.event(k, EventKind.REPORT_LOST)
            return ReportStatus.LOST, False
        self.pending.setdefault(arrives, []).append(report)
        if arrives == k:
            return ReportStatus.DELIVERED, True
        self.tally.reports_late += 1
        self.event(
            k,
            EventKind.REPORT_LATE,
            detail=f"reaches the server at {policy.report_time(arrives).isoformat()}",
        )
        return ReportStatus.LATE, False

    def enter(self, k: int, text: str, purpose: str) -> bool:
        """Enter a token at the meter; True if it was an accepted cutoff (a limit of 0)."""
        check, reconnected = self.meter.enter(text)
        if not check.accepted:
            self.tally.tokens_refused += 1
            self.event(
                k,
                EventKind.TOKEN_REFUSED,
                check=check,
                token_text=text,
                detail=f"{check.reason} ({purpose})",
            )
            return False
        self.event(
            k,
            EventKind.TOKEN_ACCEPTED,
            check=check,
            token_text=text,
            detail=f"{purpose}: {check.units} units = {check.units * self.policy.token_unit_wh} Wh",
        )
        if reconnected:
            self.tally.reconnections += 1
            self.event(k, EventKind.RECONNECTED, detail=purpose)
        return check.units == 0

    def crossings(self, k: int) -> None:
        """Events for the lines the balance crossed downwards at this instant."""
        account, policy = self.account, self.policy
        balance = account.balance_micro_eur
        threshold = policy.low_credit_warning_micro_eur
        if threshold > 0 and balance <= threshold and not self.warned:
            self.tally.warnings += 1
            self.event(
                k, EventKind.LOW_CREDIT_WARNING, detail=f"balance at or below {threshold} micro-EUR"
            )
        self.warned = threshold > 0 and balance <= threshold
        if (
            account.emergency_credit_limit_micro_eur > 0
            and balance <= 0 < account.available_credit_micro_eur
            and not self.in_emergency
        ):
            self.event(k, EventKind.EMERGENCY_CREDIT_IN_USE)
        self.in_emergency = balance <= 0 < account.available_credit_micro_eur
        if account.available_credit_micro_eur <= 0 and not self.exhausted:
            self.event(k, EventKind.CREDIT_EXHAUSTED)
        self.exhausted = account.available_credit_micro_eur <= 0

    def row(
        self,
        k: int,
        status: ReportStatus,
        demand_wh: Sequence[int],
        supplied_wh: Sequence[int],
        cost_micro_eur: int,
        billed_micro_eur: int,
        topup_micro_eur: int,
    ) -> TimelineRow:
        account, meter, policy = self.account, self.meter, self.policy
        available = account.available_credit_micro_eur
        balance = account.balance_micro_eur
        if not meter.connected:
            state = MeterState.DISCONNECTED
        elif available <= 0:
            state = MeterState.FRIENDLY if policy.is_friendly(k) else MeterState.OVERDRAWN
        elif balance <= 0:
            state = MeterState.EMERGENCY
        elif balance <= policy.low_credit_warning_micro_eur:
            state = MeterState.WARNING
        else:
            state = MeterState.CONNECTED
        demand, supplied = sum(demand_wh), sum(supplied_wh)
        return TimelineRow(
            time=policy.report_time(k).isoformat(),
            report=status,
            demand_wh=demand,
            supplied_wh=supplied,
            unserved_wh=demand - supplied,
            cost_micro_eur=cost_micro_eur,
            billed_micro_eur=billed_micro_eur,
            topup_micro_eur=topup_micro_eur,
            current_credit_amount_micro_eur=balance,
            emergency_credit_micro_eur=account.emergency_credit_micro_eur,
            available_credit_micro_eur=available,
            amount_to_clear_micro_eur=account.amount_to_clear_micro_eur,
            limit_wh=meter.remaining_wh,
            credit_status=account.credit_status,
            emergency_credit_status=account.emergency_credit_status,
            control_state=meter.control_state,
            state=state,
        )

    def totals(self) -> MeterTotals:
        """Return the meter's totals, after checking that money and energy add up.

        Raises
        ------
        ConservationError
            ``start + topups - billed != end``, or supplied energy left unbilled after
            the closing read: a bug, never an input problem.
        """
        account, meter, tally, source = self.account, self.meter, self.tally, self.input
        rows = self.timeline
        billed = account.billed_energy_micro_eur + account.billed_standing_micro_eur
        start, end = source.balance_micro_eur, account.balance_micro_eur
        conserved = (
            start + account.topups_micro_eur - billed == end
            and billed == tally.billed_micro_eur == sum(r.billed_micro_eur for r in rows)
            and sum(r.topup_micro_eur for r in rows) == account.topups_micro_eur
        )
        unbilled_wh = meter.total_wh - sum(account.billed_registers_wh)
        supplied = sum(r.supplied_wh for r in rows)
        if not conserved or unbilled_wh != 0 or supplied != meter.total_wh:
            raise ConservationError(
                f"meter {source.meter_id}: start {start} + top-ups {account.topups_micro_eur} - "
                f"billed {billed} != end {end} micro-EUR, or {unbilled_wh} Wh unbilled"
            )
        return MeterTotals(
            meter_id=source.meter_id,
            participant_id=source.participant_id,
            start_balance_micro_eur=start,
            topups_micro_eur=account.topups_micro_eur,
            billed_energy_micro_eur=account.billed_energy_micro_eur,
            billed_standing_micro_eur=account.billed_standing_micro_eur,
            end_balance_micro_eur=end,
            conserved=conserved,
            demand_wh=sum(r.demand_wh for r in rows),
            supplied_wh=supplied,
            unserved_wh=sum(r.unserved_wh for r in rows),
            unbilled_wh=unbilled_wh,
            supplied_by_band_wh=dict(
                zip(self.policy.tariff.band_names, meter.registers_wh, strict=True)
            ),
            missing_readings=source.missing_readings,
            disconnections=tally.disconnections,
            reconnections=tally.reconnections,
            minutes_disconnected=tally.minutes_disconnected,
            low_credit_warnings=tally.warnings,
            tokens_issued=tally.tokens_issued,
            tokens_refused=tally.tokens_refused,
            reports_lost=tally.reports_lost,
            reports_late=tally.reports_late,
            reports_stale=tally.reports_stale,
        )


def simulate_meter(policy: PrepaidPolicy, meter_input: MeterInput) -> MeterRun:
    """Run the meter/server loop for one meter over the whole period.

    Raises
    ------
    ConservationError
        The money or energy of the meter does not add up (a bug).
    """
    return _Loop(policy, meter_input).run()
